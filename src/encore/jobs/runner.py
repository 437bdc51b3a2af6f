"""Running one job: claim the row, call its handler, record the outcome.

The database row is the source of truth. :func:`run_job` claims a queued job
(``status=running``, ``attempts + 1``, ``worker_id``, ``heartbeat_at``), keeps the heartbeat
fresh from a background thread while the handler runs, and records ``done`` or ``failed``
with the error message. Every write after the claim is fenced on ``(attempts, status)``:
if the sweeper re-queued the job meanwhile (this worker looked dead), this attempt's
writes are refused and :class:`~encore.errors.JobSuperseded` stops it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from encore.errors import EncoreError, InvalidInput, JobSuperseded
from encore.jobs.registry import get_handler, registered_kinds
from encore.store.base import utcnow
from encore.store.db import session_scope
from encore.store.enums import JobStatus
from encore.store.models.jobs import Job

if TYPE_CHECKING:
    from encore.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 10.0
#: Progress reports closer together than this are not written (unless the message changes).
PROGRESS_WRITE_INTERVAL = 0.5
MAX_ERROR_CHARS = 10_000

Bind = Engine | sessionmaker[Session]


def default_worker_id() -> str:
    """``host:pid:thread`` — identifies the process and thread running a job."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def worker_id_prefix() -> str:
    """The part of :func:`default_worker_id` shared by every thread of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def engine_of(bind: Bind) -> Engine:
    """The engine behind an engine or a session factory."""
    return bind if isinstance(bind, Engine) else bind.kw["bind"]


@dataclass
class JobContext:
    """What a handler gets: the job's ids and a way to report progress.

    Attributes
    ----------
    job_id, kind, payload :
        The job row's id, kind and payload (ids only).
    attempt : int
        1 for the first run, 2 after one recovery, …
    worker_id : str
        Who runs this attempt.
    settings : Settings or None
        The worker's settings, when it has them.
    """

    job_id: int
    kind: str
    payload: Mapping[str, Any]
    attempt: int
    worker_id: str
    bind: Bind
    settings: Settings | None = None
    _superseded: threading.Event = field(default_factory=threading.Event, repr=False)
    _last_write: float = field(default=0.0, repr=False)
    _last_message: str | None = field(default=None, repr=False)

    def session(self) -> AbstractContextManager[Session]:
        """A transaction in the job's database (committed when the block ends)."""
        return session_scope(self.bind)

    @property
    def superseded(self) -> bool:
        """Whether this attempt lost its job (the handler should stop)."""
        return self._superseded.is_set()

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1] and an optional short message; refresh the heartbeat.

        Writes are throttled to one every 0.5 s unless the message changes or the
        fraction reaches 1, so it is fine to call this every step of a training loop.

        Raises
        ------
        InvalidInput
            If ``fraction`` is not a number in [0, 1].
        JobSuperseded
            If the job was taken away from this attempt; the handler should let it propagate.
        """
        if not isinstance(fraction, int | float) or math.isnan(fraction) or not 0 <= fraction <= 1:
            raise InvalidInput(f"job progress must be in [0, 1], got {fraction!r}")
        if self.superseded:
            raise JobSuperseded(f"job {self.job_id} attempt {self.attempt} was superseded")
        now = time.monotonic()
        if (
            now - self._last_write < PROGRESS_WRITE_INTERVAL
            and message == self._last_message
            and fraction < 1
        ):
            return
        values: dict[str, Any] = {"progress": float(fraction), "heartbeat_at": utcnow()}
        if message is not None:
            values["message"] = message[:500]
        if not _update_owned(engine_of(self.bind), self.job_id, self.attempt, values):
            self._superseded.set()
            raise JobSuperseded(f"job {self.job_id} attempt {self.attempt} was superseded")
        self._last_write = now
        self._last_message = message


def _update_owned(engine: Engine, job_id: int, attempt: int, values: dict[str, Any]) -> bool:
    """Update the job if this attempt still owns it; return whether it did."""
    with session_scope(engine) as session:
        result = session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING)
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Claim:
    job_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int


def _claim(engine: Engine, job_id: int, worker_id: str) -> _Claim | JobStatus | None:
    """Mark a queued job running for this worker, or say why not (its status, or None)."""
    with session_scope(engine) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        if job.status is not JobStatus.QUEUED:
            return job.status
        now = utcnow()
        if job.attempts >= job.max_attempts:
            job.status = JobStatus.FAILED
            job.error = (
                f"job {job.id} ({job.kind}) was started {job.attempts} times "
                f"(max_attempts {job.max_attempts}) without finishing; giving up"
            )
            job.finished_at = now
            return JobStatus.FAILED
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.worker_id = worker_id[:200]
        job.started_at = now
        job.heartbeat_at = now
        job.error = None
        return _Claim(job.id, job.kind, dict(job.payload), job.attempts)


def release_job(engine: Engine, job_id: int, reason: str, *, worker_prefix: str = "") -> bool:
    """Put a running job back in the queue (e.g. its worker is shutting down).

    Only a job whose ``worker_id`` starts with ``worker_prefix`` is released. Its attempt
    still counts. Returns whether the job was released; it must then be dispatched again.
    """
    with session_scope(engine) as session:
        query = (
            sa.update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.QUEUED,
                enqueued_at=None,
                worker_id=None,
                progress=0.0,
                message=reason[:500],
            )
        )
        if worker_prefix:
            query = query.where(Job.worker_id.startswith(worker_prefix, autoescape=True))
        released = bool(session.execute(query).rowcount)  # type: ignore[attr-defined]
    if released:
        logger.warning("job %d released: %s", job_id, reason)
    return released


class _Heartbeat:
    """A daemon thread that refreshes ``heartbeat_at`` while a handler runs."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-job-{ctx.job_id}", daemon=True
        )

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        engine = engine_of(self.ctx.bind)
        while not self._stop.wait(self.interval):
            try:
                owned = _update_owned(
                    engine, self.ctx.job_id, self.ctx.attempt, {"heartbeat_at": utcnow()}
                )
            except Exception:  # a missed beat is not fatal; the next one may succeed
                logger.exception("heartbeat of job %d failed", self.ctx.job_id)
                continue
            if not owned:
                logger.warning(
                    "job %d attempt %d was superseded; telling its handler to stop",
                    self.ctx.job_id,
                    self.ctx.attempt,
                )
                self.ctx._superseded.set()
                return


