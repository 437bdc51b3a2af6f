"""Issue 18 §1, §6: generation limits, heartbeat rate, storage quota (each probe as a test)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.jobs import dispatch
from encore.services import accounts

from .web_helpers import PASSWORD, signed_in, song_bytes, upload


def _listener(app: FastAPI, name: str = "ada") -> TestClient:
    email = f"{name}@example.org"
    accounts.create_user(app.state.ctx, email=email, password=PASSWORD)
    return signed_in(app, email)


def test_a_thousand_queued_requests_stop_at_the_pending_cap(
    make_app: Callable[..., FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    ada = _listener(app)
    song = upload(ada, song_bytes(1)).json()["song"]
    bob = _listener(app, "bob")
    bob_song = upload(bob, song_bytes(2)).json()["song"]
    assert song["status"] == bob_song["status"] == "ready"
    # From here no job runs (as with one busy worker): the clips stay queued.
    monkeypatch.setattr(dispatch, "dispatch_pending", lambda *a, **k: None)
    statuses = []
    for _ in range(1000):
        r = ada.post("/api/music", json={"song_ids": [song["id"]]})
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses == [201, 201, 201, 429]
    error = r.json()["error"]
    assert "3 pieces of music being made" in error["message"] and "try again in" in error["message"]
    assert int(r.headers["retry-after"]) >= 1
    # Another listener is not held up by ada's queue.
    assert bob.post("/api/music", json={"song_ids": [bob_song["id"]]}).status_code == 201


def test_requests_per_hour_are_limited_with_retry_after(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(limit_music_account="3/3600")
    ada = _listener(app)
    song = upload(ada, song_bytes(1)).json()["song"]
    for _ in range(3):
        assert ada.post("/api/music", json={"song_ids": [song["id"]]}).status_code == 201
    r = ada.post("/api/music", json={"song_ids": [song["id"]]})
    assert r.status_code == 429, r.text
    assert "3 times in the last 60 minutes" in r.json()["error"]["message"]
    assert 3500 <= int(r.headers["retry-after"]) <= 3601


def test_storage_quota_is_413_and_names_the_space(make_app: Callable[..., FastAPI]) -> None:
    one = len(song_bytes(1))
    app = make_app(storage_quota_bytes=int(2.5 * one))
    ada = _listener(app)
    assert upload(ada, song_bytes(1), "one.wav").status_code == 201
    assert upload(ada, song_bytes(2), "two.wav").status_code == 201
    r = upload(ada, song_bytes(3), "three.wav")
    assert r.status_code == 413, r.text
    message = r.json()["error"]["message"]
    assert "'three.wav' " in message and "does not fit" in message and "delete a song" in message
    assert len(ada.get("/api/songs").json()["songs"]) == 2  # nothing stored, nothing lost
    bob = _listener(app, "bob")  # the quota is per account
    assert upload(bob, song_bytes(3), "three.wav").status_code == 201


def test_listening_heartbeats_are_rate_limited(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(limit_listen_account="5/60")
    ada = _listener(app)
    song = upload(ada, song_bytes(1)).json()["song"]
    delivery = ada.post("/api/music", json={"song_ids": [song["id"]]}).json()["delivery_id"]
    ada.get(f"/api/deliveries/{delivery}/audio")
    codes = [ada.post(f"/api/deliveries/{delivery}/listens", json={"ranges": [[0, 0.1]]}).status_code
             for _ in range(6)]
    assert codes == [200] * 5 + [429]


# --- §10: listening is checked against the audio actually served ---------------------------


def test_no_listening_is_granted_before_the_audio_is_fetched(
    listener: TestClient, ready_delivery: int
) -> None:
    """The probe: never download the audio, wait, claim the whole clip, try to rate."""
    import time

    base = f"/api/deliveries/{ready_delivery}"
    time.sleep(1.2)
    state = listener.post(f"{base}/listens", json={"ranges": [[0, 1.0]], "final": True}).json()
    assert state["listened_seconds"] == 0 and state["rating_allowed"] is False
    assert listener.post(f"{base}/rating", json={"stars": 5}).status_code == 422


def test_listening_stops_where_the_served_audio_stops(
    listener: TestClient, ready_delivery: int
) -> None:
    import time

    base = f"/api/deliveries/{ready_delivery}"
    part = listener.get(f"{base}/audio", headers={"range": "bytes=0-15"})
    assert part.status_code == 206
    time.sleep(1.2)
    state = listener.post(f"{base}/listens", json={"ranges": [[0, 1.0]]}).json()
    assert state["listened_seconds"] <= 0.15 and state["rating_allowed"] is False
    listener.get(f"{base}/audio")  # now the whole file
    state = listener.post(f"{base}/listens", json={"ranges": [[0, 1.0]]}).json()
    assert state["listened_seconds"] == pytest.approx(1.0) and state["rating_allowed"] is True
