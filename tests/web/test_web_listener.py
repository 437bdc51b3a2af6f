"""What a listener can do beyond play and rate (issue 19): download a clip (OGG, WAV), see
the queue position and the time left while the music is made, cancel a request that has not
started. Over HTTP on the real app; the cancel and queue tests use a real Huey queue (in
memory) whose messages the test runs, as a worker would."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts, waiting
from encore.services.context import ServiceContext
from encore.store import Clip, ClipStatus, Delivery, Job, JobStatus, QueueName, utcnow

from .web_helpers import signed_in, song_bytes, upload


def run_queue(app: FastAPI) -> int:
    """Run every message waiting on the generation queue, as a worker would; how many."""
    huey = app.state.ctx.queues.hueys[QueueName.GENERATE]
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


@pytest.fixture
def queued_app(make_app: Callable[..., FastAPI]) -> FastAPI:
    """The app with a real queue that runs nothing until the test says so."""
    return make_app(queue_immediate=False, queue_url="memory://")


def new_listener(app: FastAPI, name: str) -> TestClient:
    email = f"{name}-{time.monotonic_ns()}@example.org"
    accounts.create_user(app.state.ctx, email=email, password="a-long-password", display_name=name)
    return signed_in(app, email)


def ready_song(app: FastAPI, client: TestClient, seed: int, name: str = "song.wav") -> int:
    song = upload(client, song_bytes(seed), name=name).json()["song"]
    run_queue(app)  # the embedding job
    assert client.get(f"/api/songs/{song['id']}").json()["song"]["status"] == "ready"
    return int(song["id"])


def ask(client: TestClient, song_id: int) -> int:
    response = client.post("/api/music", json={"song_ids": [song_id]})
    assert response.status_code == 201, response.text
    return int(response.json()["delivery_id"])


# --- downloads ---------------------------------------------------------------------------


def test_a_clip_downloads_as_ogg_and_wav_with_its_file_name(
    app: FastAPI, listener: TestClient
) -> None:
    song = upload(listener, song_bytes(3), name="Mañana, café.wav").json()["song"]
    delivery_id = ask(listener, song["id"])
    base = f"/api/deliveries/{delivery_id}"

    ogg = listener.get(f"{base}/download?format=ogg")
    assert ogg.status_code == 200 and ogg.headers["content-type"] == "audio/ogg"
    disposition = ogg.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    exact = unquote(disposition.split("filename*=UTF-8''", 1)[1])
    assert exact == f"encore-{delivery_id} from Mañana, café.ogg"
    assert 'filename="encore-' in disposition and "ñ" not in disposition.split("filename*")[0]
    played = listener.get(f"{base}/audio").content
    assert ogg.content == played  # the stored clip, as the player gets it

    wav = listener.get(f"{base}/download?format=wav")
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert unquote(wav.headers["content-disposition"].split("''", 1)[1]).endswith("café.wav")
    decoded_wav, sr_wav = sf.read(io.BytesIO(wav.content))
    decoded_ogg, sr_ogg = sf.read(io.BytesIO(ogg.content))
    assert sf.info(io.BytesIO(wav.content)).subtype == "PCM_16"
    assert sr_wav == sr_ogg and len(decoded_wav) == len(decoded_ogg)
    assert np.max(np.abs(decoded_wav - decoded_ogg)) < 1e-3  # the same audio, 16-bit

    assert listener.get(f"{base}/download?format=mp3").status_code == 422


def test_a_download_is_not_listening(app: FastAPI, listener: TestClient) -> None:
    song = upload(listener, song_bytes(4)).json()["song"]
    delivery_id = ask(listener, song["id"])
    base = f"/api/deliveries/{delivery_id}"
    for fmt in ("ogg", "wav"):
        assert listener.get(f"{base}/download?format={fmt}").status_code == 200
    time.sleep(0.6)
    # Nothing was played: the delivery was never opened, so no listening is granted and
    # the rating stays locked.
    state = listener.post(f"{base}/listens", json={"ranges": [[0.0, 1.0]]}).json()
    assert state["listened_seconds"] == 0.0 and state["rating_allowed"] is False
    with app.state.ctx.reading() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None and row.opened_at is None and row.audio_bytes_served == 0
    assert listener.post(f"{base}/rating", json={"stars": 4}).status_code == 422


def test_only_the_listener_of_a_clip_can_download_it(
    app: FastAPI, listener: TestClient, login: Callable[..., TestClient], anon: TestClient
) -> None:
    song = upload(listener, song_bytes(5)).json()["song"]
    delivery_id = ask(listener, song["id"])
    other = login("eve")
    for fmt in ("ogg", "wav"):
        url = f"/api/deliveries/{delivery_id}/download?format={fmt}"
        assert other.get(url).status_code == 403
        assert anon.get(url).status_code == 401
    assert listener.get("/api/deliveries/999999/download").status_code == 404


def test_a_clip_whose_song_was_deleted_cannot_be_downloaded(
    app: FastAPI, listener: TestClient
) -> None:
    song = upload(listener, song_bytes(6)).json()["song"]
    delivery_id = ask(listener, song["id"])
    assert listener.delete(f"/api/songs/{song['id']}").status_code in (200, 204)
    for fmt in ("ogg", "wav"):
        assert listener.get(f"/api/deliveries/{delivery_id}/download?format={fmt}").status_code == 404


def test_history_and_player_offer_the_downloads(app: FastAPI, listener: TestClient) -> None:
    song = upload(listener, song_bytes(7)).json()["song"]
    delivery_id = ask(listener, song["id"])
    history = listener.get("/history").text
    for fmt in ("ogg", "wav"):
        assert f'href="/api/deliveries/{delivery_id}/download?format={fmt}"' in history
    page = listener.get(f"/music/{delivery_id}").text
    assert "download?format=wav" in page and "download?format=ogg" in page


# --- waiting, queue position, cancel ----------------------------------------------------


def test_queue_position_and_cancel_of_a_request_that_has_not_started(queued_app: FastAPI) -> None:
    app = queued_app
    ada, bob = new_listener(app, "ada"), new_listener(app, "bob")
    ada_song, bob_song = ready_song(app, ada, 11), ready_song(app, bob, 12)
    first = ask(ada, ada_song)
    second = ask(bob, bob_song)

    view = ada.get(f"/api/deliveries/{first}").json()
    assert view["status"] == "queued" and view["queue_position"] == 1 and view["cancellable"]
    assert view["estimated_seconds_left"] is None  # no generation has finished yet: no guess
    assert bob.get(f"/api/deliveries/{second}").json()["queue_position"] == 2

    assert bob.post(f"/api/deliveries/{first}/cancel").status_code == 403  # not Bob's
    cancelled = ada.post(f"/api/deliveries/{first}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and not cancelled.json()["cancellable"]
    again = ada.post(f"/api/deliveries/{first}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]
    # Bob moves up.
    assert bob.get(f"/api/deliveries/{second}").json()["queue_position"] == 1

    # The worker then gets both queue messages: the cancelled job is skipped, Bob's runs.
    assert run_queue(app) == 2
    ctx: ServiceContext = app.state.ctx
    with ctx.reading() as session:
        delivery = session.get(Delivery, first)
        assert delivery is not None
        clips = session.scalars(sa.select(Clip).where(Clip.request_id == delivery.request_id)).all()
        assert clips and all(c.status is ClipStatus.CANCELLED and c.audio_key is None for c in clips)
        job = session.get(Job, clips[0].job_id)
        assert job is not None and job.status is JobStatus.CANCELLED and job.attempts == 0
    assert ada.get(f"/api/deliveries/{first}").json()["status"] == "cancelled"
    assert ada.get(f"/api/deliveries/{first}/download").status_code == 404
    assert bob.get(f"/api/deliveries/{second}").json()["status"] == "ready"
    late = bob.post(f"/api/deliveries/{second}/cancel")
    assert late.status_code == 409 and "only a request that has not started" in late.json()["error"]["message"]
    history = ada.get("/api/history").json()["items"]
    assert history[0]["delivery_id"] == first and history[0]["status"] == "cancelled"
    assert "cancelled" in ada.get("/history").text


def test_a_running_request_cannot_be_cancelled(queued_app: FastAPI) -> None:
    from encore.jobs.runner import _claim

    app = queued_app
    ada = new_listener(app, "ada")
    delivery_id = ask(ada, ready_song(app, ada, 13))
    ctx: ServiceContext = app.state.ctx
    with ctx.reading() as session:
        job_id = session.get(Delivery, delivery_id).clip.job_id  # type: ignore[union-attr]
    claim = _claim(ctx.engine, int(job_id), "test-worker")  # a worker starts it
    assert not isinstance(claim, JobStatus) and claim is not None
    view = ada.get(f"/api/deliveries/{delivery_id}").json()
    assert view["status"] == "running" and view["queue_position"] is None
    assert not view["cancellable"]
    refused = ada.post(f"/api/deliveries/{delivery_id}/cancel")
    assert refused.status_code == 409
    assert "already being made" in refused.json()["error"]["message"]
    with ctx.reading() as session:
        assert session.get(Job, job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_a_cancelled_request_no_longer_counts_against_the_pending_cap(
    make_app: Callable[..., FastAPI],
) -> None:
    app = make_app(queue_immediate=False, queue_url="memory://", max_pending_generations=1)
    ada = new_listener(app, "ada")
    song = ready_song(app, ada, 14)
    first = ask(ada, song)
    assert ada.post("/api/music", json={"song_ids": [song]}).status_code == 429
    assert ada.post(f"/api/deliveries/{first}/cancel").status_code == 200
    ask(ada, song)  # allowed again


def _finished_job(session: Any, kind: str, seconds_taken: float, clip_seconds: float | None) -> None:
    end = utcnow() - dt.timedelta(minutes=1)
    job = Job(kind=kind, queue=QueueName.GENERATE, status=JobStatus.DONE, payload={},
              started_at=end - dt.timedelta(seconds=seconds_taken), finished_at=end)
    session.add(job)
    session.flush()
    if clip_seconds is not None:
        session.add(Clip(status=ClipStatus.FAILED, seconds=clip_seconds, job_id=job.id))


def test_the_estimate_is_the_median_of_recent_generations(queued_app: FastAPI) -> None:
    """Rates: the median of measured seconds of work per second of music; the estimate
    adds the running job's remainder and the queued jobs ahead, per worker."""
    app = queued_app
    ctx: ServiceContext = app.state.ctx
    with ctx.session() as session:
        # 5 s of music each: 10, 20, 30 s and one cold start of 500 s -> rates 2, 4, 6, 100.
        for taken in (10.0, 20.0, 30.0, 500.0):
            _finished_job(session, "generate_clip", taken, 5.0)
        _finished_job(session, "embed_song", 3.0, None)
        _finished_job(session, "embed_song", 5.0, None)
    with ctx.reading() as session:
        rates = waiting.measure_rates(session)
    assert rates.generate_per_second == pytest.approx(5.0)  # median of 2, 4, 6, 100
    assert rates.generate_samples == 4
    assert rates.embed_seconds == pytest.approx(4.0) and rates.embed_samples == 2

    ada, bob = new_listener(app, "ada"), new_listener(app, "bob")
    ada_song, bob_song = ready_song(app, ada, 15), ready_song(app, bob, 16)
    first, second = ask(ada, ada_song), ask(bob, bob_song)
    clip_seconds = float(app.state.settings.clip_seconds)
    with ctx.reading() as session:
        job_a = session.get(Delivery, first).clip.job  # type: ignore[union-attr]
        job_b = session.get(Delivery, second).clip.job  # type: ignore[union-attr]
        wait_a = waiting.wait_for_job(ctx, session, job_a, max_age=0)
        wait_b = waiting.wait_for_job(ctx, session, job_b, max_age=0)
    assert wait_a.position == 1 and wait_b.position == 2
    cost = 5.0 * clip_seconds
    assert wait_a.seconds_left == pytest.approx(cost)
    assert wait_b.seconds_left == pytest.approx(2 * cost)
    view = bob.get(f"/api/deliveries/{second}").json()
    assert view["queue_position"] == 2
    assert view["estimated_seconds_left"] == pytest.approx(2 * cost, abs=0.1)


