"""What every service needs: settings, the database, blob storage, the queues and the models.

One :class:`ServiceContext` per process (the web app, a worker, a CLI command). Models are
loaded lazily and cached per model version, so a request that does not generate never pays
for torch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from encore.config import Settings
from encore.feedback import FeedbackConfig
from encore.store.blobs import BlobStore, make_blob_store
from encore.store.db import WriterBusy as WriterBusy  # re-exported for the web
from encore.store.db import (
    core_read_engine,
    make_engine,
    make_session_factory,
    session_scope,
    writer_does_not_wait,
)

if TYPE_CHECKING:
    from encore.jobs.queue import Queues

logger = logging.getLogger(__name__)

#: How a long service call (a job) reports: ``progress(fraction in [0, 1], message or None)``.
Progress = Callable[[float, str | None], None]


def no_progress(fraction: float, message: str | None = None) -> None:
    """The :data:`Progress` of a caller that does not follow: nothing is reported."""
    return None


@dataclass
class ServiceContext:
    """The process's handles on the platform's parts.

    Attributes
    ----------
    settings : Settings
    engine : Engine
        The database engine (SQLite by default, PostgreSQL by URL).
    sessions : sessionmaker
        Session factory; when ``queues`` is set, its sessions send the jobs they created to
        the queues right after commit.
    blobs : BlobStore
    queues : Queues or None
        ``None`` where no jobs are sent (they stay queued in the database until a sweep).
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    queues: Queues | None = None
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _models: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, queues: Queues | None | bool = True, seed: int | None = None
    ) -> ServiceContext:
        """Build the context for ``settings``.

        ``queues=True`` makes the queues from the settings (immediate mode if
        ``settings.queue_immediate``); ``False``/``None`` sends no jobs; a ``Queues``
        instance is used as is. ``seed`` seeds the dispatch random generator (simulations).
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url, **settings.database_pool_options())
        sessions = make_session_factory(engine)
        blobs = make_blob_store(settings.resolved_storage_url, **settings.storage_options)
        ctx = cls(settings=settings, engine=engine, sessions=sessions, blobs=blobs)
        seed = settings.random_seed if seed is None else seed
        if seed is not None:
            ctx._rng = np.random.default_rng(seed)
        if queues is True:
            from encore.jobs.queue import make_queues

            queues = make_queues(settings, bind=sessions)
        if queues:
            from encore.jobs.dispatch import install_dispatch_hook
            from encore.jobs.tasks import register_tasks  # local: the tasks import the services

            register_tasks()  # the handlers run in-process in immediate mode

            ctx.queues = queues  # type: ignore[assignment]
            install_dispatch_hook(sessions, queues)  # type: ignore[arg-type]
        return ctx

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One write transaction (committed at the end of the block)."""
        with session_scope(self.sessions) as session:
            yield session

    @contextmanager
    def connection(self, *, write: bool = True) -> Iterator[Connection]:
        """One Core transaction (committed at the end of the block), no ORM session.

        For the hot paths (a listening heartbeat, a session lookup), where the ORM's cost
        per statement is most of the request: pre-built statements with bound parameters,
        plain rows. ``write=False`` reads without writing: a read-only transaction on SQLite,
        autocommit on PostgreSQL (no ``BEGIN``/``COMMIT`` round trips; each statement sees its
        own snapshot, :func:`~encore.store.db.core_read_engine`). Jobs are not sent from here
        (the dispatch hook lives on the ORM sessions).
        """
        with (self.engine if write else core_read_engine(self.engine)).begin() as conn:
            yield conn

    @property
    def writers_queue_in_process(self) -> bool:
        """True on SQLite, where write transactions queue on encore's writer lock (see
        :meth:`without_waiting`); PostgreSQL writers do not queue before ``BEGIN``."""
        return self.engine.dialect.name == "sqlite"

    @staticmethod
    def without_waiting() -> AbstractContextManager[None]:
        """Within the block a write transaction raises :class:`WriterBusy` instead of
        waiting for another writer (for callers that must not block, e.g. an event loop)."""
        return writer_does_not_wait()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One read-only transaction (does not wait for SQLite writers).

        Objects loaded here stay usable afterwards (they are detached with their loaded
        state; relationships not loaded inside the block cannot be loaded later).
        """
        with session_scope(self.sessions, write=False) as session:
            yield session
            session.expunge_all()  # before the rollback, which would expire them

    # -- randomness and loop settings ---------------------------------------------------

    def random(self) -> np.random.Generator:
        """A generator for one decision, split off the context's seeded stream (thread-safe)."""
        with self._lock:
            return np.random.default_rng(self._rng.integers(0, 2**63))

    def feedback_config(self) -> FeedbackConfig:
        """The loop's settings (``encore.feedback``) filled from :class:`Settings`: every
        field that is also a setting, by its name; the rest keep the package's defaults."""
        s = self.settings
        values = {f.name: getattr(s, f.name) for f in fields(FeedbackConfig)
                  if f.name in Settings.model_fields}
        # the setting says 0 for "no age rule", the logic None
        values["dataset_max_age_days"] = s.dataset_max_age_days or None
        return FeedbackConfig(**values)

    # -- models, cached per process -------------------------------------------------------

    def cached(self, key: Any, load: Any) -> Any:
        """``load()`` once per ``key`` in this process (models, keyed by version id)."""
        with self._lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]

    def forget(self, key: Any) -> None:
        with self._lock:
            self._models.pop(key, None)
