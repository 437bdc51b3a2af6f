"""Engines, sessions and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from encore import cli
from encore.errors import ConfigurationError
from encore.store import models as m
from encore.store.db import (
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    normalise_url,
    schema_diff,
    session_scope,
    upgrade,
)


def test_normalise_url_picks_psycopg_and_refuses_other_backends() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h:5433/db") == "postgresql+psycopg://u@h:5433/db"
    assert normalise_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(ConfigurationError, match="mysql"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(ConfigurationError, match="empty"):
        normalise_url("")


def test_sqlite_connections_are_configured(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 30_000
        assert pragma("synchronous") == 1  # NORMAL
    engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_url: str) -> None:
    """A write session that has only read so far already holds the write lock (BEGIN
    IMMEDIATE), so no other writer can sneak in and force a failed lock upgrade; a
    read-only session is not blocked."""
    engine = make_engine(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    with session_scope(engine) as s:
        s.execute(sa.select(sa.func.count()).select_from(m.User)).scalar()
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        with session_scope(engine, write=False) as reader:
            assert reader.scalar(sa.select(sa.func.count()).select_from(m.User)) == 0
    engine.dispose()


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        s.add(m.Job(kind="a"))
        s.flush()
        raise RuntimeError("boom")
    with session_scope(engine) as s:
        s.add(m.Job(kind="b"))
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(m.Job.kind)).all() == ["b"]
        s.add(m.Job(kind="c"))  # read-only scopes never commit
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(m.Job.kind)).all() == ["b"]


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert schema_diff(engine) == []


def test_schema_check_notices_a_difference(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_ratings_created_at")
        conn.exec_driver_sql("CREATE TABLE ratings_extra (id INTEGER PRIMARY KEY)")
    diff = schema_diff(engine)
    # The missing index is reported; a foreign table is left alone.
    assert [d[0] for d in diff] == ["add_index"]
    assert diff[0][1].name == "ix_ratings_created_at"
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ratings_extra")


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_downgrade_to_base_and_back(tmp_path: Path, downgraded) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    with downgraded(url, "base") as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
    upgrade(url)
    engine = make_engine(url)
    assert schema_diff(engine) == []
    engine.dispose()


def test_cli_db_upgrade_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli.main(["db", "upgrade", "--url", url]) == 0
    assert cli.main(["db", "check", "--url", url]) == 0
    assert cli.main(["db", "current", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "schema matches the models" in out
    assert f"current: {head_revision()}" in out


def test_ensure_schema_migrates_sqlite_and_asks_for_postgresql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with pytest.raises(ConfigurationError, match=r"\(empty\), not .*encore db upgrade"):
        ensure_schema(url, migrate=False)
    ensure_schema(url)  # SQLite: migrated on the spot
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'")
    engine.dispose()
    with pytest.raises(ConfigurationError, match="f00d.*upgrade encore"):
        ensure_schema(url)


def test_a_writer_that_vanishes_mid_transaction_releases_the_write_lock(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    for end in ("close", "invalidate"):
        conn = engine.connect()
        conn.begin()
        conn.exec_driver_sql(
            "INSERT INTO jobs (kind, queue, status, payload, progress, "
            "attempts, max_attempts, created_at) VALUES "
            "('k', 'generate', 'queued', '{}', 0, 0, 3, '2030-01-01')"
        )
        getattr(conn, end)()  # close() rolls back; invalidate() drops the DBAPI connection
        with session_scope(engine) as s:  # would wait 30 s and fail if the lock leaked
            s.add(m.Job(kind=f"after {end}"))
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(m.Job.kind).order_by(m.Job.id)).all() == [
            "after close",
            "after invalidate",
        ]
    engine.dispose()


def test_migration_0002_fills_played_ranges_from_the_listen_events(
    sqlite_with_rows, downgraded
) -> None:
    """Deliveries that existed before 0002 get the merged union of their reports."""
    from encore.store.models import Delivery, ListenEvent

    def add(mk):
        owner = mk.user()
        clip = mk.clip([mk.song(owner)], seconds=10.0)
        heard, silent = mk.delivery(clip, owner), mk.delivery(clip, owner)
        for ranges in ([[0, 2], [1, 3]], [[9, 12], [5, "x"]], [[7, 6], [2.5, 4]]):
            mk.session.add(ListenEvent(delivery_id=heard.id, ranges=ranges))
        return heard.id, silent.id

    url, ids = sqlite_with_rows(add)
    with downgraded(url, "0001") as conn:
        assert "played_ranges" not in {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        played = dict(conn.execute(sa.select(Delivery.id, Delivery.played_ranges)).all())
    engine.dispose()
    # [0,2]∪[1,3]∪[2.5,4] = [0,4]; [9,12] is cut to the clip; "x" and the reversed range drop.
    assert played == {ids[0]: [[0.0, 4.0], [9.0, 10.0]], ids[1]: []}


def test_writers_of_other_processes_queue_on_the_file_lock(tmp_path: Path) -> None:
    """A process holding the writer lock makes another wait (and time out with False)."""
    import subprocess
    import sys
    import time

    from encore.store.db import WriterLock

    path = tmp_path / "encore.db-writers.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from encore.store.db import WriterLock; "
         f"lock = WriterLock(Path({str(path)!r})); assert lock.acquire(5); print('held', flush=True); "
         "sys.stdin.readline(); lock.release(); print('released', flush=True); time.sleep(5)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = WriterLock(path)
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.3) is False
        assert time.monotonic() - t0 >= 0.3
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert lock.acquire(timeout=5) is True
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_that_must_not_wait_stops_at_begin_when_the_lock_is_taken(sqlite_url: str) -> None:
    import threading

    from encore.store.db import WriterBusy, session_scope, writer_does_not_wait
    from encore.store.models import User

    engine = make_engine(sqlite_url)
    factory = sa.orm.sessionmaker(engine)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with session_scope(factory) as session:
            session.execute(sa.update(User).where(User.id == -1).values(display_name="x"))
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    with writer_does_not_wait(), pytest.raises(WriterBusy):
        with session_scope(factory) as session:
            session.execute(sa.update(User).where(User.id == -2).values(display_name="y"))
    with writer_does_not_wait(), session_scope(factory, write=False) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0  # reads go on
    release.set()
    holder.join(10)
    with writer_does_not_wait(), session_scope(factory) as session:  # free again: no error
        session.execute(sa.update(User).where(User.id == -2).values(display_name="y"))
    engine.dispose()


def test_the_writer_lock_is_handed_on_only_after_sqlite_committed(sqlite_url: str) -> None:
    """When encore's lock is free, SQLite's is too: the next writer never meets SQLite's
    busy handler (checked from a listener that runs right after encore's commit hook)."""
    import sqlite3

    from sqlalchemy import event

    from encore.store.db import session_scope
    from encore.store.models import User

    engine = make_engine(sqlite_url)
    path = sa.engine.make_url(sqlite_url).database
    seen = []

    def probe(connection: sa.Connection) -> None:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" before the fix
            other.execute("ROLLBACK")
            seen.append("free")
        finally:
            other.close()

    event.listen(engine, "commit", probe)
    with session_scope(sa.orm.sessionmaker(engine)) as session:
        session.execute(sa.update(User).where(User.id == -1).values(display_name="x"))
    assert seen == ["free"]
    engine.dispose()


def test_a_forked_child_does_not_share_the_parents_lock_file(tmp_path: Path) -> None:
    import os

    from encore.store.db import WriterLock

    lock = WriterLock(tmp_path / "db-writers.lock")
    assert lock.acquire(timeout=1)
    lock.release()
    parent_fd = lock._fd
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh thread lock and no inherited descriptor
        ok = lock._fd is None and lock.acquire(timeout=1)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert lock._fd == parent_fd
