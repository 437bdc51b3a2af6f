"""Making music, the player's media, listening heartbeats, rating and history over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import signed_in, song_bytes, upload

HIDDEN_WORDS = ("branch", "version", "baseline")


def test_delivery_view_is_ready_and_says_nothing_of_branch_or_version(
    listener: TestClient, ready_delivery: int
) -> None:
    view = listener.get(f"/api/deliveries/{ready_delivery}").json()
    assert view["status"] == "ready" and view["progress"] == 1.0
    assert view["clip_seconds"] == pytest.approx(1.0)
    assert view["min_listen_seconds"] == pytest.approx(0.5)
    assert view["rating_allowed"] is False and view["rating"] is None
    text = str(view).lower()
    assert not any(word in text for word in HIDDEN_WORDS), view


def test_clip_audio_supports_range_and_the_spectrogram_is_a_png(
    listener: TestClient, ready_delivery: int
) -> None:
    audio = listener.get(f"/api/deliveries/{ready_delivery}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/ogg"
    assert audio.headers["accept-ranges"] == "bytes"
    part = listener.get(f"/api/deliveries/{ready_delivery}/audio", headers={"range": "bytes=0-15"})
    assert part.status_code == 206 and part.content == audio.content[:16]
    assert part.headers["content-range"] == f"bytes 0-15/{len(audio.content)}"
    image = listener.get(f"/api/deliveries/{ready_delivery}/spectrogram")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_rating_is_refused_before_the_minimum_listen_then_stored_once(
    listener: TestClient, ready_delivery: int
) -> None:
    base = f"/api/deliveries/{ready_delivery}"
    listener.get(f"{base}/audio")  # the player fetched the audio: the clock starts
    early = listener.post(f"{base}/rating", json={"stars": 4})
    assert early.status_code == 422
    assert "listen to at least 0.5 s" in early.json()["error"]["message"]

    state = listener.post(f"{base}/listens", json={"ranges": [[0.0, 0.2]]}).json()
    assert state["listened_seconds"] == pytest.approx(0.2, abs=1e-6)
    assert state["rating_allowed"] is False
    time.sleep(0.7)  # listening cannot outrun the clock since the audio was fetched
    state = listener.post(f"{base}/listens", json={"ranges": [[0.1, 0.7], [0.9, 1.0]], "final": True}).json()
    assert state["listened_seconds"] == pytest.approx(0.8, abs=1e-6)  # union of [0, .7] and [.9, 1]
    assert state["fraction"] == pytest.approx(0.8, abs=1e-6)
    assert state["rating_allowed"] is True

    rated = listener.post(f"{base}/rating", json={"stars": 3.5})
    assert rated.status_code == 201, rated.text
    assert rated.json()["stars"] == 3.5
    assert rated.json()["listened_fraction"] == pytest.approx(0.8, abs=1e-6)
    again = listener.post(f"{base}/rating", json={"stars": 5})
    assert again.status_code == 409 and "already rated" in again.json()["error"]["message"]
    view = listener.get(base).json()
    assert view["rating"] == 3.5 and view["rating_allowed"] is False

    history = listener.get("/api/history").json()["items"]
    assert [(h["delivery_id"], h["rating"]) for h in history] == [(ready_delivery, 3.5)]


def test_bad_star_values_and_listen_bodies_are_422(listener: TestClient, ready_delivery: int) -> None:
    base = f"/api/deliveries/{ready_delivery}"
    listener.get(f"{base}/audio")
    time.sleep(0.6)
    assert listener.post(f"{base}/listens", json={"ranges": [[0, 0.6]]}).json()["rating_allowed"]
    for stars in (0.5, 5.5, 3.25, "x", None):  # a valid value would now be accepted
        response = listener.post(f"{base}/rating", json={"stars": stars})
        assert response.status_code == 422, stars
        if isinstance(stars, float):
            assert str(stars) in response.json()["error"]["message"]
    assert listener.post(f"{base}/rating", json={"stars": 1.5}).status_code == 201
    base = f"/api/deliveries/{ready_delivery}/listens"
    assert listener.post(base, json={"ranges": [[-1, 2]]}).status_code == 422
    assert listener.post(base, json={"ranges": [[0, 1, 2]]}).status_code == 422
    assert listener.post(base, json={"ranges": [[0, 1]] * 2001}).status_code == 422


def test_rating_rate_limit_is_429(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(limit_rating_account="2/60")
    accounts.create_user(app.state.ctx, email="r@example.org", password="a-long-password")
    client = signed_in(app, "r@example.org")
    for _ in range(2):
        assert client.post("/api/deliveries/1/rating", json={"stars": 3}).status_code == 404
    limited = client.post("/api/deliveries/1/rating", json={"stars": 3})
    assert limited.status_code == 429 and "too many rating requests" in limited.json()["error"]["message"]


def test_request_music_validation(listener: TestClient) -> None:
    assert listener.post("/api/music", json={"song_ids": []}).status_code == 422
    assert listener.post("/api/music", json={"song_ids": [1], "closeness": 1.5}).status_code == 422
    assert listener.post("/api/music", json={"song_ids": list(range(1, 10))}).status_code == 422
    missing = listener.post("/api/music", json={"song_ids": [424242]})
    assert missing.status_code == 404 and "424242" in missing.json()["error"]["message"]


def test_a_blend_of_two_songs_is_delivered(listener: TestClient) -> None:
    ids = [upload(listener, song_bytes(s)).json()["song"]["id"] for s in (21, 22)]
    response = listener.post("/api/music", json={"song_ids": ids})
    assert response.status_code == 201
    body = response.json()
    assert body["url"] == f"/music/{body['delivery_id']}"
    view = listener.get(f"/api/deliveries/{body['delivery_id']}").json()
    assert view["status"] == "ready" and view["input_song_ids"] == ids


def test_another_listeners_delivery_is_refused(
    login: Callable[..., TestClient], listener: TestClient, ready_delivery: int
) -> None:
    bob = login("bob")
    base = f"/api/deliveries/{ready_delivery}"
    for method, path, body in (
        ("GET", base, None),
        ("GET", f"{base}/audio", None),
        ("GET", f"{base}/spectrogram", None),
        ("POST", f"{base}/listens", {"ranges": [[0, 1]]}),
        ("POST", f"{base}/rating", {"stars": 5}),
    ):
        response = bob.request(method, path, json=body)
        assert response.status_code == 403, (method, path)
        assert "belongs to another listener" in response.json()["error"]["message"]
    assert bob.get(f"/music/{ready_delivery}").status_code == 403
    assert bob.get("/api/history").json()["items"] == []
    # someone else's song cannot be used as an input either
    song_id = listener.get("/api/songs").json()["songs"][0]["id"]
    assert bob.post("/api/music", json={"song_ids": [song_id]}).status_code == 403


def test_a_heartbeat_waits_in_the_thread_pool_while_another_writer_holds_sqlite(
    app: FastAPI, listener: TestClient, ready_delivery: int
) -> None:
    """The heartbeat route runs in the event loop only when the writer lock is free; with a
    write transaction open elsewhere it neither fails nor blocks the loop, and lands after."""
    import threading

    import sqlalchemy as sa

    from encore.store import Delivery

    base = f"/api/deliveries/{ready_delivery}"
    listener.get(f"{base}/audio")
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with app.state.ctx.session() as session:  # takes the writer lock at its first statement
            session.execute(sa.update(Delivery).where(Delivery.id == -1).values(listened_seconds=0))
            held.set()
            release.wait(10)

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert held.wait(10)
    threading.Timer(0.4, release.set).start()
    t0 = time.monotonic()
    state = listener.post(f"{base}/listens", json={"ranges": [[0.0, 0.1]]})
    waited = time.monotonic() - t0
    writer.join(10)
    assert state.status_code == 200, state.text
    assert state.json()["listened_seconds"] == pytest.approx(0.1, abs=1e-6)
    assert waited >= 0.35  # it waited for the other writer (in a thread), then wrote


def test_a_blend_takes_each_song_s_share(listener: TestClient) -> None:
    ids = [upload(listener, song_bytes(s)).json()["song"]["id"] for s in (23, 24)]
    response = listener.post("/api/music", json={"song_ids": ids, "weights": [0.8, 0.2],
                                                 "closeness": 0.5})
    assert response.status_code == 201
    view = listener.get(f"/api/deliveries/{response.json()['delivery_id']}").json()
    assert view["status"] == "ready"
    for body, needle in (
        ({"song_ids": ids, "weights": [1, -1]}, "-1"),
        ({"song_ids": ids, "weights": [0, 0]}, "above 0"),
        ({"song_ids": ids, "weights": [1, 2, 3]}, "3 weights for 2 songs"),
        ({"song_ids": ids[:1], "weights": [1]}, "several songs"),
    ):
        bad = listener.post("/api/music", json=body)
        assert bad.status_code == 422 and needle in bad.json()["error"]["message"], bad.text
    assert listener.post("/api/music", json={"song_ids": ids, "weights": ["a", 1]}).status_code == 422
