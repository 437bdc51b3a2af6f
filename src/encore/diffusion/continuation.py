"""Pieces longer than the model's canvas: window geometry, the seed schedule, the audio join.

A piece of ``seconds`` is a timeline of mel frames made window by window; every window is
one canvas of the model (``window`` frames, ``Settings.clip_seconds``). Window 0 is made as
a clip of that length is; every later window starts ``stride = window − overlap`` frames
after the previous one (the last one is moved back so that it ends at the end of the
piece), and its first frames — those the earlier windows already made — are fixed while it
is sampled (:func:`encore.diffusion.sampling.inpaint`). A loop is a timeline ``overlap``
frames longer than the piece whose last ``overlap`` frames are fixed to the first window's
first ``overlap`` frames: the piece's end continues into its beginning.

Joins fall where the music is calm: window ``k``'s fixed head ends at the calmest frame of
the second half of its overlap (:func:`choose_cut`), and the window re-makes what follows.

Each window is vocoded on its own (the vocoder's phase differs from window to window
although the mel frames of an overlap are the same), and consecutive windows are joined by
an equal-power crossfade of ``crossfade`` seconds at the calmest moment of the frames both
hold (:func:`crossfade_centre`, :func:`join_windows`); a loop's tail is crossfaded into its
head in the middle of that overlap. Nothing else touches the audio: no fade inside a piece.

The engine (:meth:`encore.diffusion.engine.Engine.piece_batch`) runs the sampler; this
module is the arithmetic, pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from encore.errors import InvalidInput

_GOLDEN = 0x9E3779B97F4A7C15


def window_seed(seed: int, k: int) -> int:
    """The seed of window ``k`` of a piece with seed ``seed`` (window 0: ``seed`` itself).

    The same schedule for generation and variations, so that window 0 of a piece is the
    clip that ``seed`` makes at the canvas length, and every later window has its own noise.
    """
    if k == 0:
        return int(seed)
    return (int(seed) + k * _GOLDEN) % (2**63)


@dataclass(frozen=True)
class PieceLayout:
    """Where each window of a piece lies on its timeline of mel frames.

    Attributes
    ----------
    frames : int
        Frames of the piece (the loop's period for a loop).
    timeline : int
        Frames made: ``frames`` (+ ``overlap`` for a loop, whose tail repeats the head).
    window : int
        Frames of one window (the canvas).
    overlap : int
        Frames a window shares with the previous one at least (the last may share more).
    starts : tuple of int
        First frame of each window on the timeline.
    loop : bool
    """

    frames: int
    timeline: int
    window: int
    overlap: int
    starts: tuple[int, ...]
    loop: bool

    @property
    def windows(self) -> int:
        return len(self.starts)

    def known_frames(self, k: int) -> tuple[int, int]:
        """``(head, tail)``: window ``k``'s first ``head`` frames repeat the windows before
        it; its last ``tail`` frames repeat the first window's head (the loop's last window)."""
        if k == 0:
            return 0, 0
        prev_end = self.starts[k - 1] + self.window
        head = prev_end - self.starts[k]
        tail = self.overlap if (self.loop and k == self.windows - 1) else 0
        return head, tail


def layout(frames: int, window: int, overlap: int, *, loop: bool = False) -> PieceLayout:
    """The windows of a piece of ``frames`` mel frames.

    Raises
    ------
    InvalidInput
        When ``overlap`` leaves a window nothing new to make, or a loop's last window has no
        free frame between what it continues and what it must join.
    """
    if window < 2 or not 0 < overlap < window:
        raise InvalidInput(f"overlap={overlap} frames must be in (0, window={window})")
    if frames < 1:
        raise InvalidInput(f"a piece needs at least one frame, got {frames}")
    timeline = frames + (overlap if loop else 0)
    stride = window - overlap
    # the fewest windows that cover the timeline, spread evenly: every window shares at
    # least ``overlap`` frames with the one before it
    gaps = max(0, -(-(timeline - window) // stride))
    starts = [0] + [int(round(k * (timeline - window) / gaps)) for k in range(1, gaps + 1)]
    lay = PieceLayout(frames, max(timeline, window), window, overlap, tuple(starts), loop)
    if loop:
        free = window - sum(lay.known_frames(lay.windows - 1)) if lay.windows > 1 else 0
        if free < overlap:
            raise InvalidInput(
                f"a loop of {frames} frames is too short: its last window would make only "
                f"{max(free, 0)} new frames between what it continues and the loop's start "
                f"(at least {overlap} are needed; ask for a longer piece)"
            )
    return lay


def ramp_frames(lay: PieceLayout) -> int:
    """Frames at the inner edge of a fixed region where the mask falls from 1 to 0
    (a quarter of the overlap): there the window's own frames are blended with the fixed
    ones at every step, instead of meeting them at a hard edge."""
    return lay.overlap // 4


def window_mask(lay: PieceLayout, k: int, head: int | None = None) -> np.ndarray:
    """``(window,)`` float32: 1 where window ``k``'s frames are fixed, 0 where it makes them,
    falling linearly over :func:`ramp_frames` at the inner edge of each fixed region.

    ``head`` (default ``lay.known_frames(k)[0]``): how many of its first frames are fixed
    (:func:`choose_cut` moves the end of the fixed head back to a calm frame)."""
    m = np.zeros(lay.window, dtype=np.float32)
    head, tail = _head(lay, k, head), lay.known_frames(k)[1]
    r = ramp_frames(lay)
    fall = (np.arange(r, 0, -1, dtype=np.float32) / (r + 1)) if r else np.zeros(0, np.float32)
    if head:
        m[:head] = 1.0
        m[head - r : head] = fall
    if tail:
        m[lay.window - tail :] = 1.0
        m[lay.window - tail : lay.window - tail + r] = fall[::-1]
    return m


def _head(lay: PieceLayout, k: int, head: int | None) -> int:
    most = lay.known_frames(k)[0]
    if head is None:
        return most
    if k == 0 or not ramp_frames(lay) <= head <= most:
        raise InvalidInput(f"window {k} may fix {ramp_frames(lay)}..{most} head frames, not {head}")
    return int(head)


def known_image(lay: PieceLayout, k: int, timeline: np.ndarray, head: int | None = None) -> np.ndarray:
    """Window ``k``'s fixed frames taken from ``timeline`` (``(..., H, timeline)``, what the
    earlier windows made), zeros where it is free; shape ``(..., H, window)``."""
    out = np.zeros((*timeline.shape[:-1], lay.window), dtype=timeline.dtype)
    head, tail = _head(lay, k, head), lay.known_frames(k)[1]
    s = lay.starts[k]
    out[..., :head] = timeline[..., s : s + head]
    if tail:
        out[..., lay.window - tail :] = timeline[..., :tail]
    return out


def frame_flux(image: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """The spectral flux of spectrogram images, one value per frame.

    ``image``: ``(..., H, T)`` in the model's scale, [-1, 1] (grey level ↦ dB relative to the
    maximum, ``top_db`` of range). Each bin's level is compressed as :func:`spectral_flux`
    compresses an STFT's magnitudes (``log1p(100 · amplitude)``, so that a rise in a bin near
    the floor counts for little, as it sounds), and the half-wave rectified rise from frame
    ``t − 1`` to ``t`` is summed over the bins (frame 0: 0) and averaged over any leading
    axes (a batch). Returns ``(T,)``.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] < 1:
        raise InvalidInput(f"frame_flux needs (..., H, T) images, got shape {x.shape}")
    db = (np.clip(x, -1.0, 1.0) + 1.0) * (top_db / 2.0) - top_db
    mag = np.log1p(100.0 * np.power(10.0, db / 20.0))
    rise = np.maximum(np.diff(mag, axis=-1), 0.0).sum(axis=-2)
    rise = rise.reshape(-1, rise.shape[-1]).mean(axis=0)
    return np.concatenate([[0.0], rise])


