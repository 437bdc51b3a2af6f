"""Helpers shared by the web tests (``from .web_helpers import …``)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

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
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for k, f0 in enumerate(rng.uniform(110, 660, size=4)):
        start = k * seconds / 4
        env = np.clip((t - start) * 20, 0, 1) * np.exp(-np.clip(t - start, 0, None) * 1.5)
        for h in range(1, 5):
            y += env * np.sin(2 * np.pi * f0 * h * t) / h
    y = 0.3 * y / np.abs(y).max()
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format=fmt)
    return buf.getvalue()


def upload(client: TestClient, content: bytes, name: str = "song.wav", **extra: Any) -> Any:
    """POST one file to the upload API (``extra``: more ``client.post`` arguments)."""
    return client.post("/api/songs", files={"file": (name, content, "audio/wav")}, **extra)
