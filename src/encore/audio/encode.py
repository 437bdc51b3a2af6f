"""Encode clips for the browser (ogg/Vorbis or mp3) and for download (16-bit wav)."""

from __future__ import annotations

import io
import logging
from typing import Literal

import numpy as np

from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

AudioFormat = Literal["wav", "ogg", "mp3"]

#: (libsndfile format, subtype, MIME type) per output format.
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}

#: Peak level after normalisation, in dBFS. Lossy codecs overshoot the input peak a
#: little (ringing of the dropped high bands), so they get more headroom.
PEAK_DBFS: dict[str, float] = {"wav": -0.5, "ogg": -1.0, "mp3": -1.0}

#: Sample rates the mp3 encoder (LAME, MPEG-1/2/2.5 layer III) accepts.
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def mime_type(format: AudioFormat) -> str:
    """The MIME type of an output format (``audio/wav``, ``audio/ogg``, ``audio/mpeg``)."""
    if format not in FORMATS:
        raise InvalidInput(f"audio format {format!r} is not one of {sorted(FORMATS)}")
    return FORMATS[format][2]


def peak_normalize(y: np.ndarray, peak_dbfs: float = -1.0) -> np.ndarray:
    """Scale audio so that its peak sits at ``peak_dbfs`` (silence stays silence).

    Parameters
    ----------
    y : np.ndarray
        Audio, any shape, finite.
    peak_dbfs : float
        Target peak level in dBFS (≤ 0).

    Returns
    -------
    np.ndarray
        float32, same shape, ``max|y| = 10**(peak_dbfs/20)`` unless ``y`` is all zeros.
    """
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak == 0.0:
        return y.copy()
    return (y * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def encode_audio(
    y: np.ndarray,
    *,
    sr: int,
    format: AudioFormat,
    normalize: bool = True,
    quality: float = 0.6,
) -> bytes:
    """Encode a clip to file bytes.

    Parameters
    ----------
    y : np.ndarray
        float audio in [-1, 1], shape ``(n,)`` (mono) or ``(n, channels)``.
    sr : int
        Sample rate in Hz (for mp3 one of :data:`MP3_RATES`).
    format : {"wav", "ogg", "mp3"}
        ``"wav"``: 16-bit PCM, for download; ``"ogg"`` (Vorbis) and ``"mp3"``: for the
        browser.
    normalize : bool
        Peak-normalise to :data:`PEAK_DBFS` first (never clips); if False, samples
        beyond ±1 raise instead of clipping silently.
    quality : float
        Lossy codecs only: 0 (smallest) … 1 (best), libsndfile's compression level
        inverted.

    Returns
    -------
    bytes
        The complete file.

    Raises
    ------
    InvalidInput
        Empty or non-finite audio, bad shape, unknown format, unsupported mp3 rate,
        un-normalised samples beyond ±1.
    """
    import soundfile as sf

    if format not in FORMATS:
        raise InvalidInput(f"audio format {format!r} is not one of {sorted(FORMATS)}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise InvalidInput(f"audio must have shape (n,) or (n, channels) with n > 0, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidInput(f"audio contains {int(np.sum(~np.isfinite(y)))} non-finite samples")
    if sr <= 0:
        raise InvalidInput(f"sample rate {sr} must be positive")
    if format == "mp3" and sr not in MP3_RATES:
        raise InvalidInput(f"mp3 cannot be encoded at {sr} Hz; use one of {MP3_RATES}")
    if not 0.0 <= quality <= 1.0:
        raise InvalidInput(f"quality={quality} must be in [0, 1]")
    if normalize:
        y = peak_normalize(y, PEAK_DBFS[format])
    else:
        peak = float(np.max(np.abs(y)))
        if peak > 1.0:
            raise InvalidInput(f"audio peak {peak:.3f} exceeds 1.0 and normalize=False")
    major, subtype, _ = FORMATS[format]
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if format != "wav":
        options["compression_level"] = 1.0 - quality
    try:
        sf.write(buffer, y, sr, format=major, subtype=subtype, **options)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidInput(
            f"cannot encode {y.shape} samples at {sr} Hz as {format}: {exc}"
        ) from exc
    data = buffer.getvalue()
    logger.debug("encoded %d samples at %d Hz as %s: %d bytes", y.shape[0], sr, format, len(data))
    return data
