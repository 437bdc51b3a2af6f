"""How much of a clip was listened to, from the played ranges the client reports.

The player reports the ranges it actually played, ``[(start, end), ...]`` in seconds of the
clip (a seek starts a new range; replays overlap). The listened time is the measure of the
*union* of those ranges, clamped to ``[0, clip_seconds]``, and never more than the wall time
the server has seen pass since it delivered the clip (plus a small slack): a client cannot
report 30 s of listening 5 s after delivery.

Malformed ranges are **dropped and counted**, not rejected. The report comes from a browser
the server does not control; rejecting the whole report for one glitched range would throw
away the valid ranges (and the listener's rating with them), while dropping can only lower
the listened time, never inflate it. The counts travel in :class:`ListenSummary` so that the
services can log and store them and a client bug shows up. Dropped: ranges with a NaN or
infinite bound, and reversed ranges (``end < start``: no guess at what was meant). Clamped
(and counted): ranges reaching below 0 or past the clip's end. Invalid *server-side* values
(clip length, wall time) raise :class:`~encore.errors.InvalidInput`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

__all__ = [
    "ListenSummary",
    "merge_ranges",
    "minimum_listen_seconds",
    "rating_allowed",
    "summarize_listen",
    "union_seconds",
]


@dataclass(frozen=True)
class ListenSummary:
    """What the server makes of one listen report.

    Attributes
    ----------
    listened_seconds : float >= 0
        Seconds of the clip listened to, after every clamp.
    fraction : float in [0, 1]
        ``listened_seconds / clip_seconds``: the l̂ of the rating function.
    union_seconds : float >= 0
        Measure of the union of the valid ranges within the clip, before the wall-clock clamp.
    wall_clamped : bool
        True when the wall-clock clamp lowered the listened time.
    dropped_ranges : int
        Ranges ignored (NaN/infinite bound or reversed).
    clamped_ranges : int
        Ranges cut to ``[0, clip_seconds]``.
    played : tuple of (float, float)
        The union of the valid ranges within the clip, as sorted disjoint ranges (what a
        later report is merged with).
    """

    listened_seconds: float
    fraction: float
    union_seconds: float
    wall_clamped: bool
    dropped_ranges: int
    clamped_ranges: int
    played: tuple[tuple[float, float], ...] = ()


def merge_ranges(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of closed intervals ``[start, end]`` (``start <= end``) as sorted disjoint ones.

    Examples
    --------
    >>> merge_ranges([(5, 6), (0, 2), (1, 3)])
    [(0, 3), (5, 6)]
    """
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length of the union of closed intervals ``[start, end]`` with ``start <= end``.

    Parameters
    ----------
    intervals : iterable of (float, float)
        Valid intervals (finite, not reversed), in any order, possibly overlapping.

    Returns
    -------
    float
        The measure of their union, in the same unit.

    Examples
    --------
    >>> union_seconds([(0, 2), (1, 3), (5, 6)])
    4.0
    """
    return float(sum(end - start for start, end in merge_ranges(intervals)))


def summarize_listen(
    ranges: Sequence[Sequence[float]] | np.ndarray,
    *,
    clip_seconds: float,
    wall_seconds: float | None,
    slack_seconds: float = 1.0,
) -> ListenSummary:
    """Listened time and fraction of one clip from the client's played ranges.

    Parameters
    ----------
    ranges : sequence of (start, end) or np.ndarray [shape=(n, 2)]
        Played ranges in seconds of the clip. May overlap, be unsorted, reach outside the
        clip, or be malformed (see the module docstring for what is dropped).
    clip_seconds : float > 0
        Length of the clip, in seconds (server-side value).
    wall_seconds : float >= 0 or None
        Seconds the server has seen pass since it delivered the clip. ``None`` skips the
        clamp (offline analysis only).
    slack_seconds : float >= 0
        Allowed excess of reported listening over ``wall_seconds``.

    Returns
    -------
    ListenSummary

    Raises
    ------
    InvalidInput
        If ``clip_seconds``, ``wall_seconds`` or ``slack_seconds`` is out of range, or a range
        is not a pair.

    Examples
    --------
    >>> s = summarize_listen([(0, 4), (2, 6), (9, 20)], clip_seconds=10, wall_seconds=60)
    >>> s.listened_seconds, s.fraction, s.clamped_ranges
    (7.0, 0.7, 1)
    """
    if not _is_real(clip_seconds) or not math.isfinite(clip_seconds) or clip_seconds <= 0:
        raise InvalidInput(f"clip_seconds={clip_seconds!r} must be a finite number > 0")
    if wall_seconds is not None and (not _is_real(wall_seconds)
                                     or not math.isfinite(wall_seconds) or wall_seconds < 0):
        raise InvalidInput(f"wall_seconds={wall_seconds!r} must be a finite number >= 0 or None")
    if not _is_real(slack_seconds) or not math.isfinite(slack_seconds) or slack_seconds < 0:
        raise InvalidInput(f"slack_seconds={slack_seconds!r} must be a finite number >= 0")

    valid: list[tuple[float, float]] = []
    dropped = clamped = 0
    for item in ranges:
        try:
            start, end = (float(v) for v in item)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"played range {item!r} must be a (start, end) pair of "
                               "numbers") from exc
        if not (math.isfinite(start) and math.isfinite(end)):
            dropped += 1
            logger.debug("dropped non-finite played range (%r, %r)", start, end)
            continue
        if end < start:
            dropped += 1
            logger.debug("dropped reversed played range (%r, %r)", start, end)
            continue
        lo, hi = max(start, 0.0), min(end, float(clip_seconds))
        if (lo, hi) != (start, end):
            clamped += 1
        if hi > lo:
            valid.append((lo, hi))

    played = merge_ranges(valid)
    union = float(sum(end - start for start, end in played))
    listened = union
    wall_clamped = False
    if wall_seconds is not None and union > wall_seconds + slack_seconds:
        listened = float(wall_seconds + slack_seconds)
        wall_clamped = True
    listened = min(listened, float(clip_seconds))
    if dropped or wall_clamped:
        logger.info("listen report: %d ranges dropped, wall clamp %s (%.3f s reported, %s s "
                    "elapsed)", dropped, wall_clamped, union, wall_seconds)
    return ListenSummary(
        listened_seconds=listened,
        fraction=min(1.0, listened / float(clip_seconds)),
        union_seconds=union,
        wall_clamped=wall_clamped,
        dropped_ranges=dropped,
        clamped_ranges=clamped,
        played=tuple(played),
    )


def minimum_listen_seconds(clip_seconds: float, *, min_seconds: float = 5.0,
                           min_fraction: float = 0.5) -> float:
    """Listening needed before a rating counts: ``min(min_seconds, min_fraction * clip_seconds)``.

    Examples
    --------
    >>> minimum_listen_seconds(5.9)
    2.95
    >>> minimum_listen_seconds(30.0)
    5.0
    """
    if not _is_real(clip_seconds) or not math.isfinite(clip_seconds) or clip_seconds <= 0:
        raise InvalidInput(f"clip_seconds={clip_seconds!r} must be a finite number > 0")
    if not _is_real(min_seconds) or not math.isfinite(min_seconds) or min_seconds < 0:
        raise InvalidInput(f"min_seconds={min_seconds!r} must be a finite number >= 0")
    if not _is_real(min_fraction) or not 0.0 <= min_fraction <= 1.0:
        raise InvalidInput(f"min_fraction={min_fraction!r} must be in [0, 1]")
    return float(min(min_seconds, min_fraction * clip_seconds))


def rating_allowed(listened_seconds: float, clip_seconds: float, min_seconds: float = 5.0,
                   min_fraction: float = 0.5) -> bool:
    """Whether a rating counts after ``listened_seconds`` of listening to a clip.

    A rating counts once ``listened_seconds >= min(min_seconds, min_fraction * clip_seconds)``
    (1e-9 s tolerance for float round-off).

    Parameters
    ----------
    listened_seconds : float >= 0
        Listened time, e.g. :attr:`ListenSummary.listened_seconds`.
    clip_seconds : float > 0
    min_seconds : float >= 0
    min_fraction : float in [0, 1]

    Examples
    --------
    >>> rating_allowed(3.0, 5.9), rating_allowed(2.0, 5.9), rating_allowed(4.9, 60.0)
    (True, False, False)
    """
    if not _is_real(listened_seconds) or not math.isfinite(listened_seconds) \
            or listened_seconds < 0:
        raise InvalidInput(f"listened_seconds={listened_seconds!r} must be a finite number >= 0")
    need = minimum_listen_seconds(clip_seconds, min_seconds=min_seconds, min_fraction=min_fraction)
    return bool(listened_seconds + 1e-9 >= need)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
