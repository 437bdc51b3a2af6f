"""The shipped similarity model loads and tells sounds apart with no training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.audio.mel import normalize_db_crop
from encore.config import SHIPPED_MODELS_DIR, get_settings
from encore.similarity.model import SimilarityModel
from encore.similarity.synthetic import GENRES, synthetic_mel

SHIPPED = SHIPPED_MODELS_DIR / "similarity"


def _corpus_dir() -> Path | None:
    """A built corpus, if this machine has one (CI has none)."""
    candidates = [get_settings().data_dir / "corpus", Path(__file__).resolve().parents[3] / "data" / "corpus"]
    return next((c for c in candidates if (c / "READY").is_file()), None)


def _loo_accuracy(model: SimilarityModel, reps: list, labels: list) -> float:
    hits = 0
    for i, a in enumerate(reps):
        scores = [model.similarity(a, b) if j != i else -1.0 for j, b in enumerate(reps)]
        hits += labels[int(np.argmax(scores))] == labels[i]
    return hits / len(reps)


@pytest.fixture(scope="module")
def shipped() -> SimilarityModel:
    torch.set_num_threads(1)
    return SimilarityModel.load(SHIPPED)


def test_default_model_is_the_shipped_one(shipped: SimilarityModel) -> None:
    assert get_settings().similarity_model_dir == SHIPPED or get_settings().similarity_model_dir.is_dir()
    assert shipped.config.codebook_size >= 256 and len(shipped.config.genres) >= 5
    assert (SHIPPED / "MODEL_CARD.md").is_file()
    assert (SHIPPED / "model.safetensors").stat().st_size < 8 * 1024 * 1024


def test_shipped_model_separates_two_synthetic_timbres(shipped: SimilarityModel) -> None:
    rng = np.random.default_rng(7)
    width, config = shipped.config.image_width, shipped.mel_config
    reps, labels = [], []
    for genre in (GENRES[0], GENRES[1]):  # low plucked tones vs high flute-like tones
        for _ in range(5):
            mel = synthetic_mel(genre, 3 * width, config, rng)
            slices = normalize_db_crop(np.stack([mel[:, i * width : (i + 1) * width] for i in range(3)]), config)
            reps.append(shipped.represent(slices))
            labels.append(genre.name)
    assert _loo_accuracy(shipped, reps, labels) > 0.5
    same = [shipped.similarity(a, b) for i, a in enumerate(reps) for j, b in enumerate(reps)
            if i < j and labels[i] == labels[j]]
    other = [shipped.similarity(a, b) for i, a in enumerate(reps) for j, b in enumerate(reps)
             if labels[i] != labels[j]]
    assert np.mean(same) > np.mean(other)


def test_shipped_model_separates_heldout_corpus_genres(shipped: SimilarityModel) -> None:
    corpus_dir = _corpus_dir()
    if corpus_dir is None:
        pytest.skip("no built corpus on this machine")
    from encore.similarity.data import load_corpus, piece_images

    corpus = load_corpus(corpus_dir)
    heldout = corpus.split("heldout")
    by_genre: dict[str, list] = {}
    for piece in heldout:
        by_genre.setdefault(piece.genre, []).append(piece)
    two = sorted(by_genre, key=lambda g: -len(by_genre[g]))[:2]
    reps, labels = [], []
    for genre in two:
        for piece in by_genre[genre][:8]:
            reps.append(shipped.represent(piece_images(corpus, piece, shipped.config.image_width, 12)))
            labels.append(genre)
    assert _loo_accuracy(shipped, reps, labels) > 0.5
