"""Running jobs in Huey's immediate mode: dispatch after commit, outcomes, progress,
heartbeats, fencing of superseded attempts, separate queues."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from encore.config import Settings
from encore.errors import ConfigurationError, InvalidInput, JobSuperseded, NotFound
from encore.jobs import (
    JobContext,
    dispatch_pending,
    install_dispatch_hook,
    job_handler,
    make_queues,
    recover_stale_jobs,
    run_job,
)
from encore.jobs.registry import unregister_handler
from encore.store import Job, enqueue_job, make_session_factory
from encore.store.db import session_scope
from encore.store.enums import JobStatus, QueueName


@pytest.fixture
def factory(engine: Engine, settings: Settings):
    """Sessions whose commits dispatch their jobs, to queues in immediate mode."""
    factory = make_session_factory(engine)
    install_dispatch_hook(factory, make_queues(settings, bind=factory))
    return factory


def _job(engine: Engine, job_id: int) -> Job:
    with session_scope(engine, write=False) as s:
        return s.get(Job, job_id)


def test_a_job_runs_after_commit_not_before(engine: Engine, factory, handlers) -> None:
    seen: list[dict[str, Any]] = []

    def record(ctx: JobContext) -> None:
        seen.append(
            {
                "payload": dict(ctx.payload),
                "attempt": ctx.attempt,
                "status": _job(engine, ctx.job_id).status,
            }
        )

    handlers("record", record)
    with session_scope(factory) as s:
        job = enqueue_job(s, "record", {"clip_id": 42})
        job_id = job.id
        assert seen == []  # not yet committed: nothing sent
    assert seen == [{"payload": {"clip_id": 42}, "attempt": 1, "status": JobStatus.RUNNING}]
    job = _job(engine, job_id)
    assert job.status is JobStatus.DONE and job.progress == 1.0 and job.attempts == 1
    assert job.enqueued_at <= job.started_at <= job.finished_at
    assert job.worker_id and job.error is None


def test_a_rolled_back_job_never_runs(engine: Engine, factory, handlers) -> None:
    calls = []
    handlers("record", lambda ctx: calls.append(ctx.job_id))
    with pytest.raises(RuntimeError), session_scope(factory) as s:
        enqueue_job(s, "record", {})
        raise RuntimeError("the service failed")
    assert calls == []
    with session_scope(engine, write=False) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


def test_failures_are_recorded_with_their_message(engine: Engine, factory, handlers) -> None:
    def domain_error(ctx: JobContext) -> None:
        raise NotFound("clip 17 does not exist")

    def bug(ctx: JobContext) -> None:
        raise ZeroDivisionError("division by zero")

    handlers("domain", domain_error)
    handlers("bug", bug)
    with session_scope(factory) as s:
        ids = [enqueue_job(s, "domain").id, enqueue_job(s, "bug").id, enqueue_job(s, "nope").id]
    domain, crashed, unknown = (_job(engine, i) for i in ids)
    assert (domain.status, domain.error) == (JobStatus.FAILED, "clip 17 does not exist")
    assert (crashed.status, crashed.error) == (
        JobStatus.FAILED,
        "ZeroDivisionError: division by zero",
    )
    assert unknown.status is JobStatus.FAILED
    assert "no handler registered for job kind 'nope'" in unknown.error
    assert all(j.finished_at is not None and j.attempts == 1 for j in (domain, crashed, unknown))


def test_progress_is_recorded_and_validated(engine: Engine, factory, handlers) -> None:
    observed = []

    def steps(ctx: JobContext) -> None:
        ctx.report_progress(0.25, "slicing")
        observed.append((_job(engine, ctx.job_id).progress, _job(engine, ctx.job_id).message))
        ctx.report_progress(0.75, "embedding")
        observed.append((_job(engine, ctx.job_id).progress, _job(engine, ctx.job_id).message))
        for bad in (1.5, -0.1, float("nan")):
            with pytest.raises(InvalidInput, match="progress"):
                ctx.report_progress(bad)

    handlers("steps", steps)
    with session_scope(factory) as s:
        job_id = enqueue_job(s, "steps").id
    assert observed == [(0.25, "slicing"), (0.75, "embedding")]
    job = _job(engine, job_id)
    assert (job.status, job.progress, job.message) == (JobStatus.DONE, 1.0, "embedding")


def test_duplicate_messages_run_a_job_once(engine: Engine, settings: Settings, handlers) -> None:
    calls = []
    handlers("once", lambda ctx: calls.append(ctx.job_id))
    with session_scope(engine) as s:
        job_id = enqueue_job(s, "once").id
    queues = make_queues(settings, bind=engine)
    assert dispatch_pending(engine, queues) == 1
    assert dispatch_pending(engine, queues) == 0  # already handed over
    queues.send(QueueName.GENERATE, job_id)  # a duplicate message anyway
    assert run_job(engine, job_id) is JobStatus.DONE  # reports the status, runs nothing
    assert calls == [job_id]
    assert run_job(engine, 999_999) is None


def test_the_heartbeat_moves_while_a_handler_works(engine: Engine, handlers) -> None:
    beats = []

    def slow(ctx: JobContext) -> None:
        for _ in range(6):
            time.sleep(0.06)
            beats.append(_job(engine, ctx.job_id).heartbeat_at)

    handlers("slow", slow)
    with session_scope(engine) as s:
        job_id = enqueue_job(s, "slow").id
    assert run_job(engine, job_id, heartbeat_seconds=0.02) is JobStatus.DONE
    assert len(set(beats)) >= 3  # refreshed without any progress report


def test_a_superseded_attempt_cannot_record_its_result(engine: Engine, handlers) -> None:
    """If the sweeper re-queues a job while its first worker is alive but silent, that
    worker's next write is refused and the job is left to its new attempt."""
    inside, resume = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def silent(ctx: JobContext) -> None:
        inside.set()
        resume.wait(10)
        try:
            ctx.report_progress(0.9, "almost")
        except JobSuperseded as exc:
            outcome["superseded"] = str(exc)
            raise

    handlers("silent", silent)
    with session_scope(engine) as s:
        job_id = enqueue_job(s, "silent").id
    runner = threading.Thread(
        target=lambda: outcome.setdefault("result", run_job(engine, job_id, heartbeat_seconds=60))
    )
    runner.start()
    assert inside.wait(10)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with session_scope(engine) as s:
        report = recover_stale_jobs(s, later, stale_after=dt.timedelta(minutes=2))
    assert report.requeued == (job_id,)
    resume.set()
    runner.join(10)
    assert outcome["result"] is None and "superseded" in outcome["superseded"]
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.progress) == (JobStatus.QUEUED, 1, 0.0)
    assert "stopped sending heartbeats" in job.message


