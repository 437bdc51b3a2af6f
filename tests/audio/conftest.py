"""Fixtures of the audio tests: synthetic music and files written in ``tmp_path``."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from encore.audio.synth import demo_music

SR = 22050

#: format name -> (libsndfile format, subtype, file suffix)
WRITE_FORMATS = {
    "wav": ("WAV", "PCM_16", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "ogg": ("OGG", "VORBIS", ".ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}


@pytest.fixture(scope="session")
def music() -> np.ndarray:
    """8 s of deterministic synthetic music at 22 050 Hz, float32, peak 0.8."""
    return demo_music(8.0, SR, seed=7)


def _audio_bytes(y: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    """``y`` (``(n,)`` or ``(n, channels)``) written by soundfile in ``fmt``."""
    import soundfile as sf

    major, default_subtype, _ = WRITE_FORMATS.get(fmt, (fmt.upper(), None, ""))
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format=major, subtype=subtype or default_subtype)
    return buffer.getvalue()


@pytest.fixture
def write_audio(tmp_path: Path) -> Callable[..., Path]:
    """Write ``y`` at ``sr`` as ``fmt`` into ``tmp_path``; returns the path."""

    def write(y: np.ndarray, sr: int, fmt: str, name: str = "clip", **kwargs: object) -> Path:
        path = tmp_path / f"{name}{WRITE_FORMATS[fmt][2]}"
        path.write_bytes(_audio_bytes(y, sr, fmt, **kwargs))
        return path

    return write


@pytest.fixture
def sf_bytes() -> Callable[..., bytes]:
    """``sf_bytes(y, sr, fmt, subtype=None)``: file bytes written by soundfile."""
    return _audio_bytes


@pytest.fixture(autouse=True)
def _one_thread():
    """Run the audio tests on one torch and one BLAS thread (restored afterwards).

    Their arrays are small: on the shared 2-core machine a second thread mostly spins
    waiting for a core (measured: 5-10x slower wall time under load).
    """
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(previous)
