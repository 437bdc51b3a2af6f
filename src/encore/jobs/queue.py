"""The two Huey queues, chosen by URL, and the one task they run.

``Settings.resolved_queue_url`` picks the storage (the same code path everywhere):

- ``sqlite:///path/queue.db`` (default) → ``SqliteHuey``: no server, one host;
- ``redis://host:6379/0`` (or ``rediss://``, ``unix://``) → ``RedisHuey``: any number of
  hosts, e.g. workers on GPU machines;
- ``postgresql://…`` → ``PostgresHuey`` (needs ``psycopg`` ≥ 3.2, already installed);
- ``memory://`` → ``MemoryHuey`` (one process; tests).

There are two queues, ``encore-generate`` (generation, embedding: short jobs) and
``encore-train`` (fine-tuning: long jobs), so a fine-tune never delays generation; each
has its own consumers (``encore worker --queue generate|train|all``). Both run the same
task, ``encore.run_job(job_id)``, which hands the id to :func:`encore.jobs.runner.run_job`;
both also run ``encore.sweep_jobs`` every minute (recovery of dead workers' jobs).

Huey's result store is off: results and states live in the ``jobs`` table.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huey import Huey, MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey.signals import SIGNAL_INTERRUPTED
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from encore.errors import ConfigurationError
from encore.jobs.runner import Bind, engine_of, release_job, run_job, worker_id_prefix
from encore.store.db import make_engine, make_session_factory
from encore.store.enums import QueueName

if TYPE_CHECKING:
    from encore.config import Settings

logger = logging.getLogger(__name__)

RUN_TASK_NAME = "encore.run_job"
SWEEP_TASK_NAME = "encore.sweep_jobs"


def queue_huey_name(queue: QueueName | str) -> str:
    """The Huey queue name of an encore queue (``encore-generate``, ``encore-train``)."""
    return f"encore-{QueueName(queue).value}"


def make_huey(url: str, name: str, *, immediate: bool = False) -> Huey:
    """A Huey instance named ``name`` on the storage given by ``url`` (see module doc).

    With ``immediate=True`` tasks run synchronously in the calling thread on in-memory
    storage (Huey's immediate mode), whatever the URL.

    Raises
    ------
    ConfigurationError
        If the URL scheme is not one of the supported ones.
    """
    options: dict[str, Any] = {"results": False, "utc": True, "immediate": immediate}
    if url.startswith("sqlite:///"):
        filename = url.removeprefix("sqlite:///")
        if not filename:
            raise ConfigurationError(f"queue URL {url!r} names no file")
        if not immediate:
            Path(filename).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=filename, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(name, url=url, **options)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        dsn = "postgresql://" + url.split("://", 1)[1]
        return PostgresHuey(name, dsn=dsn, **options)
    if url.startswith("memory://"):
        return MemoryHuey(name, **options)
    raise ConfigurationError(
        f"unsupported queue URL {url!r}: use sqlite:///path, redis://host:port/db, "
        "postgresql://… or memory://"
    )


class Queues:
    """Both queues of one process, with the job task registered on each.

    Parameters
    ----------
    settings : Settings
        Queue URL, immediate mode, heartbeat and stale timeouts, database URL.
    bind : Engine or sessionmaker, optional
        The database the tasks use. An engine is wrapped in a session factory whose
        commits dispatch the jobs they create (:func:`~encore.jobs.dispatch.install_dispatch_hook`);
        a session factory is used as given. By default each process (and each forked
        worker) creates its own engine from ``settings.resolved_database_url`` on first use.
    immediate : bool, optional
        Overrides ``settings.queue_immediate``.

    Example (a web process)::

        queues = make_queues(settings)
        with session_scope(queues.session_factory) as session:
            enqueue_job(session, "generate", {"clip_id": clip.id})
        # committed → sent to encore-generate
    """

    def __init__(
        self, settings: Settings, *, bind: Bind | None = None, immediate: bool | None = None
    ) -> None:
        self.settings = settings
        self.immediate = settings.queue_immediate if immediate is None else immediate
        self._lock = threading.Lock()
        self._given: sessionmaker[Session] | None = None
        if isinstance(bind, Engine):
            self._given = self._hooked_factory(bind)
        elif bind is not None:
            self._given = bind
        self._own: tuple[int, sessionmaker[Session]] | None = None
        url = settings.resolved_queue_url
        self.hueys: dict[QueueName, Huey] = {
            q: make_huey(url, queue_huey_name(q), immediate=self.immediate) for q in QueueName
        }
        self._tasks = {q: self._register(q, h) for q, h in self.hueys.items()}

    # -- the database, per process ---------------------------------------------------

    def _hooked_factory(self, engine: Engine) -> sessionmaker[Session]:
        from encore.jobs.dispatch import install_dispatch_hook

        factory = make_session_factory(engine)
        install_dispatch_hook(factory, self)
        return factory

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions on this process's database whose commits dispatch their new jobs
        (created lazily; never shared across a fork)."""
        if self._given is not None:
            return self._given
        with self._lock:
            pid = os.getpid()
            if self._own is None or self._own[0] != pid:
                engine = make_engine(
                    self.settings.resolved_database_url, **self.settings.database_pool_options()
                )
                self._own = (pid, self._hooked_factory(engine))
            return self._own[1]

    @property
    def engine(self) -> Engine:
        """The engine behind :attr:`session_factory`."""
        return engine_of(self.session_factory)

    # -- tasks ------------------------------------------------------------------------

    def _register(self, queue: QueueName, huey: Huey) -> Any:
        settings = self.settings

        @huey.task(name=RUN_TASK_NAME)
        def run_job_task(job_id: int) -> None:
            run_job(
                self.session_factory,
                int(job_id),
                settings=settings,
                heartbeat_seconds=settings.job_heartbeat_seconds,
            )

        @huey.periodic_task(crontab(minute="*"), name=SWEEP_TASK_NAME)
        def sweep_jobs_task() -> None:
            from encore.jobs.dispatch import sweep_jobs

            sweep_jobs(self.session_factory, self)

        @huey.signal(SIGNAL_INTERRUPTED)
        def _on_interrupted(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
            # The consumer is stopping while this task runs: hand the job back now instead
            # of waiting for its heartbeat to go stale.
            if getattr(task, "name", None) != RUN_TASK_NAME or not task.args:
                return
            from encore.jobs.dispatch import dispatch_pending

            job_id = int(task.args[0])
            try:
                release_job(
                    self.engine,
                    job_id,
                    f"worker shut down ({queue_huey_name(queue)})",
                    worker_prefix=worker_id_prefix(),
                )
                # Released here or by run_job itself (process workers): send it again.
                dispatch_pending(self.engine, self, job_ids=[job_id])
            except Exception:
                logger.exception("could not hand back interrupted job %d", job_id)

        return run_job_task

    def send(self, queue: QueueName | str, job_id: int) -> None:
        """Put ``run_job(job_id)`` on ``queue`` (runs it now in immediate mode)."""
        self._tasks[QueueName(queue)](int(job_id))

    def huey(self, queue: QueueName | str) -> Huey:
        """The Huey instance of ``queue``."""
        return self.hueys[QueueName(queue)]

    def pending_count(self, queue: QueueName | str) -> int:
        """Messages waiting in ``queue`` (not counting running ones)."""
        return int(self.huey(queue).pending_count())


def make_queues(
    settings: Settings, *, bind: Bind | None = None, immediate: bool | None = None
) -> Queues:
    """Both queues for ``settings`` (see :class:`Queues`)."""
    return Queues(settings, bind=bind, immediate=immediate)