def calmest(score: np.ndarray, lo: int, hi: int, width: int) -> int:
    """The frame ``t`` in ``[lo, hi]`` where the mean of ``score`` over the ``width`` frames
    ``[t − width // 2, t − width // 2 + width)`` is least (the latest on ties; ``hi`` when
    ``hi <= lo``). Frames outside ``score`` count as its edge values."""
    if hi <= lo:
        return int(hi)
    w = max(1, int(width))
    pad = np.pad(np.asarray(score, dtype=np.float64), (w, w), mode="edge")
    c = np.concatenate([[0.0], np.cumsum(pad)])
    t = np.arange(lo, hi + 1)
    a = t - w // 2 + w  # into ``pad``
    means = (c[a + w] - c[a]) / w
    return int(t[::-1][int(np.argmin(means[::-1]))])


def _normalised(x: np.ndarray) -> np.ndarray:
    scale = float(np.median(x[x > 0])) if np.any(x > 0) else 1.0
    return x / scale


def choose_cut(
    lay: PieceLayout, k: int, made: np.ndarray, width: int, guide: np.ndarray | None = None
) -> int:
    """Where window ``k``'s fixed head ends (its head length): at the calmest moment of the
    second half of its overlap with window ``k − 1``.

    A boundary that falls on a note's attack measures (and sounds) like a seam even when the
    frames join perfectly, so the join is put where the music is calm: the ``width``-frame
    mean of the spectral flux (:func:`frame_flux`) of ``made`` (the timeline's frames made so
    far, ``(T,)`` flux on the timeline) plus, when given, that of ``guide`` (``(window,)``
    flux of what window ``k`` is to follow: the song's stretch of a variation) is least.
    Window ``k`` then re-makes the previous window's frames after the cut (the ramp of
    :func:`ramp_frames` before it). At least half the head stays fixed, and room for the
    crossfade before the ramp (:func:`crossfade_centre`).
    """
    head = lay.known_frames(k)[0]
    s = lay.starts[k]
    prev_end = s + head
    w = max(1, int(width))
    # keep at least half the head fixed, and room before the ramp for the crossfade
    lo = max(s + (head + 1) // 2, s + lay.overlap // 4 + ramp_frames(lay) + w + 1)
    hi = prev_end - (w + 1) // 2  # the flux is known across the whole averaging width
    score = _normalised(np.asarray(made, dtype=np.float64)[:prev_end])
    if guide is not None:
        g = np.zeros(prev_end)
        g[s:] = _normalised(np.asarray(guide, dtype=np.float64))[: prev_end - s]
        g[:s] = g[s]
        score = score + g
    return calmest(score, lo, hi, w) - s


def crossfade_centre(lay: PieceLayout, k: int, head: int, flux: np.ndarray, width: int) -> int:
    """The frame (on the timeline) at the centre of the crossfade into window ``k``: the
    calmest moment (``flux`` of the finished timeline, :func:`calmest`) of the frames both
    windows hold identically (its fixed ``head`` before the ramp), at least a quarter of the
    overlap after window ``k``'s first frame (the vocoder's edge)."""
    s = lay.starts[k]
    w = max(1, int(width))
    lo = s + lay.overlap // 4
    hi = s + head - ramp_frames(lay) - (w + 1) // 2
    if hi < lo:
        return s + (head - ramp_frames(lay)) // 2
    return calmest(flux, lo, hi, w)


def place(lay: PieceLayout, k: int, timeline: np.ndarray, image: np.ndarray) -> None:
    """Write window ``k``'s frames (``(..., H, window)``) onto ``timeline`` in place."""
    s = lay.starts[k]
    timeline[..., s : s + lay.window] = image


def _fade(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power fade-out and fade-in of ``n`` samples (their squares sum to 1)."""
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.cos(0.5 * math.pi * x).astype(np.float32), np.sin(0.5 * math.pi * x).astype(np.float32)


def _splice(a: np.ndarray, b: np.ndarray, centre: int, n: int) -> np.ndarray:
    """``a`` before ``centre − n/2``, ``b`` after ``centre + n/2``, an equal-power crossfade
    between (``a`` and ``b`` are ``(..., length)`` on the same time axis)."""
    out = b.copy()
    lo = max(centre - n // 2, 0)
    hi = min(lo + n, a.shape[-1])
    out[..., :lo] = a[..., :lo]
    if hi > lo:
        fo, fi = _fade(hi - lo)
        out[..., lo:hi] = a[..., lo:hi] * fo + b[..., lo:hi] * fi
    return out


def join_windows(
    lay: PieceLayout, audio: np.ndarray, hop: int, crossfade: int,
    centres: list[int] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Join the windows' audio into the piece's.

    Parameters
    ----------
    audio : np.ndarray
        ``(windows, B, n)`` or ``(windows, n)``: each window vocoded alone, ``n =
        (window − 1) · hop`` samples, frame ``j`` of a window at sample ``j · hop``.
    hop : int
        Samples per frame.
    crossfade : int
        Samples of each equal-power crossfade (at most the overlap's samples).
    centres : list of int, optional
        The sample (on the piece's time axis) at the middle of each join's crossfade
        (:func:`crossfade_centre`); default the middle of each overlap.

    Returns
    -------
    (audio, seams)
        ``(B, (frames − 1) · hop)`` (a loop: ``frames · hop``; or 1-D for 1-D input),
        and the sample of the middle of
        every crossfade (the seams; a loop's last seam is its tail's, near sample 0).
    """
    a = np.asarray(audio, dtype=np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[:, None]
    if a.shape[0] != lay.windows:
        raise InvalidInput(f"got audio of {a.shape[0]} windows for a layout of {lay.windows}")
    if centres is not None and len(centres) != lay.windows - 1:
        raise InvalidInput(f"got {len(centres)} crossfade centres for {lay.windows - 1} joins")
    n_win = a.shape[-1]
    total = (lay.timeline - 1) * hop + 1
    line = np.zeros((a.shape[1], max(total, lay.starts[-1] * hop + n_win)), dtype=np.float32)
    line[..., : n_win] = a[0]
    seams = []
    for k in range(1, lay.windows):
        s = lay.starts[k] * hop
        prev_end = (lay.starts[k - 1] + lay.window - 1) * hop
        centre = (s + prev_end) // 2 if centres is None else int(centres[k - 1])
        if not s <= centre <= prev_end:
            raise InvalidInput(f"crossfade centre {centre} is outside overlap {k} ({s}..{prev_end})")
        n = max(1, min(crossfade, 2 * (centre - s), 2 * (prev_end - centre)))
        nxt = line.copy()
        nxt[..., s : s + n_win] = a[k]
        line = _splice(line, nxt, centre, n)
        seams.append(centre)
    # a loop's period is ``frames`` hops; a piece ends at its last frame's sample
    length = lay.frames * hop if lay.loop else (lay.frames - 1) * hop
    if lay.loop:
        # the timeline's frames [frames, frames + overlap) repeat frames [0, overlap): fade the
        # tail's audio into the head's in the middle of that overlap.
        ov = lay.overlap * hop
        tail = line[..., length : length + ov]
        head = line[..., :ov]
        centre = ov // 2
        n = max(1, min(crossfade, ov))
        mixed = _splice(tail, head, centre, n)
        out = line[..., :length].copy()
        out[..., :ov] = mixed
        seams.append(centre)
    else:
        out = line[..., :length]
        if out.shape[-1] < length:
            out = np.pad(out, ((0, 0), (0, length - out.shape[-1])))
    out = np.ascontiguousarray(out, dtype=np.float32)
    return (out[0] if squeeze else out), seams


def spectral_flux(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Half-wave rectified spectral flux of mono audio, one value per STFT hop after the
    first: ``Σ_f max(|X_t(f)| − |X_{t−1}(f)|, 0)`` over log-compressed magnitudes.

    The frame ``i`` of the result is the change from frame ``i`` to ``i + 1``, centred at
    sample ``(i + 1) · hop``.
    """
    y = np.asarray(audio, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] < n_fft:
        raise InvalidInput(f"spectral flux needs mono audio of at least {n_fft} samples")
    win = np.hanning(n_fft)
    n = 1 + (y.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    mag = np.log1p(100.0 * np.abs(np.fft.rfft(y[idx] * win, axis=1)))
    return np.maximum(np.diff(mag, axis=0), 0.0).sum(axis=1)


def seam_flux(
    audio: np.ndarray, seams: list[int], *, span: int, n_fft: int = 1024, hop: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Spectral flux averaged over ``span`` samples: at each seam, and everywhere else.

    Returns
    -------
    (at_seams, inside)
        The mean flux of the ``span`` samples centred on each seam, and the same mean at
        every position whose span lies at least ``span`` samples from every seam (inside the
        windows): a seam is inaudible by this measure when its value lies within the bulk of
        ``inside`` (e.g. below its 95th percentile).
    """
    flux = spectral_flux(audio, n_fft, hop)
    w = max(1, int(round(span / hop)))
    smooth = np.convolve(flux, np.ones(w) / w, mode="valid")
    centres = (np.arange(smooth.shape[0]) + 1) * hop + (w - 1) * hop / 2
    far = np.ones(smooth.shape[0], dtype=bool)
    at = []
    for c in seams:
        far &= np.abs(centres - c) >= 1.5 * span
        at.append(float(smooth[int(np.argmin(np.abs(centres - c)))]))
    return np.asarray(at), smooth[far]
