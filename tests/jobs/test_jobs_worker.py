"""Real consumers: a worker process killed mid-job, a worker stopped by SIGTERM, Redis.

The worker runs as ``python -m encore.jobs.worker`` on a temporary SQLite queue and a
temporary SQLite database, with the handlers of ``jobs_kill_handlers.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from encore.config import Settings
from encore.jobs import dispatch_pending, make_queues, run_job, sweep_jobs
from encore.store import Job, enqueue_job
from encore.store.db import session_scope
from encore.store.enums import JobStatus

HERE = Path(__file__).resolve().parent
REDIS_URL = "redis://127.0.0.1:6379/15"


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _job(engine: Engine, job_id: int) -> Job:
    with session_scope(engine, write=False) as s:
        return s.get(Job, job_id)


@pytest.fixture
def queue_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"queue_immediate": False, "queue_url": f"sqlite:///{tmp_path / 'queue.db'}"}
    )


@pytest.fixture
def start_worker(
    queue_settings: Settings, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start worker processes (each in its own process group); stop leftovers at the end."""
    started: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "ENCORE_DATA_DIR": str(tmp_path),
        "ENCORE_DATABASE_URL": queue_settings.database_url,
        "ENCORE_QUEUE_URL": queue_settings.queue_url,
        "ENCORE_QUEUE_IMMEDIATE": "false",
        "ENCORE_JOB_HEARTBEAT_SECONDS": "0.2",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }

    def start() -> subprocess.Popen:
        log = (tmp_path / f"worker-{len(started) + 1}.log").open("w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "encore.jobs.worker",
                "--queue",
                "generate",
                "--no-periodic",
                "--import",
                "jobs_kill_handlers",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _job_running_on_a_worker(
    engine: Engine, settings: Settings, start_worker, folder: Path
) -> tuple[int, subprocess.Popen]:
    """A job that waits for ``folder/release``, queued and started on a new worker (its first
    attempt is running): the job's id and the worker's process."""
    folder.mkdir()
    with session_scope(engine) as s:
        job_id = enqueue_job(s, "wait_for_release", {"dir": str(folder)}).id
    assert dispatch_pending(engine, make_queues(settings, bind=engine)) == 1
    worker = start_worker()
    _wait_for(lambda: (folder / "attempt-1").exists(), "the first attempt to start")
    return job_id, worker


def test_a_job_survives_a_killed_consumer(
    engine: Engine, queue_settings: Settings, start_worker, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    job_id, first = _job_running_on_a_worker(engine, queue_settings, start_worker, folder)
    assert _job(engine, job_id).status is JobStatus.RUNNING
    os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the row still says running
    first.wait(10)
    dead = _job(engine, job_id)
    assert (dead.status, dead.attempts) == (JobStatus.RUNNING, 1)
    assert str(first.pid) in dead.worker_id

    # The sweep (run every minute by consumers) sees the heartbeat go stale and re-queues.
    queues = make_queues(queue_settings, bind=engine)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=queue_settings.job_stale_seconds + 1)
    report = sweep_jobs(engine, queues, now=later)
    assert report.recovered.requeued == (job_id,) and report.dispatched == 1

    (folder / "release").touch()
    second = start_worker()
    _wait_for(lambda: _job(engine, job_id).status is JobStatus.DONE, "the job to finish")
    job = _job(engine, job_id)
    assert job.attempts == 2 and str(second.pid) in job.worker_id and job.error is None
    completions = (folder / "completions.log").read_text().splitlines()
    assert completions == [f"{job_id} attempt 2 pid {second.pid}"]
    assert (folder / f"out-{job_id}.txt").read_text() == f"job {job_id}\n"
    assert (folder / "attempt-1").read_text().strip() == str(first.pid)

    second.send_signal(signal.SIGINT)  # graceful stop of an idle worker
    assert second.wait(30) == 0


def test_a_stopped_consumer_hands_its_job_back(
    engine: Engine, queue_settings: Settings, start_worker, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    job_id, worker = _job_running_on_a_worker(engine, queue_settings, start_worker, folder)
    worker.send_signal(signal.SIGTERM)  # stop now, without waiting for the job
    worker.wait(30)
    job = _job(engine, job_id)
    assert job.status is JobStatus.QUEUED and "worker shut down" in job.message
    # Handed back at once, and already on the queue again: no sweep needed.
    queues = make_queues(queue_settings, bind=engine)
    assert queues.pending_count("generate") == 1
    (folder / "release").touch()
    start_worker()
    _wait_for(lambda: _job(engine, job_id).status is JobStatus.DONE, "the job to finish")
    assert _job(engine, job_id).attempts == 2


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    settings = settings.model_copy(update={"queue_immediate": False, "queue_url": REDIS_URL})
    queues = make_queues(settings)
    for huey in queues.hueys.values():
        huey.flush()
    yield settings
    for huey in queues.hueys.values():
        huey.flush()
    client.close()


@pytest.mark.redis
def test_jobs_travel_through_redis(engine: Engine, redis_settings: Settings, handlers) -> None:
    ran = []
    handlers("generate", lambda ctx: ran.append(ctx.payload["clip_id"]))
    handlers("finetune", lambda ctx: ran.append(ctx.payload["run_id"]))
    queues = make_queues(redis_settings, bind=engine)
    with session_scope(engine) as s:
        gen = enqueue_job(s, "generate", {"clip_id": 5}).id
        train = enqueue_job(s, "finetune", {"run_id": 9}, queue="train").id
    assert dispatch_pending(engine, queues) == 2
    assert (queues.pending_count("generate"), queues.pending_count("train")) == (1, 1)
    # A consumer on another host would do this: take the message, run the task.
    for name in ("generate", "train"):
        huey = queues.huey(name)
        task = huey.dequeue()
        assert task.args in ((gen,), (train,))
        huey.execute(task)
    assert sorted(ran) == [5, 9]
    assert (
        _job(engine, gen).status is JobStatus.DONE and _job(engine, train).status is JobStatus.DONE
    )
    assert run_job(engine, gen) is JobStatus.DONE  # a redelivered message is harmless
