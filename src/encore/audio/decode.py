"""Decode uploaded audio (wav, flac, ogg, mp3) to float32 mono at the model's rate.

Everything goes through libsndfile (the ``soundfile`` wheel ships libsndfile 1.2, which
reads mp3 through mpg123). Every failure is one of the :class:`encore.errors.AudioError`
subclasses, with a message that names the file and the offending value:

========================  ==========================================================
``NotAudio``              empty file, random bytes, text, images, archives
``UnsupportedAudio``      a recognised format encore does not take (m4a, wma, aiff,
                          mp3-in-WAV, Speex/FLAC-in-Ogg, …)
``CorruptAudio``          truncated or damaged data, non-finite samples
``SilentAudio``           no samples, or a peak below ``silence_db``
``AudioTooShort``         shorter than ``min_seconds``
``AudioTooLong``          longer than ``max_seconds`` (checked on the header first)
========================  ==========================================================
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from encore.audio import containers
from encore.errors import (
    AudioTooLong,
    AudioTooShort,
    CorruptAudio,
    NotAudio,
    NotFound,
    SilentAudio,
    UnsupportedAudio,
)
from encore.units import apart, human_duration

logger = logging.getLogger(__name__)

AudioSource = str | Path | bytes | bytearray | memoryview

#: libsndfile major formats we accept, by the name we report.
ACCEPTED_FORMATS = {
    "WAV": "wav",
    "WAVEX": "wav",
    "RF64": "wav",
    "W64": "wav",
    "FLAC": "flac",
    "OGG": "ogg",
    "MP3": "mp3",
}

#: Default silence threshold: a peak below -60 dBFS counts as silence.
DEFAULT_SILENCE_DB = -60.0

_BLOCK_FRAMES = 1 << 18
_SNDFILE_UNRECOGNISED = 1
_SNDFILE_UNSUPPORTED_ENCODING = 4
#: An mp3 without a Xing/Info header (whose length libsndfile estimates from the bitrate)
#: that decodes to fewer samples than announced, by more than this fraction plus two mp3
#: frames, was cut short.
_MP3_SHORTFALL = 0.01


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says, before decoding.

    Attributes
    ----------
    format : str
        ``"wav"``, ``"flac"``, ``"ogg"`` or ``"mp3"``.
    subtype : str
        libsndfile's subtype (``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``, ``"OPUS"``,
        ``"MPEG_LAYER_III"`` …).
    sample_rate : int
        Samples per second per channel (Hz).
    channels : int
        Number of channels.
    frames : int
        Samples per channel announced by the header (an estimate for mp3 without a
        Xing/Info header).
    seconds : float
        ``frames / sample_rate``.
    """

    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int
    seconds: float


def _describe(source: AudioSource, name: str | None = None) -> str:
    """How messages name the file: ``name`` (the file name the listener chose) when given,
    else a path's file name, else "the audio"."""
    if name:
        return repr(name)
    if isinstance(source, str | Path):
        return f"{Path(source).name!r}"
    return "the audio"


@contextmanager
def _open_binary(source: AudioSource) -> Iterator[BinaryIO]:
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"audio file {str(path)!r} does not exist or is not a file")
        with path.open("rb") as f:
            yield f
    elif isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    else:
        raise TypeError(f"audio source must be a path or bytes, not {type(source).__name__}")


def _sndfile_error(exc: Exception, name: str, kind: str | None, head: bytes) -> Exception:
    """Translate a libsndfile error into the right AudioError."""
    import soundfile as sf

    code = exc.code if isinstance(exc, sf.LibsndfileError) else None
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    if kind == "mpeg-sync" or (code == _SNDFILE_UNRECOGNISED and kind is None):
        return NotAudio(
            f"{name} is not in an audio format encore reads (wav, flac, ogg, mp3): "
            f"it starts with {containers.describe_head(head)}"
        )
    if code == _SNDFILE_UNSUPPORTED_ENCODING:
        return UnsupportedAudio(f"{name}: unsupported encoding ({text.strip()})")
    what = kind or "audio"
    return CorruptAudio(f"{name}: damaged {what} data ({text.strip()})")


def _structural_checks(f: BinaryIO, kind: str | None, name: str) -> None:
    if kind == "wav":
        containers.check_wav(f, name)
    elif kind == "ogg":
        containers.check_ogg(f, name)
    elif kind == "aiff":
        raise UnsupportedAudio(f"{name}: AIFF files are not supported; use wav, flac, ogg or mp3")
    f.seek(0)


def _open_sndfile(f: BinaryIO, name: str, kind: str | None, head: bytes):
    import soundfile as sf

    try:
        return sf.SoundFile(f)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _sndfile_error(exc, name, kind, head) from exc