def _error_text(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EncoreError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


def run_job(
    bind: Bind,
    job_id: int,
    *,
    worker_id: str | None = None,
    settings: Settings | None = None,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
) -> JobStatus | None:
    """Run job ``job_id`` if it is queued; return its status afterwards.

    Parameters
    ----------
    bind : Engine or sessionmaker
        The database. A session factory is handed to the handler as ``ctx.session()``, so
        jobs the handler enqueues are dispatched by that factory's after-commit hook.
    job_id : int
        The ``jobs`` row to run. A job that is not ``queued`` (already running elsewhere,
        finished, or missing) is left alone: duplicate queue messages are harmless.
    worker_id : str
        Recorded on the row; defaults to ``host:pid:thread``.
    settings : Settings
        Passed to the handler as ``ctx.settings``.
    heartbeat_seconds : float
        How often the heartbeat thread refreshes ``heartbeat_at``.

    Returns
    -------
    JobStatus or None
        ``done`` or ``failed`` for a job this call ran; the current status for a job it
        did not run; ``None`` if the job does not exist or this attempt was superseded.
    """
    from encore import logs

    # A worker's log lines name the job they belong to ("job-<id>"); in immediate mode the
    # job runs inside a web request and keeps that request's id.
    token = logs.request_id.set(f"job-{job_id}") if logs.request_id.get() == "-" else None
    try:
        return _run_job(bind, job_id, worker_id=worker_id, settings=settings,
                        heartbeat_seconds=heartbeat_seconds)
    finally:
        if token is not None:
            logs.request_id.reset(token)


def _run_job(
    bind: Bind,
    job_id: int,
    *,
    worker_id: str | None,
    settings: Settings | None,
    heartbeat_seconds: float,
) -> JobStatus | None:
    engine = engine_of(bind)
    worker_id = worker_id or default_worker_id()
    claim = _claim(engine, job_id, worker_id)
    if not isinstance(claim, _Claim):
        if claim is None:
            logger.warning("job %d does not exist; nothing to run", job_id)
        else:
            logger.info("job %d is %s; not running it again", job_id, claim)
        return claim

    logger.info(
        "job %d (%s) attempt %d started by %s", job_id, claim.kind, claim.attempt, worker_id
    )
    handler = get_handler(claim.kind)
    if handler is None:
        message = (
            f"no handler registered for job kind {claim.kind!r} "
            f"(registered: {', '.join(registered_kinds()) or 'none'})"
        )
        logger.error("job %d failed: %s", job_id, message)
        _finish(engine, claim, JobStatus.FAILED, error=message)
        return JobStatus.FAILED

    ctx = JobContext(
        job_id=claim.job_id,
        kind=claim.kind,
        payload=claim.payload,
        attempt=claim.attempt,
        worker_id=worker_id,
        bind=bind,
        settings=settings,
    )
    started = time.monotonic()
    try:
        with _Heartbeat(ctx, heartbeat_seconds):
            handler(ctx)
    except JobSuperseded:
        logger.warning("job %d attempt %d stopped: superseded", job_id, claim.attempt)
        return None
    except EncoreError as exc:
        logger.warning("job %d (%s) failed: %s", job_id, claim.kind, exc)
        return _finish(engine, claim, JobStatus.FAILED, error=_error_text(exc))
    except Exception as exc:
        logger.exception("job %d (%s) failed with an unexpected error", job_id, claim.kind)
        return _finish(engine, claim, JobStatus.FAILED, error=_error_text(exc))
    except BaseException:
        # Interrupted (KeyboardInterrupt in a process worker, SystemExit): hand it back.
        release_job(engine, job_id, f"interrupted while running on {worker_id}")
        raise
    logger.info("job %d (%s) done in %.2fs", job_id, claim.kind, time.monotonic() - started)
    return _finish(engine, claim, JobStatus.DONE)


def _finish(
    engine: Engine, claim: _Claim, status: JobStatus, *, error: str | None = None
) -> JobStatus | None:
    now = utcnow()
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now}
    if status is JobStatus.DONE:
        values["progress"] = 1.0
    if error is not None:
        values["error"] = error
    if _update_owned(engine, claim.job_id, claim.attempt, values):
        return status
    logger.warning(
        "job %d attempt %d finished as %s but no longer owns the job; result not recorded",
        claim.job_id,
        claim.attempt,
        status,
    )
    return None
