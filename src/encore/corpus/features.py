"""Stored spectrograms of corpus pieces and the choice of their non-silent slices."""

from __future__ import annotations

import numpy as np

from encore.audio.mel import MelConfig

#: The stored dB mel is floored here (dB relative to the piece's maximum).
FLOOR_DB = -100.0
#: A frame is active when its total mel power is within this many dB of the piece's
#: loudest frame.
ACTIVE_DB = -45.0
#: A slice is kept when at least this share of its frames are active.
MIN_ACTIVE_SHARE = 0.5


def piece_mel_db(audio: np.ndarray, config: MelConfig) -> np.ndarray:
    """dB mel of a whole piece relative to its maximum, floored at :data:`FLOOR_DB`.

    Parameters
    ----------
    audio : np.ndarray
        float32 mono, shape ``(n_samples,)``, at ``config.sample_rate``.
    config : MelConfig
        ``y_res`` mel bands, ``n_fft``, ``hop_length``.

    Returns
    -------
    np.ndarray
        float16, shape ``(y_res, 1 + n_samples // hop_length)``, values in [-100, 0].
    """
    from encore.audio.mel import mel_db

    db = mel_db(np.asarray(audio, dtype=np.float32), config)
    return np.maximum(db, FLOOR_DB).astype(np.float16)


def frame_level_db(db: np.ndarray) -> np.ndarray:
    """Per-frame total power in dB relative to the loudest frame, shape ``(frames,)``."""
    power = np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0).sum(axis=0)
    return 10.0 * np.log10(np.maximum(power, 1e-30) / max(float(power.max()), 1e-30))


def select_slices(
    db: np.ndarray,
    width: int,
    *,
    active_db: float = ACTIVE_DB,
    min_active_share: float = MIN_ACTIVE_SHARE,
) -> list[int]:
    """Start frames of the non-overlapping, not (near-)silent ``width``-frame windows.

    Windows start at 0, ``width``, ``2 * width`` … while they fit in the piece; a window
    is kept when at least ``min_active_share`` of its frames are within ``active_db`` of
    the piece's loudest frame.

    Parameters
    ----------
    db : np.ndarray
        dB mel ``(n_mels, frames)`` (any reference).
    width : int
        Window width in frames.

    Returns
    -------
    list of int
        Ascending start frames.
    """
    n_frames = db.shape[1]
    if n_frames < width:
        return []
    active = frame_level_db(db) >= active_db
    starts = []
    for start in range(0, n_frames - width + 1, width):
        if active[start : start + width].mean() >= min_active_share:
            starts.append(start)
    return starts
