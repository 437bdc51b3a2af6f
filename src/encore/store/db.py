"""Engines, sessions and migrations.

One code path, chosen by URL (docs/store.md): ``sqlite:///…`` by default, PostgreSQL via
psycopg 3 (``postgresql+psycopg://…``; ``postgresql://`` and ``postgres://`` are read the
same way) at scale.

SQLite is set up for several processes and threads writing at once: WAL journal,
``synchronous=NORMAL``, foreign keys on, a busy timeout, and every write transaction
opened with ``BEGIN IMMEDIATE`` so that a transaction that reads and then writes never has
to upgrade its lock (the upgrade cannot wait and fails at once with "database is locked").
This is SQLAlchemy's documented recipe for pysqlite: disable the driver's own ``BEGIN``
(``isolation_level = None`` on the DBAPI connection) and emit ours in the ``begin`` event.
Read-only sessions (``session_scope(..., write=False)``) use a plain deferred ``BEGIN``.

Example::

    engine = make_engine("sqlite:///var/encore.db")
    with session_scope(engine) as session:
        session.add(User(email="a@example.org", display_name="A", password_hash="…"))
    # committed here; rolled back if the block raised
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

if sys.platform == "win32":  # no fcntl: the writers of one process are still ordered
    fcntl = None
else:
    import fcntl

from encore.errors import ConfigurationError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option that marks a connection as read-only (plain ``BEGIN`` on SQLite).
READ_ONLY_OPTION = "encore_read_only"

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
_HOLDS_WRITE_LOCK = "encore_holds_write_lock"


def normalise_url(url: str) -> str:
    """Return ``url`` with the driver encore uses for its backend.

    ``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://`` (psycopg 3);
    SQLite URLs are returned unchanged. Other backends are refused.

    Raises
    ------
    ConfigurationError
        If the URL is empty, malformed or names an unsupported backend.
    """
    if not url:
        raise ConfigurationError("database URL is empty")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url.removeprefix(prefix)
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"malformed database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:///path or postgresql+psycopg://user@host/db"
        )
    return url


#: SQLite's pool when no size is given: 50 connections (no churn under the web's 40 route
#: threads; opening a SQLite connection is cheap but not free), 20 more on bursts.
SQLITE_POOL_SIZE = 50
SQLITE_MAX_OVERFLOW = 20
SQLITE_POOL_TIMEOUT = 60.0
#: PostgreSQL's pool when no size is given (SQLAlchemy's own defaults are 5 + 10, too few
#: for a web process's 40 route threads: see :func:`pool_size_for`).
POSTGRES_MAX_OVERFLOW = 10
POSTGRES_POOL_TIMEOUT = 30.0
#: A pooled PostgreSQL connection idle at least this long is pinged before it is handed out
#: (a server restart or a dropped idle connection is found there, not by the request); one in
#: steady use is not. SQLAlchemy's ``pool_pre_ping`` pings every checkout: a round trip
#: each, two of the ten a listening heartbeat used to make.
POSTGRES_PING_AFTER_IDLE_SECONDS = 5.0


def pool_size_for(threads: int) -> int:
    """The pool size that lets ``threads`` concurrent callers each hold a connection.

    Every route thread of a web process (anyio's 40 by default, ``ENCORE_WEB_THREADS``)
    may hold one connection at a time; the event loop, the job sweep and the heartbeat
    threads need a few more. Connections are opened only when needed, so an idle process
    holds few whatever the size.
    """
    return max(int(threads), 1) + 10


def make_engine(
    url: str,
    *,
    echo: bool = False,
    foreign_keys: bool = True,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
) -> Engine:
    """Create an engine for ``url``, configured for concurrent use.

    Parameters
    ----------
    url : str
        A SQLite or PostgreSQL URL (see :func:`normalise_url`). The parent folder of a
        SQLite file is created if missing.
    echo : bool
        Log every statement (debugging).
    foreign_keys : bool
        SQLite only: enforce foreign keys (``PRAGMA foreign_keys=ON``). Migrations turn
        this off while tables are copied in batch mode.
    pool_size, max_overflow, pool_timeout
        The connection pool (``ENCORE_DATABASE_POOL_*``, see :class:`encore.config.Settings`).
        ``None`` means: PostgreSQL :func:`pool_size_for` 40 threads + 10 overflow, 30 s;
        SQLite 50 + 20, 60 s. In-memory SQLite databases keep SQLAlchemy's own pool.

    Returns
    -------
    sqlalchemy.engine.Engine
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(
            url,
            echo=echo,
            pool_size=pool_size if pool_size is not None else pool_size_for(40),
            max_overflow=max_overflow if max_overflow is not None else POSTGRES_MAX_OVERFLOW,
            pool_timeout=pool_timeout if pool_timeout is not None else POSTGRES_POOL_TIMEOUT,
        )
        _ping_when_idle(engine, POSTGRES_PING_AFTER_IDLE_SECONDS)
        return engine

    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    pool_args: dict[str, Any] = {}
    if database and database != ":memory:":
        pool_args = {
            "pool_size": pool_size if pool_size is not None else SQLITE_POOL_SIZE,
            "max_overflow": max_overflow if max_overflow is not None else SQLITE_MAX_OVERFLOW,
            "pool_timeout": pool_timeout if pool_timeout is not None else SQLITE_POOL_TIMEOUT,
        }
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        **pool_args,
    )
    _configure_sqlite(engine, foreign_keys=foreign_keys)
    return engine


