"""Deterministic synthetic music for tests and benchmarks (no files, no downloads).

A bass line and a melody of harmonic notes (additive synthesis with decaying partials and
an attack/decay envelope) on a diatonic scale, plus soft noise hits on the beats: enough
spectral structure (harmonics, onsets, broadband transients) to exercise the codec and
the vocoder the way real music does, unlike a pure sine.
"""

from __future__ import annotations

import numpy as np

_MAJOR = (0, 2, 4, 5, 7, 9, 11)


def _note(freq: float, n: int, sr: int, rng: np.random.Generator, partials: int) -> np.ndarray:
    t = np.arange(n) / sr
    out = np.zeros(n)
    for h in range(1, partials + 1):
        f = freq * h
        if f >= sr / 2:
            break
        out += (0.7**h) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    attack = np.minimum(1.0, t / 0.01)
    return out * attack * np.exp(-t * rng.uniform(1.5, 4.0))


def demo_music(
    seconds: float,
    sr: int,
    *,
    seed: int = 0,
    tempo_bpm: float = 120.0,
    tonic_hz: float = 220.0,
    percussion: bool = True,
) -> np.ndarray:
    """A short piece of synthetic music.

    Parameters
    ----------
    seconds : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    seed : int
        The same seed gives the same samples.
    tempo_bpm : float
        Beats per minute; melody notes last half a beat, bass notes two beats.
    tonic_hz : float
        Tonic of the major scale the notes are drawn from.
    percussion : bool
        Add a short noise burst on every beat.

    Returns
    -------
    np.ndarray
        float32, shape ``(round(seconds * sr),)``, peak 0.8.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    y = np.zeros(n)
    beat = int(round(60.0 / tempo_bpm * sr))
    scale = [tonic_hz * 2 ** (s / 12) for s in _MAJOR]

    def place(start: int, length: int, freq: float, gain: float, partials: int) -> None:
        stop = min(n, start + length)
        if stop > start:
            y[start:stop] += gain * _note(freq, stop - start, sr, rng, partials)

    for start in range(0, n, beat // 2):
        degree = int(rng.integers(0, 7))
        octave = 2.0 if rng.random() < 0.3 else 1.0
        place(start, beat, scale[degree] * octave, 0.5, 10)
    for start in range(0, n, 2 * beat):
        place(start, 2 * beat, scale[int(rng.integers(0, 7))] / 2, 0.6, 6)
    if percussion:
        hit = max(1, int(0.03 * sr))
        for start in range(0, n, beat):
            stop = min(n, start + hit)
            burst = rng.normal(0.0, 1.0, stop - start)
            burst = np.diff(burst, prepend=0.0)  # brighten: emphasise high frequencies
            y[start:stop] += 0.15 * burst * np.exp(-np.arange(stop - start) / (0.008 * sr))
    peak = np.max(np.abs(y))
    if peak > 0:
        y *= 0.8 / peak
    return y.astype(np.float32)
