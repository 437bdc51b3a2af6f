"""Fixtures of the corpus tests: one small real build, shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from encore.corpus.builder import BuildSummary, build_corpus

from .corpus_helpers import SMALL


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> BuildSummary:
    """A corpus built in-process from 12 items of bach, O'Neill's and Essen."""
    out: Path = tmp_path_factory.mktemp("corpus") / "small"
    return build_corpus(out, SMALL)
