"""Shared settings of the corpus tests (imported by the conftest and the test modules)."""

from __future__ import annotations

from encore.corpus.builder import BuildOptions

#: Three collections (one of them song books), four items each, pieces cut to 20 s.
SMALL = BuildOptions(
    hours=None,
    seed=7,
    workers=0,
    collections=("bach", "oneills1850", "essenFolksong"),
    max_piece_seconds=20.0,
    max_items_per_collection=4,
    heldout_fraction=0.3,
    progress=False,
)