def _info_from(snd, name: str) -> AudioInfo:
    fmt = ACCEPTED_FORMATS.get(snd.format)
    if fmt is None:
        raise UnsupportedAudio(
            f"{name}: {snd.format_info} files are not supported; use wav, flac, ogg or mp3"
        )
    if snd.samplerate <= 0 or snd.channels <= 0:
        raise CorruptAudio(
            f"{name}: header declares sample rate {snd.samplerate} Hz and {snd.channels} channels"
        )
    frames = max(int(snd.frames), 0)
    return AudioInfo(
        format=fmt,
        subtype=snd.subtype,
        sample_rate=int(snd.samplerate),
        channels=int(snd.channels),
        frames=frames,
        seconds=frames / snd.samplerate,
    )


@contextmanager
def _sniffed(source: AudioSource, name: str) -> Iterator[tuple[BinaryIO, str | None, bytes]]:
    """The open file, its container kind (:func:`~encore.audio.containers.sniff` of its first
    64 bytes) and those bytes, once its structure passed :func:`_structural_checks`."""
    with _open_binary(source) as f:
        head = f.read(64)
        kind = containers.sniff(head, name)
        _structural_checks(f, kind, name)
        yield f, kind, head


def probe_audio(source: AudioSource, *, name: str | None = None) -> AudioInfo:
    """Read an audio file's header and check its structure, without decoding it.

    Parameters
    ----------
    source : str, Path or bytes
        A file path or the file's bytes.
    name : str, optional
        The file's name in error messages (default: a path's file name, or "the audio").

    Returns
    -------
    AudioInfo
        Format, sample rate, channels, frames and duration from the header.

    Raises
    ------
    NotAudio, UnsupportedAudio, CorruptAudio
        See the module docstring. A missing path raises :class:`encore.errors.NotFound`.
    """
    name = _describe(source, name)
    with _sniffed(source, name) as (f, kind, head), _open_sndfile(f, name, kind, head) as snd:
        return _info_from(snd, name)


