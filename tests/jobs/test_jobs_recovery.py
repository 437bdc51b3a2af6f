"""Recovery of jobs whose worker died: re-queue, attempts cap, lost messages, the sweep."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine

from encore.config import Settings
from encore.jobs import (
    JobContext,
    make_queues,
    recover_stale_jobs,
    requeue_lost_messages,
    sweep_jobs,
)
from encore.store import Job, enqueue_job
from encore.store.db import session_scope
from encore.store.enums import JobStatus, QueueName

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
STALE = dt.timedelta(minutes=2)


def _running(
    engine: Engine, *, heartbeat_age: dt.timedelta, attempts: int = 1, max_attempts: int = 3
) -> int:
    with session_scope(engine) as s:
        job = enqueue_job(s, "generate", {"clip_id": 1}, max_attempts=max_attempts)
        job.status = JobStatus.RUNNING
        job.attempts = attempts
        job.worker_id = "gpu-host:4242:Worker-1"
        job.enqueued_at = job.started_at = NOW - heartbeat_age - dt.timedelta(seconds=5)
        job.heartbeat_at = NOW - heartbeat_age
        return job.id


def _get(engine: Engine, job_id: int) -> Job:
    with session_scope(engine, write=False) as s:
        return s.get(Job, job_id)


def test_stale_jobs_are_requeued_and_fresh_ones_left_alone(engine: Engine) -> None:
    stale = _running(engine, heartbeat_age=STALE + dt.timedelta(seconds=1))
    fresh = _running(engine, heartbeat_age=STALE - dt.timedelta(seconds=1))
    with session_scope(engine) as s:
        report = recover_stale_jobs(s, NOW, stale_after=STALE)
    assert report.requeued == (stale,) and report.failed == ()
    job = _get(engine, stale)
    assert (job.status, job.attempts, job.enqueued_at, job.worker_id) == (
        JobStatus.QUEUED,
        1,
        None,
        None,
    )
    assert "worker gpu-host:4242:Worker-1 stopped sending heartbeats during attempt 1 of 3" in (
        job.message
    )
    assert _get(engine, fresh).status is JobStatus.RUNNING


def test_a_job_out_of_attempts_fails_with_a_clear_message(engine: Engine) -> None:
    job_id = _running(engine, heartbeat_age=STALE * 2, attempts=3, max_attempts=3)
    with session_scope(engine) as s:
        report = recover_stale_jobs(s, NOW, stale_after=STALE)
    assert report.failed == (job_id,) and report.requeued == ()
    job = _get(engine, job_id)
    assert job.status is JobStatus.FAILED and job.finished_at == NOW
    assert "attempt 3 of 3" in job.error and "giving up after 3 attempts" in job.error


def test_lost_messages_are_sent_again_only_when_the_queue_is_empty(engine: Engine) -> None:
    with session_scope(engine) as s:
        old = enqueue_job(s, "generate")
        recent = enqueue_job(s, "generate")
        training = enqueue_job(s, "finetune", queue=QueueName.TRAIN)
        old.enqueued_at = training.enqueued_at = NOW - STALE * 3
        recent.enqueued_at = NOW - dt.timedelta(seconds=10)
        ids = (old.id, recent.id, training.id)
    with session_scope(engine) as s:
        resent = requeue_lost_messages(s, {QueueName.GENERATE}, NOW, older_than=STALE)
    assert resent == (ids[0],)
    assert _get(engine, ids[0]).enqueued_at is None
    assert _get(engine, ids[1]).enqueued_at is not None  # may still be on its way
    assert _get(engine, ids[2]).enqueued_at is not None  # its queue is not empty


def test_the_sweep_requeues_and_runs_a_dead_workers_job(
    engine: Engine, settings: Settings, handlers
) -> None:
    attempts = []
    handlers("generate", lambda ctx: attempts.append(ctx.attempt))
    job_id = _running(engine, heartbeat_age=STALE * 2)
    queues = make_queues(settings, bind=engine)  # immediate: dispatched jobs run at once
    report = sweep_jobs(engine, queues, now=NOW, stale_after=STALE)
    assert report.recovered.requeued == (job_id,) and report.dispatched == 1
    job = _get(engine, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    assert attempts == [2]


def test_a_job_started_too_often_is_failed_at_claim(engine: Engine, handlers) -> None:
    from encore.jobs import run_job

    calls = []

    def never(ctx: JobContext) -> None:
        calls.append(1)

    handlers("generate", never)
    with session_scope(engine) as s:
        job = enqueue_job(s, "generate", max_attempts=2)
        job.attempts = 2
        job_id = job.id
    assert run_job(engine, job_id) is JobStatus.FAILED
    assert calls == []
    job = _get(engine, job_id)
    assert job.status is JobStatus.FAILED and "started 2 times" in job.error
