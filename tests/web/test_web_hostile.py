"""Issue 18: the hostile-input upload suite. Every upload the platform must refuse gets the
right 4xx and a message naming the problem; the server stays healthy; nothing stored before
is lost."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable

import numpy as np
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import PASSWORD, signed_in, song_bytes, upload

LIMIT = 2_000_000  # the upload limit of this suite's app (bytes)


def _encode(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _tone(seconds: float, sr: int = 22050, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def _lying_wav_header() -> bytes:
    """A WAV whose data chunk claims ten times the bytes that follow."""
    good = bytearray(song_bytes(3))
    pos = good.index(b"data")
    (size,) = struct.unpack_from("<I", good, pos + 4)
    struct.pack_into("<I", good, pos + 4, size * 10)
    return bytes(good)


def _wav_with_rate(rate: int) -> bytes:
    """A valid-looking 16-bit mono WAV header declaring ``rate`` Hz over 4 s of samples."""
    y = (0.3 * np.sin(np.arange(4 * 22050) / 5)).astype(np.float32)
    data = (y * 32767).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16
    ) + b"data" + struct.pack("<I", len(data))
    return header + data


# (name, file name, bytes, expected status, words the message must contain)
def _cases() -> list[tuple[str, str, bytes, int, tuple[str, ...]]]:
    good = song_bytes(7)
    flac = _encode(_tone(3.0), 22050, "FLAC")
    return [
        ("empty", "empty.wav", b"", 422, ("'empty.wav' is empty",)),
        ("truncated wav", "cut.wav", good[: len(good) // 3], 422, ("truncated",)),
        ("truncated flac", "cut.flac", flac[: len(flac) // 2], 422, ("damaged flac",)),
        ("lying wav header", "liar.wav", _lying_wav_header(), 422, ("truncated",)),
        ("text named .mp3", "notes.mp3", b"just some text, not audio\n" * 40, 422, ("not in an audio format",)),
        ("png named .wav", "image.wav", b"\x89PNG\r\n\x1a\n" + os.urandom(2000), 422, ("'image.wav' is a PNG image, not audio",)),
        ("zip named .flac", "archive.flac", b"PK\x03\x04" + os.urandom(2000), 422, ("ZIP archive, not audio",)),
        ("random bytes", "noise.ogg", np.random.default_rng(0).bytes(50_000), 422, ("not in an audio format",)),
        ("silence", "quiet.wav", _encode(np.zeros(3 * 22050, np.float32), 22050), 422, ("silent",)),
        ("too short", "short.wav", _encode(_tone(0.3), 22050), 422, ("shorter than the minimum",)),
        ("too long", "long.wav", _encode(_tone(12.0, sr=8000), 8000), 422, ("longer than the limit",)),
        ("absurd sample rate", "fast.wav", _wav_with_rate(655_350), 422, ("655350 Hz", "limit")),
        ("too many channels", "wide.wav", _encode(_tone(1.5, sr=8000, channels=12), 8000), 422, ("12 channels",)),
        ("over the size limit", "big.wav", b"RIFF" + b"\0" * (LIMIT + 10), 413, ("limit",)),
    ]


HOSTILE_NAMES = [
    "../../../etc/passwd.wav", "..\\..\\windows\\win.ini.wav", "/abs/path.wav",
    "a\x00b.wav", "<script>alert(1)</script>.wav", "con.wav", "x" * 900 + ".wav",
    "\u202egnp.wav", "   .wav", "song\r\nSet-Cookie: x=1.wav",
]


def test_every_hostile_upload_is_refused_by_name_and_nothing_is_lost(
    make_app: Callable[..., FastAPI]
) -> None:
    app = make_app(max_upload_bytes=LIMIT, max_song_seconds=10.0, min_song_seconds=1.0)
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    ada = signed_in(app, "ada@example.org")
    kept = upload(ada, song_bytes(1), "kept.wav")
    assert kept.status_code == 201
    kept_audio = ada.get(f"/api/songs/{kept.json()['song']['id']}/audio").content
    for name, filename, data, status, words in _cases():
        r = upload(ada, data, filename)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        message = r.json()["error"]["message"]
        for word in words:
            assert word in message, (name, message)
    # The server is healthy and the song stored before is intact.
    assert ada.get("/api/me").json()["user"]["email"] == "ada@example.org"
    songs = ada.get("/api/songs").json()["songs"]
    assert [s["title"] for s in songs] == ["kept"]
    assert ada.get(f"/api/songs/{songs[0]['id']}/audio").content == kept_audio
    assert upload(ada, song_bytes(2), "after.wav").status_code == 201


def test_hostile_file_names_are_only_ever_titles(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(max_upload_bytes=LIMIT, limit_upload_account="100/60")
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    ada = signed_in(app, "ada@example.org")
    data_dir = app.state.settings.data_dir
    for i, name in enumerate(HOSTILE_NAMES):
        r = upload(ada, song_bytes(10 + i), name)
        assert r.status_code == 201, (name, r.text[:300])
        title = r.json()["song"]["title"]
        assert "/" not in title and "\\" not in title and "\x00" not in title and "\n" not in title
        assert 0 < len(title) <= 200
    # Every blob lives under the store's own generated keys.
    for path in (data_dir / "blobs").rglob("*"):
        assert ".." not in path.parts and "passwd" not in path.name and "win.ini" not in path.name
    # A multipart header too long to parse is a clear 400, nothing stored.
    huge = upload(ada, song_bytes(99), "x" * 5000 + ".wav")
    assert huge.status_code == 400 and "multipart" in huge.json()["error"]["message"]
    page = ada.get("/songs").text
    assert "<script>alert(1)</script>" not in page  # escaped on the page
    assert TestClient(app).get("/api/me").status_code == 200
