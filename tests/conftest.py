"""Shared fixtures. Area-specific fixtures live in ``tests/<area>/conftest.py``."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (tests are deterministic)."""
    return np.random.default_rng(seed=440)


@pytest.fixture
def env_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``env_settings(ENCORE_DATA_DIR=..., ...)``: set environment variables for this test;
    ``encore.config.get_settings()`` reads them afresh (its cache is dropped at the start,
    after every call and at the end)."""
    from encore import config

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        config.get_settings.cache_clear()

    config.get_settings.cache_clear()
    yield set_env
    config.get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server (moto's server mode) for this test session."""
    from .s3server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; tests get copies (faster than migrating each)."""
    from encore.store.db import upgrade  # here: most tests never open a database

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated SQLite database of the test's own."""
    path = tmp_path / "encore.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The database that ``engine`` opens: SQLite here; ``tests/store`` runs each test on
    every backend."""
    return sqlite_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    from encore.store.db import make_engine

    engine = make_engine(db_url)
    yield engine
    engine.dispose()
