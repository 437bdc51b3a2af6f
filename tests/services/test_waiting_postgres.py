"""Waiting on PostgreSQL (issue 19): the measured rates, queue positions, the estimate and a
cancel whose queued job the worker then skips — the same queries as on SQLite, where GROUP
BY and the conditional UPDATE are stricter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from encore.errors import Conflict
from encore.services import accounts, music, songs, waiting
from encore.services.context import ServiceContext
from encore.store import Clip, ClipStatus, Delivery, Job, JobStatus, QueueName, utcnow

from .conftest import make_song_bytes

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_ctx(pg_context) -> Iterator[ServiceContext]:
    with pg_context(queue_immediate=False, queue_url="memory://") as ctx:
        yield ctx


def run_queue(ctx: ServiceContext) -> int:
    assert ctx.queues is not None
    huey = ctx.queues.hueys[QueueName.GENERATE]
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


def test_waiting_and_cancel_on_postgresql(pg_ctx: ServiceContext) -> None:
    ctx = pg_ctx
    with ctx.session() as session:
        end = utcnow() - dt.timedelta(minutes=1)
        for taken in (3.0, 1.0, 2.0):  # 1 s of music each: rates 3, 1, 2 -> median 2
            job = Job(kind="generate_clip", queue=QueueName.GENERATE, status=JobStatus.DONE,
                      payload={}, started_at=end - dt.timedelta(seconds=taken), finished_at=end)
            session.add(job)
            session.flush()
            session.add(Clip(status=ClipStatus.FAILED, seconds=1.0, job_id=job.id))
    with ctx.reading() as session:
        rates = waiting.measure_rates(session)
    assert rates.generate_per_second == pytest.approx(2.0) and rates.generate_samples == 3

    ada = accounts.create_user(ctx, email="ada@example.org", password="listener-pass")
    bob = accounts.create_user(ctx, email="bob@example.org", password="listener-pass")
    a_song = songs.upload_song(ctx, owner=ada, filename="a.wav", data=make_song_bytes(3))
    b_song = songs.upload_song(ctx, owner=bob, filename="b.wav", data=make_song_bytes(4))
    run_queue(ctx)  # the embeddings
    first = music.request_music(ctx, listener=ada, song_ids=[a_song.id])
    second = music.request_music(ctx, listener=bob, song_ids=[b_song.id])

    view_a = music.delivery_status(ctx, listener=ada, delivery_id=first.id)
    with ctx.reading() as session:
        clip_b = session.get(Delivery, second.id).clip  # type: ignore[union-attr]
        wait_b = waiting.wait_for_job(ctx, session, clip_b.job, max_age=0)  # type: ignore[arg-type]
        seconds = float(clip_b.seconds or 0)
    assert view_a.queue_position == 1 and view_a.cancellable
    assert wait_b.position == 2
    assert wait_b.seconds_left == pytest.approx(2 * 2.0 * seconds)

    cancelled = music.cancel_request(ctx, listener=ada, delivery_id=first.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        music.cancel_request(ctx, listener=ada, delivery_id=first.id)
    assert music.delivery_status(ctx, listener=bob, delivery_id=second.id).queue_position == 1

    assert run_queue(ctx) == 2
    with ctx.reading() as session:
        clip_a = session.get(Delivery, first.id).clip  # type: ignore[union-attr]
        job_a = session.get(Job, clip_a.job_id)
        assert clip_a.status is ClipStatus.CANCELLED and clip_a.audio_key is None
        assert job_a is not None and job_a.status is JobStatus.CANCELLED and job_a.attempts == 0
    assert music.delivery_status(ctx, listener=bob, delivery_id=second.id).status == "ready"
    with pytest.raises(Conflict, match="not started"):
        music.cancel_request(ctx, listener=bob, delivery_id=second.id)
