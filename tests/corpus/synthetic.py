"""A small corpus folder written directly (no music21, no rendering): what ``encore corpus
build`` writes — ``mel/*.npy`` float16 in dB below each piece's maximum (floored at -100),
``manifest.jsonl``, ``mel_config.json``, ``build.json`` — with seeded, structured spectrograms
(harmonic stripes, note onsets, noise) small enough for tiny models and packing tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from encore.audio.mel import MelConfig
from encore.corpus.manifest import PieceRecord, write_manifest


def write_synthetic_corpus(root: Path, *, n_train: int = 6, n_heldout: int = 2, n_mels: int = 16,
                           width: int = 16, frames: int = 72, seed: int = 0) -> Path:
    """Write the corpus into ``root`` and return it."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "mel").mkdir(exist_ok=True)
    MelConfig(x_res=width, y_res=n_mels).save(root)
    records = []
    genres = ("reel", "chorale")
    for i in range(n_train + n_heldout):
        n = frames + int(rng.integers(0, width))
        band = np.linspace(0, 1, n_mels)[:, None]
        t = np.arange(n)[None, :]
        pitch = rng.uniform(2, 6)
        db = -70 + 50 * np.exp(-((band * n_mels) % pitch) ** 2) * (0.6 + 0.4 * np.cos(t / rng.uniform(3, 9)))
        db += rng.normal(0, 4, size=(n_mels, n))
        db[:, : int(rng.integers(0, 6))] = -100.0  # a silent start
        db = np.clip(db - db.max(), -100.0, 0.0).astype(np.float16)
        piece_id = f"p{i:03d}"
        np.save(root / "mel" / f"{piece_id}.npy", db)
        split = "train" if i < n_train else "heldout"
        slices = tuple(range(0, n - width + 1, width))
        records.append(PieceRecord(
            piece_id=piece_id, collection="synthetic", genre=genres[i % 2], source=f"synthetic/{i}",
            tune=None, programs=(0,), tempo_scale=1.0, transpose=0, seconds=n * 512 / 22050,
            n_frames=n, split=split, audio=f"audio/{piece_id}.flac", mel=f"mel/{piece_id}.npy",
            slices=slices))
    write_manifest(root / "manifest.jsonl", records)
    (root / "build.json").write_text(json.dumps({"pieces": len(records), "synthetic": True}) + "\n")
    return root
