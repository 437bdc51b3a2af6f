"""While a listener waits: the place of a request in the generation queue and an estimate of
the time left, from measured durations of recent jobs.

How the estimate is made (docs/web.md, "While the music is made"):

1. **Rates, measured.** The durations (``finished_at - started_at``) of the last
   :data:`RECENT_JOBS` finished ``generate_clip`` jobs, each divided by the seconds of audio
   it rendered (the longest clip of the job), give seconds of work per second of music; their
   **median** is the rate (one slow cold start or a fine-tune sharing the machine moves a median
   little). ``embed_song`` jobs, which share the queue, get the median of their own last
   durations. Recomputed at most every :data:`RATE_MAX_AGE` seconds per process.
2. **One job's cost**: the rate × the seconds of music it is to render (``embed_song``: its
   median). With no finished generation yet there is no estimate (``None``): nothing is
   guessed.
3. **The queue**: jobs of the generation queue run in order of their ids. Ahead of a queued
   request are the queued jobs with a smaller id and the running ones; the workers are
   counted as the jobs running now (at least one). Time left = (what the running jobs still
   need — their cost minus the time they have run, never below 0 — plus the cost of the
   queued jobs ahead) / workers + this request's own cost. For a running request: its cost
   minus the time it has run (0 means "any moment now").
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore.services.context import ServiceContext
from encore.store import Clip, Job, JobStatus, QueueName, as_utc, utcnow

#: How many finished jobs of a kind the median is taken over.
RECENT_JOBS = 20
#: How long a process reuses the measured rates (seconds).
RATE_MAX_AGE = 5.0
GENERATE_KIND = "generate_clip"
EMBED_KIND = "embed_song"


@dataclass(frozen=True)
class Rates:
    """Measured costs: seconds of work per second of music (generation) and per song
    (embedding), each the median of ``*_samples`` recent jobs (``None``: none finished)."""

    generate_per_second: float | None
    generate_samples: int
    embed_seconds: float | None
    embed_samples: int


@dataclass(frozen=True)
class Wait:
    """Where a request stands: ``position`` 1 = the next job to start (``None`` once it
    runs); ``seconds_left`` estimated (``None`` when nothing has been measured yet)."""

    position: int | None
    seconds_left: float | None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _last_done(query: sa.Select[Any], kind: str, recent: int) -> sa.Select[Any]:
    """``query`` over the last ``recent`` jobs of ``kind`` that finished (newest first)."""
    return (
        query.where(
            Job.kind == kind,
            Job.status == JobStatus.DONE,
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(recent)
    )


def measure_rates(session: Session, *, recent: int = RECENT_JOBS) -> Rates:
    """The median costs of the last ``recent`` finished generation and embedding jobs."""
    gen_rows = session.execute(
        _last_done(
            sa.select(Job.started_at, Job.finished_at, sa.func.max(Clip.seconds))
            .join(Clip, Clip.job_id == Job.id)
            .group_by(Job.id, Job.started_at, Job.finished_at),
            GENERATE_KIND, recent,
        )
    ).all()
    per_second = [
        (as_utc(end) - as_utc(start)).total_seconds() / float(seconds)
        for start, end, seconds in gen_rows
        if seconds and float(seconds) > 0
    ]
    embed_rows = session.execute(
        _last_done(sa.select(Job.started_at, Job.finished_at), EMBED_KIND, recent)
    ).all()
    embeds = [(as_utc(end) - as_utc(start)).total_seconds() for start, end in embed_rows]
    return Rates(
        generate_per_second=_median([max(v, 0.0) for v in per_second]),
        generate_samples=len(per_second),
        embed_seconds=_median([max(v, 0.0) for v in embeds]),
        embed_samples=len(embeds),
    )


class _RateCache:
    """The rates of one process, reused for :data:`RATE_MAX_AGE` seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at = -float("inf")
        self.rates: Rates | None = None

    def get(self, session: Session, max_age: float) -> Rates:
        with self.lock:
            now = time.monotonic()
            if self.rates is None or now - self.at > max_age:
                self.rates = measure_rates(session)
                self.at = now
            return self.rates


def rates(ctx: ServiceContext, session: Session, *, max_age: float = RATE_MAX_AGE) -> Rates:
    """:func:`measure_rates`, reused within ``max_age`` seconds in this process."""
    cache: _RateCache = ctx.cached(("waiting", "rates"), _RateCache)
    return cache.get(session, max_age)


def _cost(kind: str, seconds: float | None, measured: Rates) -> float | None:
    if kind == GENERATE_KIND:
        if measured.generate_per_second is None or not seconds:
            return None
        return measured.generate_per_second * float(seconds)
    if kind == EMBED_KIND:
        return measured.embed_seconds or 0.0
    return 0.0


def wait_for_job(
    ctx: ServiceContext, session: Session, job: Job, *, max_age: float = RATE_MAX_AGE
) -> Wait:
    """Queue position and estimated seconds left of a queued or running ``job``."""
    measured = rates(ctx, session, max_age=max_age)
    now = utcnow()
    rows = session.execute(
        sa.select(Job.id, Job.kind, Job.status, Job.started_at, sa.func.max(Clip.seconds))
        .outerjoin(Clip, Clip.job_id == Job.id)
        .where(
            Job.queue == QueueName(job.queue),
            sa.or_(
                Job.status == JobStatus.RUNNING,
                sa.and_(Job.status == JobStatus.QUEUED, Job.id <= job.id),
            ),
        )
        .group_by(Job.id, Job.kind, Job.status, Job.started_at)
    ).all()
    mine = next((r for r in rows if r[0] == job.id), None)
    if mine is None:  # finished or cancelled meanwhile
        return Wait(position=None, seconds_left=None)

    def remaining(kind: str, started: dt.datetime | None, seconds: float | None) -> float | None:
        cost = _cost(kind, seconds, measured)
        if cost is None:
            return None
        ran = (now - as_utc(started)).total_seconds() if started is not None else 0.0
        return max(cost - ran, 0.0)

    own = remaining(mine[1], mine[3], mine[4]) if mine[2] is JobStatus.RUNNING else _cost(
        mine[1], mine[4], measured
    )
    if mine[2] is JobStatus.RUNNING:
        return Wait(position=None, seconds_left=own)
    running = [r for r in rows if r[2] is JobStatus.RUNNING]
    ahead = [r for r in rows if r[2] is JobStatus.QUEUED and r[0] < job.id]
    position = len(ahead) + 1
    parts = [remaining(r[1], r[3], r[4]) for r in running] + [
        _cost(r[1], r[4], measured) for r in ahead
    ]
    if own is None or any(p is None for p in parts):
        return Wait(position=position, seconds_left=None)
    workers = max(len(running), 1)
    backlog = sum(p for p in parts if p is not None)
    return Wait(position=position, seconds_left=backlog / workers + own)
