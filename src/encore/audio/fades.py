"""Clean clip edges: a short fade-in and fade-out so that playback does not click.

A generated clip is cut out of a longer vocoded signal, so it starts and ends at whatever
level the music had there (up to 0.5 of full scale was seen): the jump from and to silence
is a click. :func:`fade_edges` multiplies the first and last ``seconds`` by a raised-cosine
ramp raised to a power, so the edge itself is silent and the level rises smoothly; the
power keeps the first and last 5 ms far below the music (−70 dB relative to the clip's peak
with the defaults, :func:`edge_gain_db`). The margin is for lossy codecs: Vorbis spreads the
rising signal a few milliseconds back in time (pre-echo), so a 20 ms fade, −50 dB at 5 ms on
paper, still left −42 dBFS in the first 5 ms of a served file; with 30 ms the worst of 40
edges of real clips was −53 dBFS (``scripts/edge_levels.py``, docs/audio.md). Only the two
ends change: a long piece joined from several windows is faded once, at its own ends, never
inside.
"""

from __future__ import annotations

import math

import numpy as np

from encore.errors import InvalidInput

#: Default fade length in seconds (each end).
FADE_SECONDS = 0.03
#: Exponent of the raised-cosine ramp: 1 is a Hann half-window; higher values stay near
#: silence longer, then rise as steeply.
FADE_POWER = 3.0


def fade_gain(n: int, power: float = FADE_POWER) -> np.ndarray:
    """The fade-in ramp of ``n`` samples: ``sin²(π/2 · t)^power`` for ``t = (i + ½) / n``.

    Rises from near 0 to near 1 without reaching either (sample centres), float32. The
    fade-out is the same ramp reversed.
    """
    if n < 0:
        raise InvalidInput(f"fade length {n} must be >= 0 samples")
    if not (math.isfinite(power) and power > 0):
        raise InvalidInput(f"fade power {power!r} must be a positive number")
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return (np.sin(0.5 * np.pi * t) ** (2.0 * power)).astype(np.float32)


def edge_gain_db(edge_seconds: float, seconds: float = FADE_SECONDS,
                 power: float = FADE_POWER) -> float:
    """The largest gain of the ramp over the first ``edge_seconds`` of a fade, in dB.

    With the defaults the first 5 ms are attenuated by 70 dB (before any lossy codec).
    """
    if seconds <= 0:
        return 0.0
    t = min(edge_seconds / seconds, 1.0)
    gain = math.sin(0.5 * math.pi * t) ** (2.0 * power)
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


def fade_edges(
    y: np.ndarray, sr: int, *, seconds: float = FADE_SECONDS, power: float = FADE_POWER
) -> np.ndarray:
    """A copy of ``y`` with a fade-in over its first and a fade-out over its last
    ``seconds``.

    Parameters
    ----------
    y : np.ndarray
        Audio, ``(n,)`` mono or ``(n, channels)``; float.
    sr : int
        Sample rate in Hz.
    seconds : float
        Length of each fade; a clip shorter than two fades is faded over half its length
        at each end. 0 returns an unchanged float32 copy.
    power : float
        Exponent of the raised-cosine ramp (:func:`fade_gain`).

    Returns
    -------
    np.ndarray
        float32, same shape.
    """
    y = np.array(y, dtype=np.float32, copy=True)
    if y.ndim not in (1, 2):
        raise InvalidInput(f"audio must have shape (n,) or (n, channels), got {y.shape}")
    if sr <= 0:
        raise InvalidInput(f"sample rate {sr} must be positive")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidInput(f"fade length {seconds!r} s must be a non-negative number")
    n = min(int(round(seconds * sr)), y.shape[0] // 2)
    if n == 0:
        return y
    ramp = fade_gain(n, power)
    if y.ndim == 2:
        ramp = ramp[:, None]
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y
