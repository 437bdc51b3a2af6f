"""Reading the corpus: manifest, slice images, labelled random crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encore.errors import InvalidInput, NotFound
from encore.similarity.data import CropSampler, load_corpus, piece_images


def test_corpus_manifest_and_slice_images(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    assert corpus.genres == ("flute_high", "pluck_low")
    assert len(corpus.split("train")) == 6 and len(corpus.split("heldout")) == 2
    piece = corpus.split("train")[0]
    images = piece_images(corpus, piece, 32)
    assert images.shape == (len(piece.slices), 32, 32) and images.dtype == np.float32
    # Each slice is normalised to its own maximum: its peak maps to +1.
    np.testing.assert_allclose(images.max(axis=(1, 2)), 1.0)
    assert images.min() >= -1.0
    assert piece_images(corpus, piece, 32, max_slices=2).shape[0] == 2


def test_crops_carry_their_genre_and_are_reproducible(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    pieces = corpus.split("train")
    a = CropSampler(corpus, pieces, 32, seed=4)
    b = CropSampler(corpus, pieces, 32, seed=4)
    (xa, ya), (xb, yb) = a.sample(16), b.sample(16)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert xa.shape == (16, 32, 32) and set(ya) <= {0, 1}
    # Low plucks put their energy in lower mel bands than high flutes.
    low_rows = np.arange(32)[None, :]
    centroid = ((xa + 1).mean(axis=2) * low_rows).sum(1) / (xa + 1).mean(axis=2).sum(1)
    pluck, flute = corpus.genre_index("pluck_low"), corpus.genre_index("flute_high")
    if (ya == pluck).any() and (ya == flute).any():
        assert centroid[ya == pluck].mean() < centroid[ya == flute].mean()


def test_bad_corpus_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_corpus(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"piece_id": "x"}) + "\n")
    with pytest.raises(InvalidInput, match="manifest.jsonl:1"):
        load_corpus(tmp_path)
