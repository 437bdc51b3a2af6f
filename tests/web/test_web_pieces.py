"""Longer pieces and the start in the song through the JSON API and the song page (tiny
models, immediate jobs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import PASSWORD, signed_in, song_bytes, upload


@pytest.fixture
def piece_client(make_app: Callable[..., FastAPI]) -> TestClient:
    """A listener of an app with 2-second windows, two candidates and a 24-second cap."""
    app = make_app(clip_seconds=2.0, piece_overlap_seconds=0.5, piece_crossfade_seconds=0.05,
                   best_of_n=2, max_piece_seconds=24)
    accounts.create_user(app.state.ctx, email="p@example.org", password=PASSWORD,
                         display_name="p")
    return signed_in(app, "p@example.org")


def test_a_piece_with_a_start_through_the_api(piece_client: TestClient) -> None:
    client = piece_client
    song = upload(client, song_bytes(5, seconds=8.0)).json()["song"]
    r = client.post("/api/music", json={"song_ids": [song["id"]], "seconds": 6, "start": 3.0})
    assert r.status_code == 201, r.text
    view = client.get(f"/api/deliveries/{r.json()['delivery_id']}").json()
    assert view["status"] == "ready", view
    assert view["piece_seconds"] == 6 and view["start_seconds"] == 3.0 and view["loop"] is False
    assert view["clip_seconds"] == pytest.approx(6.0, abs=0.01)
    audio = client.get(f"/api/deliveries/{r.json()['delivery_id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/ogg"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"seconds": 7}, "can be 6, 12, 24 seconds long, not 7"),
        ({"seconds": 48}, "not 48"),
        ({"start": 9.5}, "past the end of"),
        ({"start": -2}, "seconds from 0"),
        ({"seconds": 6, "loop": True}, "at least 12"),
        ({"seconds": "long"}, ""),
    ],
)
def test_bad_pieces_are_refused_with_the_reason(piece_client: TestClient, body, message) -> None:
    client = piece_client
    song = upload(client, song_bytes(6, seconds=8.0)).json()["song"]
    r = client.post("/api/music", json={"song_ids": [song["id"]], **body})
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"]
    assert client.get("/api/history").json()["items"] == []  # nothing was made


def test_the_song_page_shows_the_spectrogram_and_the_piece_form(piece_client: TestClient) -> None:
    client = piece_client
    song = upload(client, song_bytes(7, seconds=8.0)).json()["song"]
    page = client.get(f"/songs/{song['id']}")
    assert page.status_code == 200
    html = page.text
    assert f'src="/api/songs/{song["id"]}/spectrogram"' in html
    assert 'id="piece-start"' in html and 'value="24"' in html and 'value="48"' not in html
    picture = client.get(f"/api/songs/{song['id']}/spectrogram")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/songs/{song['id']}/spectrogram").content == picture.content
