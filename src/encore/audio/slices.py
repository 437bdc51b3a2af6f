"""Choose conditioning slices from the body of a song, never from a silent intro or outro.

1. Frame loudness: RMS in dB relative to the loudest frame (frames of ``frame_length``
   samples every ``hop_length``).
2. The *body* runs from the first to the last frame louder than ``body_db`` (quiet
   intros, fade-outs and trailing silence are outside it).
3. Every window of ``slice_samples`` inside the body (on the frame grid) is scored by the
   mean of its frames' dB, floored at ``floor_db``: loud windows win, and a window with a
   silent gap inside pays for it.
4. The choice: the ``k = min(count, as many as fit)`` pairwise disjoint windows with the
   highest total score (exact, by dynamic programming over the sorted starts); ties go to
   the earliest windows. Deterministic.
"""

from __future__ import annotations

import logging

import numpy as np

from encore.errors import InvalidInput

logger = logging.getLogger(__name__)


def frame_db(y: np.ndarray, *, frame_length: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Frame RMS in dB relative to the loudest frame.

    Parameters
    ----------
    y : np.ndarray
        Mono audio, shape ``(n,)``.
    frame_length, hop_length : int
        Frame size and step in samples. Frame ``t`` covers
        ``y[t*hop_length : t*hop_length + frame_length]`` (the last frames are zero-padded).

    Returns
    -------
    np.ndarray
        float64, shape ``(ceil(n / hop_length),)``, values ≤ 0 (``-inf``-free: floored at
        -200 dB); all zeros for silent input.
    """
    y = np.asarray(y, dtype=np.float64)
    n_frames = max(1, -(-y.shape[0] // hop_length))
    padded = np.zeros((n_frames - 1) * hop_length + frame_length)
    padded[: y.shape[0]] = y
    cumsum = np.concatenate([[0.0], np.cumsum(padded**2)])
    starts = np.arange(n_frames) * hop_length
    energy = (cumsum[starts + frame_length] - cumsum[starts]) / frame_length
    energy = np.maximum(energy, 0.0)
    peak = energy.max()
    if peak <= 0.0:
        return np.zeros(n_frames)
    return 10.0 * np.log10(np.maximum(energy / peak, 1e-20))


def song_body(
    y: np.ndarray,
    *,
    body_db: float = -35.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> tuple[int, int]:
    """Sample range ``[start, stop)`` from the first to the last frame above ``body_db``.

    Parameters
    ----------
    y : np.ndarray
        Mono audio, shape ``(n,)``.
    body_db : float
        Loudness threshold in dB relative to the loudest frame.

    Returns
    -------
    tuple of int
        ``(start, stop)`` in samples, ``0 <= start < stop <= n`` (the whole input when it
        is silent or shorter than a frame).
    """
    n = int(np.shape(y)[0])
    db = frame_db(y, frame_length=frame_length, hop_length=hop_length)
    loud = np.flatnonzero(db > body_db)
    if n == 0 or loud.size == 0:
        return 0, n
    start = int(loud[0]) * hop_length
    stop = min(n, int(loud[-1]) * hop_length + frame_length)
    return start, max(stop, start + 1)


def choose_slices(
    y: np.ndarray,
    *,
    sr: int,
    slice_samples: int,
    count: int = 1,
    body_db: float = -35.0,
    floor_db: float = -60.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> list[int]:
    """Start offsets of up to ``count`` non-overlapping, loud slices from the song's body.

    Parameters
    ----------
    y : np.ndarray
        Mono audio, shape ``(n,)``.
    sr : int
        Sample rate (Hz), for the log only; all lengths are in samples.
    slice_samples : int
        Length of one slice (e.g. ``MelConfig.slice_samples``).
    count : int
        How many slices are wanted.
    body_db : float
        Frames quieter than this (dB relative to the loudest frame) at the start and end
        of the song are not part of its body.
    floor_db : float
        Frame dB are floored here before averaging a window's score.
    frame_length, hop_length : int
        Loudness frames (samples); starts lie on the ``hop_length`` grid.

    Returns
    -------
    list of int
        Sorted start offsets ``s`` with ``0 <= s <= n - slice_samples``, pairwise at least
        ``slice_samples`` apart. Fewer than ``count`` when the body does not hold that many
        disjoint slices (never empty: a song shorter than a slice gives ``[0]``, the caller
        pads it; a body shorter than a slice gives one slice centred on the body).
    """
    if slice_samples <= 0 or count <= 0:
        raise InvalidInput(f"slice_samples={slice_samples} and count={count} must be positive")
    y = np.asarray(y)
    if y.ndim != 1:
        raise InvalidInput(f"audio must be mono with shape (n,), got shape {y.shape}")
    n = y.shape[0]
    if n <= slice_samples:
        return [0]
    start, stop = song_body(y, body_db=body_db, frame_length=frame_length, hop_length=hop_length)
    last_start = n - slice_samples
    if stop - start <= slice_samples:
        centre = (start + stop) // 2
        return [int(min(max(centre - slice_samples // 2, 0), last_start))]

    starts, scores = _window_scores(y, start, stop, slice_samples, floor_db=floor_db,
                                    frame_length=frame_length, hop_length=hop_length)
    if starts.size == 0:
        return [int(min(start, last_start))]
    chosen = _best_disjoint(starts, scores, slice_samples, count)
    chosen.sort()
    logger.debug(
        "chose %d slices of %.2f s from body %.2f-%.2f s: %s",
        len(chosen), slice_samples / sr, start / sr, stop / sr, [round(c / sr, 2) for c in chosen],
    )  # fmt: skip
    return chosen


def _window_scores(
    y: np.ndarray, start: int, stop: int, slice_samples: int, *, floor_db: float,
    frame_length: int, hop_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every window start on the ``hop_length`` grid inside the body ``[start, stop)`` and its
    loudness (the mean of its frames' dB, floored at ``floor_db``)."""
    db = np.maximum(frame_db(y, frame_length=frame_length, hop_length=hop_length), floor_db)
    win = max(1, slice_samples // hop_length)  # frames per window
    first = -(-start // hop_length)  # first grid start inside the body
    last = (stop - slice_samples) // hop_length
    cumsum = np.concatenate([[0.0], np.cumsum(db)])
    candidates = np.arange(first, last + 1)
    candidates = candidates[candidates + win <= db.shape[0]]
    scores = (cumsum[candidates + win] - cumsum[candidates]) / win
    return candidates * hop_length, scores


def loudest_slices(
    y: np.ndarray,
    *,
    sr: int,
    slice_samples: int,
    count: int,
    body_db: float = -35.0,
    floor_db: float = -60.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> list[int]:
    """Start offsets of up to ``count`` disjoint slices of the song's body, loudest first.

    The first is :func:`choose_slices`' single slice (the loudest window); each next one is
    the loudest window that overlaps none chosen before (greedy, so the order ranks them,
    unlike :func:`choose_slices`' best set). Fewer than ``count`` when the body holds fewer;
    never empty. Parameters as :func:`choose_slices`.
    """
    if slice_samples <= 0 or count <= 0:
        raise InvalidInput(f"slice_samples={slice_samples} and count={count} must be positive")
    first = choose_slices(y, sr=sr, slice_samples=slice_samples, count=1, body_db=body_db,
                          floor_db=floor_db, frame_length=frame_length, hop_length=hop_length)
    y = np.asarray(y)
    if y.shape[0] <= slice_samples:
        return first
    start, stop = song_body(y, body_db=body_db, frame_length=frame_length, hop_length=hop_length)
    starts, scores = _window_scores(y, start, stop, slice_samples, floor_db=floor_db,
                                    frame_length=frame_length, hop_length=hop_length)
    chosen = list(first)
    for i in np.argsort(-scores, kind="stable"):
        if len(chosen) >= count:
            break
        if all(abs(int(starts[i]) - c) >= slice_samples for c in chosen):
            chosen.append(int(starts[i]))
    return chosen


def _best_disjoint(starts: np.ndarray, scores: np.ndarray, length: int, count: int) -> list[int]:
    """The disjoint windows (``length`` apart) with the highest total score.

    ``g_j[i]`` is the best total of ``j`` windows whose last one starts at ``starts[i]``;
    ``f_j = cummax(g_j)``; ``g_j[i] = f_{j-1}[p(i)] + scores[i]`` with ``p(i)`` the last
    window that ends before ``starts[i]``. Uses as many windows as fit, up to ``count``.
    """
    prev = np.searchsorted(starts, starts - length, side="right") - 1  # p(i), -1 if none
    f_prev = np.zeros(starts.size)  # j = 0: nothing chosen, total 0
    tables: list[np.ndarray] = []
    for j in range(1, count + 1):
        if j == 1:
            before = np.zeros(starts.size)
        else:
            before = np.where(prev >= 0, f_prev[np.maximum(prev, 0)], -np.inf)
        g = before + scores
        if not np.isfinite(g).any():
            break
        tables.append(g)
        f_prev = np.maximum.accumulate(g)
    chosen: list[int] = []
    limit = starts.size - 1
    for g in reversed(tables):
        i = int(np.argmax(g[: limit + 1]))
        chosen.append(int(starts[i]))
        limit = int(prev[i])
    return sorted(chosen)
