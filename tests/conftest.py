"""Shared fixtures. Area-specific fixtures live in ``tests/<area>/conftest.py``."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (tests are deterministic)."""
    return np.random.default_rng(seed=440)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server (moto's server mode) for this test session."""
    from .s3server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server
