"""SpectrogramDataset: shapes, per-crop normalisation, labels, splits, offsets, state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from encore.audio.mel import MelConfig, normalize_db_crop
from encore.corpus.builder import BuildSummary
from encore.corpus.dataset import SpectrogramDataset
from encore.corpus.manifest import load_manifest
from encore.errors import InvalidInput


def test_items_are_normalised_crops_with_genre_labels(small_build: BuildSummary) -> None:
    ds = SpectrogramDataset(small_build.out_dir, split="train", width=128, seed=0)
    records = [r for r in load_manifest(small_build.out_dir) if r.split == "train"]
    assert len(ds) == sum(len(r.slices) for r in records) > 0
    assert ds.genres == sorted({r.genre for r in load_manifest(small_build.out_dir)})
    assert ds.mel_config == MelConfig(x_res=128, y_res=128)
    for i in range(len(ds)):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.shape == (1, 128, 128)
        assert image.max().item() == 1.0
        assert image.min().item() >= -1.0
        assert ds.genres[label] == ds.genre_of(i)


def test_heldout_crops_are_exactly_the_manifest_slices(small_build: BuildSummary) -> None:
    ds = SpectrogramDataset(small_build.out_dir, split="heldout", width=128)
    assert not ds.random_offset and len(ds) > 0
    for i in range(len(ds)):
        piece_id, start = ds.slice_start(i)
        mel = np.load(small_build.out_dir / "mel" / f"{piece_id}.npy").astype(np.float32)
        expected = normalize_db_crop(mel[:, start : start + 128], ds.mel_config)
        np.testing.assert_array_equal(ds[i][0][0].numpy(), expected)
        np.testing.assert_array_equal(ds[i][0].numpy(), ds[i][0].numpy())


def test_train_offsets_are_random_but_seeded(small_build: BuildSummary) -> None:
    a = SpectrogramDataset(small_build.out_dir, width=128, seed=1)
    b = SpectrogramDataset(small_build.out_dir, width=128, seed=1)
    c = SpectrogramDataset(small_build.out_dir, width=128, seed=2)
    assert a.random_offset
    xa = torch.stack([a[i][0] for i in range(len(a))])
    xb = torch.stack([b[i][0] for i in range(len(b))])
    xc = torch.stack([c[i][0] for i in range(len(c))])
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    # the generator state round-trips (exact resume)
    state = a.state_dict()
    first = a[0][0]
    a.load_state_dict(state)
    assert torch.equal(a[0][0], first)
    # and survives pickling (DataLoader workers)
    clone = pickle.loads(pickle.dumps(a))
    assert torch.equal(clone[3][0], a[3][0])


def test_other_widths_and_genre_filter(small_build: BuildSummary) -> None:
    ds = SpectrogramDataset(small_build.out_dir, width=64, genres=["folk_song", "bach_chorale"],
                            random_offset=False)
    assert ds.genres == ["folk_song", "bach_chorale"]
    labels = {ds[i][1] for i in range(len(ds))}
    assert labels <= {0, 1} and len(ds) > 0
    assert all(ds[i][0].shape == (1, 128, 64) and ds[i][0].max() == 1.0 for i in range(len(ds)))
    assert all(p.genre in ("folk_song", "bach_chorale") for p in ds.pieces)
    with pytest.raises(InvalidInput, match="jazz"):
        SpectrogramDataset(small_build.out_dir, genres=["jazz"])


def test_works_with_a_dataloader(small_build: BuildSummary) -> None:
    ds = SpectrogramDataset(small_build.out_dir, width=128)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    images, labels = next(iter(loader))
    assert images.shape == (4, 1, 128, 128) and labels.shape == (4,)
    assert torch.all(images.amax(dim=(1, 2, 3)) == 1.0)
