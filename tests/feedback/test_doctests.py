"""The examples in the feedback docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dispatch", "listening", "rating", "curation", "purge", "stats", "guards"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"encore.feedback.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
