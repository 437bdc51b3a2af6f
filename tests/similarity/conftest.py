"""Fixtures for the similarity tests: tiny seeded models and a tiny synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from encore.similarity.config import SimilarityConfig
from encore.similarity.synthetic import GENRES, write_synthetic_corpus

from .similarity_helpers import TINY


@pytest.fixture
def tiny_config() -> SimilarityConfig:
    return TINY


@pytest.fixture
def tiny_model():
    """An untrained, seeded tiny model whose codebook is initialised (k-means on noise)."""
    import torch

    from encore.similarity.model import SimilarityModel

    torch.set_num_threads(1)
    model = SimilarityModel.create(TINY, seed=0)
    model.vqvae.train()
    with torch.no_grad():
        model.vqvae(torch.rand(8, 1, 32, 32) * 2 - 1)  # k-means initialises the codebook
    model.vqvae.eval()
    return model


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic genres (low plucks, high flutes), 32 mel bands, 4 pieces each (1 held out)."""
    root = tmp_path_factory.mktemp("similarity_corpus")
    return write_synthetic_corpus(
        root, genres=(GENRES[0], GENRES[1]), pieces_per_genre=4, heldout_per_genre=1,
        frames=128, width=32, n_mels=32, seed=3,
    )