class WriterBusy(Exception):
    """A write transaction was asked not to wait (:func:`writer_does_not_wait`) and the
    writer lock was taken. Nothing was written; the caller may retry where waiting is fine."""


_WRITER_WAITS: contextvars.ContextVar[bool] = contextvars.ContextVar("encore_writer_waits", default=True)


@contextmanager
def writer_does_not_wait() -> Iterator[None]:
    """Within the block, a SQLite write transaction whose writer lock is taken raises
    :class:`WriterBusy` at ``BEGIN`` instead of waiting (the web's event loop must not
    block on another writer). Read-only transactions and PostgreSQL are unaffected."""
    token = _WRITER_WAITS.set(False)
    try:
        yield
    finally:
        _WRITER_WAITS.reset(token)


class WriterLock:
    """One SQLite writer at a time across the threads and processes of encore.

    Threads queue on a :class:`threading.Lock`; the one that holds it then takes an
    exclusive ``flock`` on ``path`` (shared by every process that opens the database),
    polled every 0.1–2 ms. A process that dies loses its file lock at once (the kernel
    drops it). Without ``path`` (in-memory databases), or where ``fcntl`` does not exist,
    only the threads of the process are ordered.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The child must not share the parent's open file (a lock on it is the parent's,
        # and it would outlive the parent) nor inherit a thread lock held by a parent thread.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._threads = threading.Lock()

    def _file(self) -> int:
        if self._fd is None:
            assert self.path is not None  # callers check it first
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for both locks; ``False`` if they did not come."""
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            return False
        if self.path is None or fcntl is None:
            return True
        try:
            fd, delay = self._file(), 0.0001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self._threads.release()
                        return False
                    time.sleep(delay)
                    delay = min(2 * delay, 0.002)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            if self.path is not None and fcntl is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _configure_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: it would otherwise emit a
        # deferred BEGIN on its own (and none before SELECT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    # Writers queue before BEGIN IMMEDIATE: the threads of this process on a lock, the
    # processes on an advisory file lock. Both hand over within a fraction of a
    # millisecond, whereas SQLite's busy handler retries with sleeps growing to 100 ms
    # (long tails under many writers). SQLite's own lock still guards the file against
    # any other program (busy_timeout).
    database = engine.url.database or ""
    lock_file = None if in_memory or database.startswith("file:") else Path(f"{database}-writers.lock")
    write_lock = WriterLock(lock_file)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
            return
        waits = _WRITER_WAITS.get()
        if not write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_SECONDS if waits else 0.0):
            if not waits:
                raise WriterBusy("another write transaction holds the SQLite writer lock")
            raise sa.exc.OperationalError(
                "BEGIN IMMEDIATE",
                None,
                Exception(
                    f"database is locked: waited {SQLITE_BUSY_TIMEOUT_SECONDS:.0f} s for "
                    "another write transaction"
                ),
            )
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            write_lock.release()
            raise
        connection.info[_HOLDS_WRITE_LOCK] = True

    # SQLAlchemy fires "commit"/"rollback" *before* it commits or rolls back: end the
    # transaction here, then let the next writer in (the driver's own commit or rollback
    # that follows finds no transaction and does nothing).
    def _finish(dbapi_connection: Any, verb: str) -> None:
        try:
            if dbapi_connection is not None and dbapi_connection.in_transaction:
                dbapi_connection.execute(verb)
        finally:
            write_lock.release()

    def _on_commit(connection: sa.Connection) -> None:
        if connection.info.pop(_HOLDS_WRITE_LOCK, False):
            _finish(connection.connection.dbapi_connection, "COMMIT")

    def _on_rollback(connection: sa.Connection) -> None:
        if connection.info.pop(_HOLDS_WRITE_LOCK, False):
            _finish(connection.connection.dbapi_connection, "ROLLBACK")

    # A connection returned to the pool, or invalidated, in the middle of a transaction.
    @event.listens_for(engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
            _finish(dbapi_connection, "ROLLBACK")

    @event.listens_for(engine.pool, "invalidate")
    def _on_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
            write_lock.release()  # the connection is closed: SQLite drops its lock with it

    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before handing it out when it sat idle ``idle_seconds`` or
    more; a dead one is replaced (SQLAlchemy retries the checkout on ``DisconnectionError``)."""

    @event.listens_for(engine.pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["encore_idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checking_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("encore_idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a new connection, or one in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's error for a closed or broken connection
            raise sa.exc.DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def core_read_engine(engine: Engine) -> Engine:
    """``engine`` for short Core reads (cached on it; shares its pool): SQLite's read-only
    ``BEGIN`` (:func:`read_only_engine`); PostgreSQL in autocommit, so a read is its
    statements' round trips alone, without ``BEGIN`` and ``COMMIT`` (each statement then sees
    its own snapshot)."""
    if engine.dialect.name != "postgresql":
        return read_only_engine(engine)
    auto: Engine | None = engine.__dict__.get("_encore_autocommit")
    if auto is None:
        auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        engine.__dict__["_encore_autocommit"] = auto
    return auto


def read_only_engine(engine: Engine) -> Engine:
    """``engine`` with the read-only execution option (cached on it; shares its pool)."""
    ro: Engine | None = engine.__dict__.get("_encore_read_only")
    if ro is None:
        ro = engine.execution_options(**{READ_ONLY_OPTION: True})
        engine.__dict__["_encore_read_only"] = ro
    return ro


@contextmanager
def session_scope(bind: Engine | sessionmaker[Session], *, write: bool = True) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back if it raises.

    Parameters
    ----------
    bind : Engine or sessionmaker
        Where sessions come from. A session factory keeps its event hooks (e.g. the job
        dispatch hook of :func:`encore.jobs.dispatch.install_dispatch_hook`).
    write : bool
        ``False`` opens a read-only transaction (a deferred ``BEGIN`` on SQLite, so it does
        not wait for writers); it is rolled back at the end instead of committed, and the
        objects it loaded stay readable (detached) afterwards.
    """
    if isinstance(bind, Engine):
        session = Session(bind=bind if write else read_only_engine(bind), expire_on_commit=False)
    elif write:
        session = bind()
    else:
        session = bind(bind=read_only_engine(bind.kw["bind"]))
    try:
        yield session
        if write:
            session.commit()
        else:
            session.expunge_all()  # loaded objects stay readable; nothing is written
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- migrations ------------------------------------------------------------------------


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at encore's migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


