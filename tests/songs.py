"""Synthetic test songs: a short harmonic song made in memory (the services and web tests
upload it) and tone files (the engine tests read them)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def harmonic_song(seed: int = 0, seconds: float = 2.0, sr: int = 22050, fmt: str = "WAV") -> bytes:
    """Four decaying harmonic notes (pitches drawn from ``seed``), encoded as ``fmt``."""
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


def tone_file(path: Path, freq: float = 330.0, seconds: float = 4.0, *, tremolo_hz: float | None = 2.0,
              intro: float = 0.0, sr: int = 22050) -> Path:
    """A sine tone at ``freq`` Hz (amplitude 0.3) with a tremolo of ``tremolo_hz`` (None: a
    steady tone) after ``intro`` seconds of silence, written to ``path`` (the format from its
    suffix)."""
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t)
    if tremolo_hz is not None:
        y = y * (0.6 + 0.4 * np.sin(2 * np.pi * tremolo_hz * t))
    y[t < intro] = 0.0
    sf.write(path, y.astype(np.float32), sr)
    return path
