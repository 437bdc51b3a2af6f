"""Shared fixtures. Area-specific fixtures live in ``tests/<area>/conftest.py``."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (tests are deterministic)."""
    return np.random.default_rng(seed=440)
