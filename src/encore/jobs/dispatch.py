"""Handing committed jobs to the queues, and the periodic sweep.

A job row is created inside a service's transaction (:func:`encore.store.enqueue_job`)
and must reach a queue only after that transaction commits, so that a worker always
finds the row. Two paths do that:

- :func:`install_dispatch_hook` on a session factory: after each commit of a session
  that created jobs, those jobs are dispatched at once;
- :func:`dispatch_pending`: sends every queued job not yet handed to a queue (run by the
  periodic sweep, and usable after any commit).

Dispatching marks ``enqueued_at`` first, then sends. A crash in between leaves a queued
job whose message never arrived; :func:`sweep_jobs` notices (the queue is empty but the
job is still queued) and sends it again. Duplicate messages are harmless: a job runs
only if it is still ``queued`` when a worker claims it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from encore.jobs.recovery import RecoveryReport, recover_stale_jobs, requeue_lost_messages
from encore.jobs.runner import Bind, engine_of
from encore.store.base import utcnow
from encore.store.db import session_scope
from encore.store.enqueue import NEW_JOBS_KEY
from encore.store.enums import JobStatus, QueueName
from encore.store.models.jobs import Job

if TYPE_CHECKING:
    from encore.jobs.queue import Queues

logger = logging.getLogger(__name__)

_COMMITTED_JOBS_KEY = "encore_committed_jobs"


def dispatch_pending(
    bind: Bind, queues: Queues, *, job_ids: Iterable[int] | None = None, limit: int = 1000
) -> int:
    """Send queued jobs that have not been handed to a queue yet; return how many were sent.

    Parameters
    ----------
    bind : Engine or sessionmaker
        The database.
    queues : Queues
        Where to send them (each job goes to its own ``queue``).
    job_ids : iterable of int, optional
        Only these jobs (e.g. those one transaction created); default all pending ones.
    limit : int
        At most this many jobs per call (oldest first).
    """
    engine = engine_of(bind)
    ids = None if job_ids is None else sorted({int(i) for i in job_ids})
    if ids == []:
        return 0
    now = utcnow()
    claimed: list[tuple[int, QueueName]] = []
    with session_scope(engine) as session:
        query = (
            sa.select(Job.id, Job.queue)
            .where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None))
            .order_by(Job.id)
            .limit(limit)
        )
        if ids is not None:
            query = query.where(Job.id.in_(ids))
        for job_id, queue in session.execute(query).all():
            # Another dispatcher may have taken it since the select.
            won = session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.enqueued_at.is_(None))
                .values(enqueued_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                claimed.append((job_id, queue))
    sent = 0
    for index, (job_id, queue) in enumerate(claimed):
        try:
            queues.send(queue, job_id)
        except Exception:
            logger.exception("could not send job %d to queue %s; will retry", job_id, queue)
            _unmark([j for j, _ in claimed[index:]], engine)
            break
        sent += 1
    if sent:
        logger.debug("dispatched %d jobs", sent)
    return sent


def _unmark(job_ids: list[int], bind: Bind) -> None:
    try:
        with session_scope(bind) as session:
            session.execute(
                sa.update(Job)
                .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
                .values(enqueued_at=None)
            )
    except Exception:
        logger.exception("could not reset jobs %s; the sweep will resend them", job_ids)


def install_dispatch_hook(factory: sessionmaker[Session], queues: Queues) -> None:
    """Dispatch the jobs a session created as soon as its transaction commits.

    Sessions from ``factory`` that called :func:`encore.store.enqueue_job` send those
    jobs to their queues right after ``commit()``; a rollback forgets them. Failures to
    send are logged, never raised into the committing code: the jobs stay pending and
    the periodic sweep sends them.
    """

    # "after_commit" fires while the session still holds its connection; dispatching there
    # needs a second one, so N concurrent commits on a pool of N connections each waited
    # for a connection none would give back (pool timeout, then "dispatch after commit
    # failed"). The ids are moved aside at commit and sent once the transaction has ended
    # and its connection is back in the pool.
    def _after_commit(session: Session) -> None:
        ids = session.info.pop(NEW_JOBS_KEY, None)
        if ids:
            session.info.setdefault(_COMMITTED_JOBS_KEY, []).extend(ids)

    def _after_transaction_end(session: Session, transaction: Any) -> None:
        if transaction.parent is not None:
            return
        ids = session.info.pop(_COMMITTED_JOBS_KEY, None)
        if ids:
            try:
                dispatch_pending(factory, queues, job_ids=ids)
            except Exception:
                logger.exception("dispatch after commit failed for jobs %s", ids)

    def _after_soft_rollback(session: Session, previous: Any) -> None:
        if previous.parent is None:  # the outermost transaction: its jobs are gone
            session.info.pop(NEW_JOBS_KEY, None)

    event.listen(factory, "after_commit", _after_commit)
    event.listen(factory, "after_transaction_end", _after_transaction_end)
    event.listen(factory, "after_soft_rollback", _after_soft_rollback)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    recovered: RecoveryReport
    resent: tuple[int, ...]
    dispatched: int


def sweep_jobs(
    bind: Bind,
    queues: Queues,
    *,
    now: dt.datetime | None = None,
    stale_after: dt.timedelta | None = None,
) -> SweepReport:
    """Recover dead workers' jobs, resend lost messages, dispatch everything pending.

    Safe to run from several processes at once.

    Parameters
    ----------
    now : datetime, optional
        The current time (tests pass a later time instead of waiting).
    stale_after : timedelta, optional
        Heartbeat silence after which a worker is presumed dead; defaults to
        ``Settings.job_stale_seconds``.
    """
    if stale_after is None:
        stale_after = dt.timedelta(seconds=queues.settings.job_stale_seconds)
    now = now or utcnow()
    with session_scope(engine_of(bind)) as session:
        recovered = recover_stale_jobs(session, now, stale_after=stale_after)
    empty = _empty_queues(queues)
    with session_scope(engine_of(bind)) as session:
        resent = requeue_lost_messages(session, empty, now, older_than=stale_after)
    dispatched = dispatch_pending(bind, queues)
    report = SweepReport(recovered=recovered, resent=resent, dispatched=dispatched)
    if recovered.requeued or recovered.failed or resent:
        logger.info("job sweep: %s", report)
    return report


def _empty_queues(queues: Queues) -> set[QueueName]:
    empty = set()
    for queue in QueueName:
        try:
            if queues.pending_count(queue) == 0:
                empty.add(queue)
        except Exception:  # the queue is unreachable: resend nothing to it
            logger.exception("cannot count messages in queue %s", queue)
    return empty
