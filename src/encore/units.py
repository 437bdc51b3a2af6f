"""Numbers as people read them: durations (``m:ss``) and sizes (``12.0 MB``).

One rule for every duration the server shows (pages, messages): **whole seconds, rounded
down**, as ``m:ss`` — what a browser's audio element shows, so a clip of 5.94 s reads 0:05
in the player, in History and in the song list alike. Sizes are binary multiples written
``kB``/``MB``/``GB`` (1 MB = 1 048 576 bytes), as the upload page states its limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

_UNITS = (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024))


def format_duration(seconds: float | None, *, decimals: int = 0, missing: str = "—") -> str:
    """``m:ss`` for a number of seconds, rounded down (``"—"`` when unknown).

    ``decimals`` > 0 keeps that many decimals of the seconds, also rounded down
    (``1:05.3``). Negative or non-finite values read as ``missing``.
    """
    if seconds is None or not math.isfinite(float(seconds)) or float(seconds) < 0:
        return missing
    scale = 10**decimals
    # a tiny epsilon so that 0.3 * 10 = 2.9999999999999996 still floors to 3
    ticks = int(math.floor(float(seconds) * scale + 1e-9))
    minutes, rest = divmod(ticks, 60 * scale)
    whole, fraction = divmod(rest, scale)
    text = f"{minutes}:{whole:02d}"
    return f"{text}.{fraction:0{decimals}d}" if decimals else text


def human_duration(seconds: float, *, decimals: int = 0) -> str:
    """A duration in a message: under a minute as seconds with one decimal more than
    ``decimals`` (``"0.3 s"``, ``"3.0 s"``), from a minute on as ``m:ss``
    (:func:`format_duration`); rounded down either way."""
    if math.isfinite(seconds) and 0 <= seconds < 60:
        scale = 10 ** (decimals + 1)
        return f"{math.floor(seconds * scale + 1e-9) / scale:.{decimals + 1}f} s"
    return format_duration(seconds, decimals=decimals, missing=f"{seconds} s")


def format_size(n_bytes: float, *, decimals: int = 1) -> str:
    """A number of bytes in the largest unit it reaches: ``"12.0 MB"``, ``"512.0 kB"``,
    ``"900 bytes"``; rounded down, so a file just over a limit never reads as under it."""
    n = float(n_bytes)
    for unit, size in _UNITS:
        if abs(n) >= size:
            scale = 10**decimals
            return f"{math.floor(n / size * scale + 1e-9) / scale:.{decimals}f} {unit}"
    return f"{int(n)} bytes"


def apart(formatter: Callable[..., str], value: float, limit: float,
          max_decimals: int = 4) -> tuple[str, str]:
    """``(formatter(value), formatter(limit))`` with as many decimals as it takes for the
    two to read differently (a 15:00.4 song over a 15:00 limit must not read "15:00, longer
    than 15:00")."""
    base = 1 if formatter is format_size else 0
    for decimals in range(base, max_decimals + 1):
        a, b = formatter(value, decimals=decimals), formatter(limit, decimals=decimals)
        if a != b:
            return a, b
    return a, b