@contextmanager
def migrating(url: str) -> Iterator[tuple[Any, sa.Connection]]:
    """``with migrating(url) as (config, connection):`` an Alembic config whose migrations run
    on ``connection``, a connection to ``url`` with foreign keys off (see :func:`upgrade`)."""
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            yield config, connection
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (creating it if it is new).

    On SQLite, foreign keys are off while migrating (batch mode copies tables, and with
    them on, dropping the old copy would cascade deletes); a foreign-key check runs after.

    Raises
    ------
    ConfigurationError
        If, on SQLite, the migrated data violates a foreign key.
    """
    from alembic import command

    with migrating(url) as (config, connection):
        command.upgrade(config, revision)
        if connection.dialect.name == "sqlite":
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.commit()
            if violations:
                raise ConfigurationError(
                    f"migration left {len(violations)} foreign-key violations, "
                    f"first: {tuple(violations[0])}"
                )
    logger.info("database %s at revision %s", _display(url), revision)


def ensure_schema(url: str, *, migrate: bool | None = None) -> None:
    """Make sure the database at ``url`` has the newest schema before a process uses it.

    Parameters
    ----------
    migrate : bool, optional
        Whether to migrate a database that is behind. By default SQLite databases (the
        embedded, single-host setup) are migrated and PostgreSQL ones are not: at scale,
        migrations are a separate step (``encore db upgrade``) before processes start.

    Raises
    ------
    ConfigurationError
        If the database is behind and may not be migrated here, or is ahead of this code.
    """
    url = normalise_url(url)
    if migrate is None:
        migrate = make_url(url).get_backend_name() == "sqlite"
    head = head_revision()
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    if current == head:
        return
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise ConfigurationError(
            f"database {_display(url)} is at revision {current}, which this version of encore "
            f"does not know (newest: {head}); upgrade encore"
        )
    if migrate:
        upgrade(url)
        return
    raise ConfigurationError(
        f"database {_display(url)} is at revision {current or '(empty)'}, not {head}: "
        "run `encore db upgrade` first"
    )


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of encore."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_diff(engine: Engine) -> list[Any]:
    """Differences between the live schema and the models (empty when they match).

    Uses Alembic's ``compare_metadata`` with the same options as autogenerate.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import encore.store.models  # noqa: F401  (registers the tables)
    from encore.store.base import Base
    from encore.store.migrations.options import MIGRATION_OPTIONS

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=dict(MIGRATION_OPTIONS))
        diff: list[Any] = compare_metadata(context, Base.metadata)
        connection.rollback()
    return diff


def _display(url: str) -> str:
    return make_url(normalise_url(url)).render_as_string(hide_password=True)
