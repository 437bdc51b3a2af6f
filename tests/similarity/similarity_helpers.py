"""Helpers shared by the similarity tests (a tiny config, random songs)."""

from __future__ import annotations

import numpy as np

from encore.similarity.config import SimilarityConfig

TINY = SimilarityConfig(
    image_height=32,
    image_width=32,
    pool=1,
    channels=(8, 16),
    latent_dim=8,
    codebook_size=16,
    head_hidden=16,
    embedding_dim=8,
    alpha=0.7,
)



def random_songs(rng: np.random.Generator, n_songs: int, height: int = 32,
                 width: int = 32) -> list[np.ndarray]:
    """Random uint8 "songs" of 1–4 slices each."""
    return [rng.integers(0, 256, size=(int(rng.integers(1, 5)), height, width), dtype=np.uint8)
            for _ in range(n_songs)]
