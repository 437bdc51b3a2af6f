"""Job fixtures: a migrated SQLite database per test, settings, test handlers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from encore.config import Settings
from encore.jobs import registry
from encore.store.db import make_engine, upgrade


@pytest.fixture(scope="session")
def jobs_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs-db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url(tmp_path: Path, jobs_db_template: Path) -> str:
    path = tmp_path / "encore.db"
    shutil.copyfile(jobs_db_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


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
