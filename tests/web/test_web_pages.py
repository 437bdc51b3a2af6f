"""The HTML pages render, link their scripts and carry the CSRF token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from .web_helpers import song_bytes, upload


def test_home_redirects_by_role(anon: TestClient, listener: TestClient, operator: TestClient) -> None:
    assert anon.get("/", follow_redirects=False).headers["location"] == "/signin"
    assert listener.get("/", follow_redirects=False).headers["location"] == "/songs"
    assert operator.get("/", follow_redirects=False).headers["location"] == "/operator/report"


def test_signin_and_signup_pages(anon: TestClient, listener: TestClient) -> None:
    page = anon.get("/signin")
    assert page.status_code == 200 and 'data-api="/api/auth/signin"' in page.text
    signup = anon.get("/signup?code=abc123")
    assert 'value="abc123"' in signup.text and "at least 10 characters" in signup.text
    assert listener.get("/signin", follow_redirects=False).status_code == 303


def test_listener_pages_carry_the_csrf_token(listener: TestClient) -> None:
    token = listener.headers["x-csrf-token"]
    for path, script in (("/upload", "upload.js"), ("/songs", None), ("/history", None)):
        page = listener.get(path)
        assert page.status_code == 200, path
        assert f'<meta name="csrf-token" content="{token}">' in page.text
        if script:
            assert re.search(rf'src="/static/{script}\?v=[0-9a-f]+"', page.text)
    assert "You have no songs yet" in listener.get("/songs").text
    assert "Nothing yet" in listener.get("/history").text


def test_library_lists_songs_with_the_closeness_control(listener: TestClient) -> None:
    song = upload(listener, song_bytes(30), name="Sunrise.wav").json()["song"]
    page = listener.get("/songs")
    assert "Sunrise" in page.text and f'value="{song["id"]}"' in page.text
    assert 'id="closeness"' in page.text and "songs.js" in page.text
    detail = listener.get(f"/songs/{song['id']}")
    assert detail.status_code == 200 and f'src="/api/songs/{song["id"]}/audio"' in detail.text


def test_player_page_and_history_line(listener: TestClient, ready_delivery: int) -> None:
    page = listener.get(f"/music/{ready_delivery}")
    assert page.status_code == 200
    assert f'data-api="/api/deliveries/{ready_delivery}"' in page.text
    assert 'role="slider"' in page.text and "delivery.js" in page.text
    history = listener.get("/history")
    assert f'href="/music/{ready_delivery}"' in history.text


def test_static_files_and_robots(anon: TestClient) -> None:
    js = anon.get("/static/player.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert anon.get("/robots.txt").text.startswith("User-agent: *")


def test_unknown_page_is_a_404_page(anon: TestClient) -> None:
    page = anon.get("/nope")
    assert page.status_code == 404 and "there is nothing at /nope" in page.text
