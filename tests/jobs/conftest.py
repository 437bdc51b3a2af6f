"""Job fixtures: settings on the test's migrated SQLite database (``db_url`` and ``engine``
from tests/conftest.py), test handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from encore.config import Settings
from encore.jobs import registry


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Immediate mode (jobs run synchronously), fast heartbeats."""
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        queue_immediate=True,
        job_heartbeat_seconds=0.05,
        job_stale_seconds=30,
    )


@pytest.fixture
def handlers() -> Iterator[Callable[[str, Callable[..., Any]], Callable[..., Any]]]:
    """``handlers(kind, func)`` registers a handler for this test only."""
    kinds: list[str] = []

    def register(kind: str, func: Callable[..., Any]) -> Callable[..., Any]:
        registry.register_handler(kind, func, replace=True)
        kinds.append(kind)
        return func

    yield register
    for kind in kinds:
        registry.unregister_handler(kind)