def test_generation_and_training_use_separate_queues(
    engine: Engine, settings: Settings, handlers
) -> None:
    queues = make_queues(
        settings.model_copy(update={"queue_immediate": False, "queue_url": "memory://"}),
        bind=engine,
    )
    assert {h.name for h in queues.hueys.values()} == {"encore-generate", "encore-train"}
    with session_scope(engine) as s:
        enqueue_job(s, "generate", {"clip_id": 1})
        enqueue_job(s, "generate", {"clip_id": 2})
        enqueue_job(s, "finetune", {"run_id": 1}, queue=QueueName.TRAIN)
    assert dispatch_pending(engine, queues) == 3
    assert queues.pending_count(QueueName.GENERATE) == 2
    assert queues.pending_count(QueueName.TRAIN) == 1


def test_enqueue_validates_its_arguments(engine: Engine) -> None:
    with session_scope(engine) as s:
        with pytest.raises(InvalidInput, match="JSON"):
            enqueue_job(s, "generate", {"clip": object()})
        with pytest.raises(InvalidInput, match="'gpu'"):
            enqueue_job(s, "generate", {}, queue="gpu")
        with pytest.raises(InvalidInput, match="empty"):
            enqueue_job(s, "", {})


def test_one_handler_per_kind() -> None:
    @job_handler("test-dup")
    def first(ctx: JobContext) -> None: ...

    try:
        with pytest.raises(ConfigurationError, match="test-dup"):

            @job_handler("test-dup")
            def second(ctx: JobContext) -> None: ...
    finally:
        unregister_handler("test-dup")


def test_queue_urls_pick_their_backend(tmp_path) -> None:
    from huey import MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey

    from encore.jobs import make_huey

    assert isinstance(make_huey(f"sqlite:///{tmp_path}/q.db", "x"), SqliteHuey)
    assert isinstance(make_huey("redis://127.0.0.1:6379/15", "x"), RedisHuey)
    assert isinstance(make_huey("postgresql://postgres@127.0.0.1/test", "x"), PostgresHuey)
    assert isinstance(make_huey("memory://", "x"), MemoryHuey)
    with pytest.raises(ConfigurationError, match="amqp://h"):
        make_huey("amqp://h", "x")


def test_jobs_enqueued_by_a_handler_are_dispatched_after_its_commit(
    engine: Engine, settings: Settings, handlers
) -> None:
    order = []

    def generate(ctx: JobContext) -> None:
        with ctx.session() as s:
            enqueue_job(s, "embed", {"clip_id": ctx.payload["clip_id"]})
            order.append("generate committing")
        order.append("generate done")

    handlers("generate", generate)
    handlers("embed", lambda ctx: order.append(f"embed {ctx.payload['clip_id']}"))
    queues = make_queues(settings, bind=engine)  # wraps the engine in a dispatching factory
    with session_scope(queues.session_factory) as s:
        enqueue_job(s, "generate", {"clip_id": 3})
    assert order == ["generate committing", "embed 3", "generate done"]
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(Job.status)).all() == [JobStatus.DONE, JobStatus.DONE]
