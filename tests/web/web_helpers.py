"""Helpers shared by the web tests (``from .web_helpers import …``)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ..songs import harmonic_song

PASSWORD = "a-long-password"


def signed_in(app: FastAPI, email: str, password: str = PASSWORD) -> TestClient:
    """A TestClient signed in as ``email`` that sends the session's CSRF token."""
    client = TestClient(app)
    response = client.post("/api/auth/signin", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    client.headers["x-csrf-token"] = response.json()["csrf_token"]
    return client


def song_bytes(seed: int = 0, seconds: float = 2.0, sr: int = 22050, fmt: str = "WAV") -> bytes:
    """A short harmonic test song (different per seed), encoded in memory."""
    return harmonic_song(seed, seconds, sr, fmt)


def upload(client: TestClient, content: bytes, name: str = "song.wav", **extra: Any) -> Any:
    """POST one file to the upload API (``extra``: more ``client.post`` arguments)."""
    return client.post("/api/songs", files={"file": (name, content, "audio/wav")}, **extra)


def listen_and_rate(client: TestClient, delivery_id: int, stars: float = 4) -> None:
    """Fetch a delivery's audio, report 0.6 s listened (after waiting that long, so the
    server's clock allows it) and rate it ``stars``; asserts each step is accepted."""
    base = f"/api/deliveries/{delivery_id}"
    client.get(f"{base}/audio")
    time.sleep(0.6)
    assert client.post(f"{base}/listens", json={"ranges": [[0, 0.6]]}).json()["rating_allowed"]
    assert client.post(f"{base}/rating", json={"stars": stars}).status_code == 201