# --- small items ---------------------------------------------------------------------------


def test_error_pages_show_the_signed_in_user_not_sign_in(
    app: FastAPI, listener: TestClient, login: Callable[..., TestClient], anon: TestClient
) -> None:
    song = upload(listener, song_bytes(8)).json()["song"]
    other = login("eve")
    for client, url, status in (
        (listener, "/no/such/page", 404),
        (other, f"/songs/{song['id']}", 403),
        (listener, "/music/999999", 404),
    ):
        page = client.get(url)
        assert page.status_code == status
        assert ">Sign in<" not in page.text and "Sign out" in page.text, url
    signed_out = anon.get("/no/such/page")
    assert signed_out.status_code == 404 and ">Sign in<" in signed_out.text
    assert "Sign out" not in signed_out.text


def test_the_file_name_of_a_download_is_safe() -> None:
    from encore.services.music import download_filename
    from encore.web.media import content_disposition

    name = download_filename(3, ["a/b\\c:d*e?\"f<g>|h\x00i", "Ünïcode ♫"], "wav")
    assert name == "encore-3 from abcdefghi, Ünïcode ♫.wav"
    assert download_filename(4, ["x" * 300], "ogg") == "encore-4 from " + "x" * 86 + ".ogg"
    assert download_filename(5, [], "ogg") == "encore-5.ogg"
    header = content_disposition('say "hi"\\ ♫.wav')
    assert header.startswith('attachment; filename="say _hi__ _.wav"; filename*=UTF-8\'\'')
    assert unquote(header.split("''", 1)[1]) == 'say "hi"\\ ♫.wav'


def test_history_floors_durations_like_the_player(app: FastAPI, listener: TestClient) -> None:
    """The player shows ``formatSeconds`` (whole seconds, floored); History must say the same
    of the same clip: a 5.94 s clip is 0:05 in both, not 0:06."""
    song = upload(listener, song_bytes(9)).json()["song"]
    delivery_id = ask(listener, song["id"])
    ctx: ServiceContext = app.state.ctx
    with ctx.session() as session:
        clip = session.get(Delivery, delivery_id).clip  # type: ignore[union-attr]
        clip.seconds = 5.94
        session.get(Delivery, delivery_id).listened_seconds = 4.99  # type: ignore[union-attr]
    page = listener.get("/history").text
    row = page.split(f'data-delivery-id="{delivery_id}"', 1)[1].split("</tr>", 1)[0]
    assert "0:04" in row and "of 0:05" in row, row
