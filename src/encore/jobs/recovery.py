"""Recovering jobs whose worker died.

Huey delivers a message at most once: a consumer killed mid-job loses it. The database
still says ``running`` with a heartbeat that stops moving. :func:`recover_stale_jobs`
finds such jobs and puts them back in the queue (``queued``, not yet enqueued) or, when
``max_attempts`` starts were used up, fails them with a message saying so. A periodic
task in every consumer runs :func:`encore.jobs.dispatch.sweep_jobs`, which calls it and
then dispatches what it re-queued.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore.store.base import utcnow
from encore.store.enums import JobStatus, QueueName
from encore.store.models.jobs import Job

logger = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class RecoveryReport:
    """Ids of the jobs a recovery pass re-queued and failed."""

    requeued: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()


def _fmt(t: dt.datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "never"


def recover_stale_jobs(
    session: Session,
    now: dt.datetime | None = None,
    *,
    stale_after: dt.timedelta = DEFAULT_STALE_AFTER,
) -> RecoveryReport:
    """Re-queue (or fail) running jobs whose heartbeat is older than ``stale_after``.

    Parameters
    ----------
    session : Session
        A write transaction; the caller commits (then dispatches the re-queued jobs).
    now : datetime
        The current time (timezone-aware); defaults to the clock.
    stale_after : timedelta
        How long a heartbeat may be silent before its worker is presumed dead. Must be
        well above the heartbeat interval (10 s by default).

    Returns
    -------
    RecoveryReport
    """
    now = now or utcnow()
    cutoff = now - stale_after
    stale = session.scalars(
        sa.select(Job)
        .where(
            Job.status == JobStatus.RUNNING,
            sa.func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at) < cutoff,
        )
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    ).all()
    requeued, failed = [], []
    for job in stale:
        what = (
            f"worker {job.worker_id or '?'} stopped sending heartbeats during attempt "
            f"{job.attempts} of {job.max_attempts} (last heartbeat {_fmt(job.heartbeat_at)})"
        )
        if job.attempts >= job.max_attempts:
            job.status = JobStatus.FAILED
            job.error = f"{what}; giving up after {job.attempts} attempts"
            job.finished_at = now
            failed.append(job.id)
            logger.error("job %d (%s) failed: %s", job.id, job.kind, job.error)
        else:
            job.status = JobStatus.QUEUED
            job.enqueued_at = None
            job.worker_id = None
            job.progress = 0.0
            job.message = f"re-queued: {what}"[:500]
            requeued.append(job.id)
            logger.warning("job %d (%s) re-queued: %s", job.id, job.kind, what)
    session.flush()
    return RecoveryReport(requeued=tuple(requeued), failed=tuple(failed))


def requeue_lost_messages(
    session: Session,
    empty_queues: set[QueueName],
    now: dt.datetime | None = None,
    *,
    older_than: dt.timedelta = DEFAULT_STALE_AFTER,
) -> tuple[int, ...]:
    """Mark for re-dispatch queued jobs whose queue message was lost.

    A job that was handed to a queue more than ``older_than`` ago, is still ``queued``, and
    whose queue holds no messages at all can only have lost its message (e.g. a consumer
    died between taking it and claiming the row). Its ``enqueued_at`` is cleared so the
    next dispatch sends it again; a duplicate message would be harmless anyway.
    """
    if not empty_queues:
        return ()
    now = now or utcnow()
    ids = tuple(
        session.scalars(
            sa.select(Job.id).where(
                Job.status == JobStatus.QUEUED,
                Job.queue.in_(sorted(empty_queues)),
                Job.enqueued_at.is_not(None),
                Job.enqueued_at < now - older_than,
            )
        ).all()
    )
    if ids:
        session.execute(sa.update(Job).where(Job.id.in_(ids)).values(enqueued_at=None))
        logger.warning("jobs %s lost their queue messages; sending them again", list(ids))
    return ids