def load_audio(
    source: AudioSource,
    *,
    sr: int,
    min_seconds: float = 0.0,
    max_seconds: float | None = 900.0,
    silence_db: float = DEFAULT_SILENCE_DB,
    max_sample_rate: int | None = None,
    max_channels: int | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decode, down-mix and resample an audio file.

    Decoding streams: each block is down-mixed and resampled as it is read, so memory
    holds the file's bytes, one block and the output at ``sr`` (never the whole file at its
    own rate: a 15-minute 96 kHz file would take 350 MB as float32, one at 655 kHz 2.4 GB).

    Parameters
    ----------
    source : str, Path or bytes
        A wav, flac, ogg (Vorbis/Opus) or mp3 file, as a path or as its bytes.
    sr : int
        Output sample rate in Hz (resampled with soxr "HQ", as ``librosa.load``).
    min_seconds : float
        Reject audio shorter than this (seconds of decoded audio).
    max_seconds : float or None
        Reject audio longer than this. Checked on the header before decoding, and again
        while decoding (headers can lie); ``None`` disables the limit.
    silence_db : float
        Reject audio whose peak is below this level in dBFS.
    max_sample_rate, max_channels : int or None
        Reject files whose header declares a higher rate (Hz) or more channels (checked
        before decoding); ``None``: no limit.
    name : str, optional
        The file's name in error messages (default: a path's file name, or "the audio").
        Durations in messages read as people read them (``0.2 s``, ``15:00``).

    Returns
    -------
    np.ndarray
        float32, shape ``(n_samples,)``, mono (mean of the channels) at ``sr``.

    Raises
    ------
    NotAudio, UnsupportedAudio, CorruptAudio, SilentAudio, AudioTooShort, AudioTooLong
        See the module docstring; a missing path raises :class:`encore.errors.NotFound`.
        ``UnsupportedAudio`` also for a rate or channel count over the limits.
    """
    import soundfile as sf

    if sr <= 0:
        raise ValueError(f"sr={sr} must be positive")
    name = _describe(source, name)
    with _sniffed(source, name) as (f, kind, head):
        exact_mp3 = kind in ("mp3", "mpeg-sync") and containers.mp3_has_length_header(f)
        f.seek(0)
        with _open_sndfile(f, name, kind, head) as snd:
            info = _info_from(snd, name)
            if max_seconds is not None and info.seconds > max_seconds:
                lasts, limit = apart(human_duration, info.seconds, max_seconds)
                raise AudioTooLong(f"{name} lasts {lasts}, longer than the limit of {limit}")
            _check_format_limits(info, name, max_sample_rate, max_channels)
            max_frames = (
                None if max_seconds is None else int(np.ceil(max_seconds * info.sample_rate))
            )
            resampler = _StreamResampler(info.sample_rate, sr)
            decoded, peak, bad = 0, 0.0, 0
            try:
                while True:
                    block = snd.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                    del block
                    decoded += mono.shape[0]
                    if max_seconds is not None and max_frames is not None and decoded > max_frames:
                        raise AudioTooLong(
                            f"{name} decodes to more than {human_duration(max_seconds)} "
                            f"(its header said {human_duration(info.seconds)})"
                        )
                    finite = np.isfinite(mono)
                    if not finite.all():
                        bad += int(np.count_nonzero(~finite))
                        mono = np.where(finite, mono, np.float32(0.0))
                    if mono.size:
                        peak = max(peak, float(np.max(np.abs(mono))))
                    resampler.push(mono)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise _sndfile_error(exc, name, info.format, head) from exc

    _check_complete(info, decoded, name, exact_mp3=exact_mp3)
    if decoded == 0:
        raise SilentAudio(f"{name} contains no samples")
    if bad:
        raise CorruptAudio(f"{name} contains {bad} non-finite (NaN/inf) samples")
    seconds = decoded / info.sample_rate
    if seconds < min_seconds:
        lasts, minimum = apart(human_duration, seconds, min_seconds)
        raise AudioTooShort(f"{name} lasts {lasts}, shorter than the minimum of {minimum}")
    peak_db = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_db < silence_db:
        raise SilentAudio(
            f"{name} is silent: its peak level is {peak_db:.1f} dBFS, below the "
            f"silence threshold of {silence_db:.1f} dBFS"
        )
    y = resampler.finish(decoded)
    logger.debug(
        "decoded %s: %s %s, %d Hz, %d ch, %.2f s -> %d samples at %d Hz",
        name, info.format, info.subtype, info.sample_rate, info.channels, seconds, y.size, sr,
    )  # fmt: skip
    return np.ascontiguousarray(y, dtype=np.float32)


def _check_format_limits(
    info: AudioInfo, name: str, max_sample_rate: int | None, max_channels: int | None
) -> None:
    if max_sample_rate is not None and info.sample_rate > max_sample_rate:
        raise UnsupportedAudio(
            f"{name} has a sample rate of {info.sample_rate} Hz, above the limit of "
            f"{max_sample_rate} Hz; convert it to 48000 Hz or less"
        )
    if max_channels is not None and info.channels > max_channels:
        raise UnsupportedAudio(
            f"{name} has {info.channels} channels, more than the limit of {max_channels}; "
            "mix it down to stereo"
        )


class _StreamResampler:
    """Resamples mono blocks as they are decoded (soxr "HQ", as :func:`resample`)."""

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        import soxr

        self.orig_sr, self.target_sr = orig_sr, target_sr
        self.stream = (
            None if orig_sr == target_sr
            else soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality="HQ")
        )
        self.out: list[np.ndarray] = []

    def push(self, mono: np.ndarray) -> None:
        chunk = np.ascontiguousarray(mono, dtype=np.float32)
        self.out.append(chunk.copy() if self.stream is None else self.stream.resample_chunk(chunk))

    def finish(self, n_in: int) -> np.ndarray:
        """The output, ``ceil(n_in * target / orig)`` samples (as :func:`resample`)."""
        if self.stream is not None:
            self.out.append(self.stream.resample_chunk(np.zeros(0, np.float32), last=True))
        y = np.concatenate(self.out) if self.out else np.zeros(0, np.float32)
        self.out = []
        n = int(np.ceil(n_in * self.target_sr / self.orig_sr))
        if y.shape[0] > n:
            return y[:n]
        if y.shape[0] < n:
            return np.pad(y, (0, n - y.shape[0]))
        return y


def _check_complete(info: AudioInfo, decoded: int, name: str, *, exact_mp3: bool) -> None:
    """Compare the decoded length with what the header announced.

    ``exact_mp3``: the mp3 has a Xing/Info/VBRI header, so its count is exact.
    """
    if info.frames <= 0 or decoded >= info.frames:
        return
    if info.format == "mp3" and not exact_mp3:
        slack = 2 * 1152 + _MP3_SHORTFALL * info.frames
        if info.frames - decoded <= slack:
            return
    elif info.format == "wav":
        return  # check_wav has already compared the data chunk with the file size
    raise CorruptAudio(
        f"{name} is truncated or damaged: its header announces {info.frames} samples, "
        f"only {decoded} could be decoded"
    )


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono audio with soxr (``"HQ"``, librosa's default ``soxr_hq``).

    Parameters
    ----------
    y : np.ndarray
        float32 samples, shape ``(n,)``.
    orig_sr, target_sr : int
        Rates in Hz.

    Returns
    -------
    np.ndarray
        float32, shape ``(ceil(n * target_sr / orig_sr),)``.
    """
    import soxr

    if orig_sr == target_sr:
        return y
    out = soxr.resample(y, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    n = int(np.ceil(y.shape[0] * target_sr / orig_sr))
    if out.shape[0] > n:
        return out[:n]
    if out.shape[0] < n:
        return np.pad(out, (0, n - out.shape[0]))
    return out
