"""The database connection pool on PostgreSQL: sized from the settings, and a commit that
created jobs dispatches them without holding a second connection (issue 17: twenty
concurrent ``POST /api/music`` exhausted SQLAlchemy's default 5 + 10 and waited 30 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from encore.config import Settings
from encore.jobs import install_dispatch_hook, make_queues
from encore.store import Job, enqueue_job, make_session_factory
from encore.store.db import make_engine, pool_size_for, session_scope

from ..postgres import migrated_postgres_database
from ..threads import run_in_threads

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with migrated_postgres_database() as url:
        yield url


def test_the_postgresql_pool_is_sized_from_the_settings(pg_url: str) -> None:
    auto = Settings(database_url=pg_url)
    assert auto.database_pool_options() == {"pool_size": pool_size_for(40)}
    threads = Settings(database_url=pg_url, web_threads=8)
    assert threads.database_pool_options() == {"pool_size": 18}
    explicit = Settings(database_url=pg_url, database_pool_size=7, database_max_overflow=0,
                        database_pool_timeout=2.5)
    engine = make_engine(pg_url, **explicit.database_pool_options())
    try:
        assert engine.pool.size() == 7
        assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
        assert engine.pool._timeout == 2.5  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    default = make_engine(pg_url)  # no settings: still room for the 40 route threads
    try:
        assert default.pool.size() >= 40
    finally:
        default.dispose()
    # SQLite keeps its 50 unless told otherwise.
    assert Settings(database_url="sqlite:////tmp/x.db").database_pool_options() == {}


def test_every_pooled_connection_can_commit_jobs_at_once(pg_url: str, tmp_path) -> None:
    """As many concurrent committers as the pool has connections: every job is dispatched
    at once (before the fix each commit waited for a second connection until the pool
    timeout, and the dispatch failed)."""
    pool = 4
    settings = Settings(data_dir=tmp_path, database_url=pg_url, queue_url="memory://")
    engine = make_engine(pg_url, pool_size=pool, max_overflow=0, pool_timeout=3)
    factory = make_session_factory(engine)
    queues = make_queues(settings, bind=factory)
    install_dispatch_hook(factory, queues)
    inside = threading.Barrier(pool)
    ids: list[int] = []

    def commit_one() -> None:
        with session_scope(factory) as session:
            ids.append(enqueue_job(session, "noop", {}).id)
            inside.wait(timeout=10)  # every connection of the pool is held now

    try:
        started = time.monotonic()
        errors = run_in_threads(commit_one, [()] * pool, timeout=30)
        elapsed = time.monotonic() - started
        assert not errors
        with session_scope(engine, write=False) as session:
            rows = session.execute(
                sa.select(Job.id, Job.enqueued_at).where(Job.id.in_(ids))
            ).all()
        assert len(rows) == pool
        assert all(r.enqueued_at is not None for r in rows), "a job was not dispatched"
        assert elapsed < 3, f"commits waited for the pool ({elapsed:.1f} s)"
        assert queues.pending_count("generate") == pool
    finally:
        engine.dispose()


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("select pg_backend_pid()")).scalar_one())


def test_a_connection_idle_past_the_ping_age_is_pinged_and_a_dead_one_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping on every checkout (a round trip each); a pooled connection idle at least
    ``POSTGRES_PING_AFTER_IDLE_SECONDS`` is pinged first, and one the server closed is
    replaced before the caller sees it."""
    from encore.store import db

    monkeypatch.setattr(db, "POSTGRES_PING_AFTER_IDLE_SECONDS", 0.3)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    pings: list[int] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(1) or real_ping(c))
    try:
        first = _backend_pid(engine)
        assert _backend_pid(engine) == first and pings == []  # in use moments ago: no ping
        time.sleep(0.4)
        assert _backend_pid(engine) == first and pings == [1]  # idle: pinged, alive
        with admin.connect() as conn:
            conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": first})
        time.sleep(0.4)
        second = _backend_pid(engine)  # the ping finds it dead: a new connection, no error
        assert second != first and len(pings) == 2
    finally:
        engine.dispose()
        admin.dispose()


def test_short_core_reads_on_postgresql_run_in_autocommit(pg_url: str, tmp_path) -> None:
    """``ctx.connection(write=False)``: no BEGIN/COMMIT round trips on PostgreSQL; the pooled
    connection is back in transactions for the next writer."""
    from encore.services.context import ServiceContext

    ctx = ServiceContext.from_settings(Settings(database_url=pg_url, data_dir=tmp_path / "var"))
    try:
        with ctx.connection(write=False) as conn:
            assert conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
            assert conn.execute(sa.text("select count(*) from users")).scalar_one() == 0
        with ctx.connection() as conn:
            assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
            conn.execute(sa.text("select pg_sleep(0.01)"))
            assert conn.execute(sa.text("select now() < statement_timestamp()")).scalar_one()
    finally:
        ctx.engine.dispose()
