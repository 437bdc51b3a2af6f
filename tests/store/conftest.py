"""Storage fixtures: a migrated database on SQLite (a file per test) and on PostgreSQL
(one fresh database per test session, emptied before each test, dropped at the end)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from encore.store import models as m
from encore.store.base import Base
from encore.store.db import make_engine, migrating, session_scope, upgrade
from encore.store.enums import DispatchBranch

from ..postgres import migrated_postgres_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    with migrated_postgres_database() as url:
        yield url


def _empty_all(url: str) -> None:
    # DELETE is much faster than TRUNCATE on a handful of rows.
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty, migrated database, on each backend in turn (``engine``, from
    tests/conftest.py, opens it)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("pg_url")
    _empty_all(url)
    return url


class Make:
    """Factories for rows with the minimum required fields (they add and flush)."""

    def __init__(self, session: sa.orm.Session) -> None:
        self.session = session
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def _add(self, obj: object) -> object:
        self.session.add(obj)
        self.session.flush()
        return obj

    def user(self, **kw: object) -> m.User:
        n = self._next()
        kw.setdefault("email", f"user{n}-{uuid.uuid4().hex[:6]}@example.org")
        kw.setdefault("display_name", f"User {n}")
        kw.setdefault("password_hash", "$argon2id$dummy")
        return self._add(m.User(**kw))  # type: ignore[return-value]

    def song(self, owner: m.User, **kw: object) -> m.Song:
        n = self._next()
        kw.setdefault("title", f"Song {n}")
        kw.setdefault("blob_key", f"songs/{uuid.uuid4().hex}.ogg")
        kw.setdefault("duration_seconds", 30.0)
        kw.setdefault("sample_rate", 22050)
        kw.setdefault("checksum_sha256", uuid.uuid4().hex * 2)
        return self._add(m.Song(owner=owner, **kw))  # type: ignore[return-value]

    def version(self, **kw: object) -> m.ModelVersion:
        n = self._next()
        kw.setdefault("name", f"v{n}")
        kw.setdefault("folder", f"/models/v{n}")
        return self._add(m.ModelVersion(**kw))  # type: ignore[return-value]

    def clip(self, songs: list[m.Song] = (), **kw: object) -> m.Clip:  # type: ignore[assignment]
        clip = m.Clip(**kw)
        clip.inputs = [m.ClipInput(song=s, position=i) for i, s in enumerate(songs)]
        return self._add(clip)  # type: ignore[return-value]

    def delivery(self, clip: m.Clip, listener: m.User, **kw: object) -> m.Delivery:
        kw.setdefault("branch", DispatchBranch.GENERATE)
        return self._add(m.Delivery(clip=clip, listener=listener, **kw))  # type: ignore[return-value]

    def rating(self, delivery: m.Delivery, half_stars: int = 8, **kw: object) -> m.Rating:
        kw.setdefault("listened_fraction", 0.9)
        return self._add(m.Rating(delivery=delivery, half_stars=half_stars, **kw))  # type: ignore[return-value]


@pytest.fixture
def make() -> type[Make]:
    return Make


# -- migrations with rows in them -----------------------------------------------------------


@pytest.fixture
def sqlite_with_rows(tmp_path: Path) -> Callable[[Callable[[Make], Any]], tuple[str, Any]]:
    """``url, made = sqlite_with_rows(add)``: a SQLite file at head holding the rows that
    ``add(Make(session))`` writes; ``made`` is what ``add`` returns (e.g. their ids)."""

    def fill(add: Callable[[Make], Any]) -> tuple[str, Any]:
        url = f"sqlite:///{tmp_path / 'm.db'}"
        upgrade(url)
        engine = make_engine(url)
        try:
            with session_scope(sa.orm.sessionmaker(engine)) as session:
                made = add(Make(session))
        finally:
            engine.dispose()
        return url, made

    return fill


@pytest.fixture
def downgraded() -> Callable[[str, str], AbstractContextManager[sa.Connection]]:
    """``with downgraded(url, revision) as conn:`` the database at ``url`` migrated down to
    ``revision`` (foreign keys off, as SQLite's table rebuilds need), for checks on the old
    schema; ``upgrade(url)`` afterwards brings it back to head."""

    @contextmanager
    def down(url: str, revision: str) -> Iterator[sa.Connection]:
        from alembic import command

        with migrating(url) as (config, conn):
            command.downgrade(config, revision)
            conn.commit()
            yield conn

    return down
