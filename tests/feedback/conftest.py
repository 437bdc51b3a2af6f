"""Fixtures for the feedback tests."""

from __future__ import annotations

import pytest

from .feedback_sim import Population, simulate_population


@pytest.fixture(scope="session")
def population() -> Population:
    """40 raters x 60 clips: 26 honest, 2 constant-bias and 2 group-taste minority raters,
    5 max-rating/min-listen and 5 random raters."""
    return simulate_population(seed=2024)
