"""Uploading songs and reading them back, through the HTTP API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import signed_in, song_bytes, upload


def test_upload_then_list_get_and_stream_with_range(listener: TestClient) -> None:
    data = song_bytes(3)
    response = upload(listener, data, name="../../My Song.wav", data={"title": ""})
    assert response.status_code == 201, response.text
    song = response.json()["song"]
    assert song["title"] == "My Song"  # from the file name, which is never a path
    assert abs(song["duration_seconds"] - 2.0) < 0.01
    assert song["status"] in ("pending", "ready")

    listed = listener.get("/api/songs").json()["songs"]
    assert [s["id"] for s in listed] == [song["id"]]
    assert listener.get(f"/api/songs/{song['id']}").json()["song"]["title"] == "My Song"

    whole = listener.get(f"/api/songs/{song['id']}/audio")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/wav" and whole.headers["accept-ranges"] == "bytes"
    part = listener.get(f"/api/songs/{song['id']}/audio", headers={"range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.content == data[100:200]


def test_title_field_wins_over_the_file_name(listener: TestClient) -> None:
    response = upload(listener, song_bytes(4), name="x.wav", data={"title": "  Morning  "})
    assert response.json()["song"]["title"] == "Morning"


def test_not_audio_is_422_with_the_reason(listener: TestClient) -> None:
    response = upload(listener, b"<html>not a song</html>" * 50, name="fake.mp3")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["kind"] == "NotAudio"
    assert error["message"]  # the service's message, shown next to the file
    assert listener.get("/api/songs").json()["songs"] == []


def test_too_short_is_422_naming_the_limit(listener: TestClient) -> None:
    response = upload(listener, song_bytes(5, seconds=0.3))
    assert response.status_code == 422
    assert response.json()["error"]["kind"] == "AudioTooShort"


def test_too_big_is_413_before_the_service_sees_it(listener: TestClient) -> None:
    big = song_bytes(6, seconds=12.0)  # ~530 kB > the 400 kB test limit
    response = upload(listener, big)
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]["message"]
    assert listener.get("/api/songs").json()["songs"] == []


def test_same_file_twice_is_409(listener: TestClient) -> None:
    data = song_bytes(7)
    assert upload(listener, data).status_code == 201
    again = upload(listener, data, name="copy.wav")
    assert again.status_code == 409 and "already uploaded" in again.json()["error"]["message"]


def test_upload_must_be_multipart_with_a_file(listener: TestClient) -> None:
    raw = listener.post("/api/songs", content=song_bytes(8), headers={"content-type": "audio/wav"})
    assert raw.status_code == 422 and "multipart/form-data" in raw.json()["error"]["message"]
    no_file = listener.post("/api/songs", data={"title": "x"}, files={"other": ("a.txt", b"x")})
    assert no_file.status_code == 422 and "no file" in no_file.json()["error"]["message"]
    empty = upload(listener, b"", name="empty.wav")
    assert empty.status_code == 422 and "empty" in empty.json()["error"]["message"]


def test_upload_rate_limit_is_429(make_app: Callable[..., FastAPI], login: Callable[..., TestClient]) -> None:
    app = make_app(limit_upload_account="2/600")
    accounts.create_user(app.state.ctx, email="up@example.org", password="a-long-password")
    client = signed_in(app, "up@example.org")
    assert upload(client, b"junk1").status_code == 422
    assert upload(client, b"junk2").status_code == 422
    limited = upload(client, song_bytes(9))
    assert limited.status_code == 429
    assert "too many upload requests" in limited.json()["error"]["message"]


def test_upload_needs_sign_in_and_csrf(anon: TestClient, listener: TestClient) -> None:
    assert upload(anon, song_bytes(10)).status_code == 401
    listener.headers.pop("x-csrf-token")
    assert upload(listener, song_bytes(10)).status_code == 403


def test_another_listeners_song_is_refused(login: Callable[..., TestClient]) -> None:
    ada, bob = login("ada"), login("bob")
    song_id = upload(ada, song_bytes(11)).json()["song"]["id"]
    for path in (f"/api/songs/{song_id}", f"/api/songs/{song_id}/audio"):
        response = bob.get(path)
        assert response.status_code == 403
        assert response.json()["error"]["message"] == f"song {song_id} belongs to another listener"
    page = bob.get(f"/songs/{song_id}")
    assert page.status_code == 403 and "belongs to another listener" in page.text
    assert bob.get("/api/songs").json()["songs"] == []
    assert bob.get("/api/songs/99999").status_code == 404
