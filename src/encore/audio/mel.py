"""The mel-spectrogram codec in the ``teticio/audio-diffusion`` format.

An audio slice of ``x_res * hop_length - 1`` samples becomes a ``y_res × x_res`` image:
power mel spectrogram (librosa, ``n_mels = y_res``, fmax = sr/2, centred frames) → dB
relative to the slice's own maximum, clipped at ``-top_db`` → grey levels
``(dB + top_db) * 255 / top_db``. Row 0 is the *lowest* mel band (the image is upside
down compared with the usual display), exactly as in the reference.

Images travel through the model as floats in [-1, 1] (``pixels / 127.5 - 1``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from encore.errors import InvalidInput

MEL_CONFIG_FILE = "mel_config.json"


@dataclass(frozen=True)
class MelConfig:
    """Spectrogram settings; they travel with a model (``mel_config.json``).

    Defaults are the audio-diffusion 256 format: 256×256 images of 5.94 s at 22 050 Hz.
    """

    x_res: int = 256
    y_res: int = 256
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    top_db: float = 80.0
    n_iter: int = 32

    def __post_init__(self) -> None:
        for name in ("x_res", "y_res", "sample_rate", "n_fft", "hop_length", "n_iter"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"MelConfig.{name}={value!r} must be a positive integer")
        if self.top_db <= 0:
            raise InvalidInput(f"MelConfig.top_db={self.top_db!r} must be > 0")

    @property
    def slice_samples(self) -> int:
        """Samples per image slice (``x_res * hop_length - 1``, as the reference)."""
        return self.x_res * self.hop_length - 1

    @property
    def slice_seconds(self) -> float:
        return self.slice_samples / self.sample_rate

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def frames_for_seconds(self, seconds: float) -> int:
        """Image width (frames) that covers ``seconds`` of audio."""
        return int(np.ceil(seconds * self.sample_rate / self.hop_length))

    def replace(self, **changes: Any) -> MelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write ``mel_config.json`` into ``directory`` (created if missing)."""
        path = Path(directory) / MEL_CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"_class_name": "Mel", **self.to_dict()}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> MelConfig:
        """Read a ``mel_config.json`` (ours, or diffusers' ``mel/mel_config.json``).

        ``path`` may be the file or a folder holding it (directly or under ``mel/``).
        """
        p = Path(path)
        if p.is_dir():
            candidates = [p / MEL_CONFIG_FILE, p / "mel" / MEL_CONFIG_FILE]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise InvalidInput(f"no {MEL_CONFIG_FILE} in {p} or {p / 'mel'}")
            p = found[0]
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"cannot read mel config {p}: {exc}") from exc
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@lru_cache(maxsize=16)
def mel_filterbank(config: MelConfig) -> np.ndarray:
    """The librosa mel filter bank for ``config``, shape ``(y_res, n_fft // 2 + 1)``."""
    import librosa

    return librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.y_res)


# --- the codec ---------------------------------------------------------------------------

#: librosa's ``power_to_db`` floor (amplitude squared).
AMIN = 1e-10
#: Slices per STFT batch in :func:`audio_to_images` and frames per chunk in :func:`mel_db`
#: (bounds the memory of a 15-minute song).
_SLICES_PER_BATCH = 16
_FRAMES_PER_CHUNK = 4096


def _check_config(config: object) -> MelConfig:
    if not isinstance(config, MelConfig):
        raise TypeError(f"config must be a MelConfig, not {type(config).__name__}")
    return config


def _mono(y: np.ndarray) -> np.ndarray:
    """``y`` as float32 mono audio of shape ``(n_samples,)``; InvalidInput for any other shape."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise InvalidInput(f"audio must be mono with shape (n_samples,), got shape {y.shape}")
    return y


def mel_power(y: np.ndarray, config: MelConfig) -> np.ndarray:
    """Power mel spectrogram exactly as ``librosa.feature.melspectrogram`` computes it.

    Parameters
    ----------
    y : np.ndarray
        Audio, shape ``(..., n_samples)``, at ``config.sample_rate``.
    config : MelConfig

    Returns
    -------
    np.ndarray
        float32, shape ``(..., y_res, 1 + n_samples // hop_length)``: Hann-windowed STFT,
        centred frames with zero padding, ``|X|²`` through the mel filter bank.
    """
    import librosa

    config = _check_config(config)
    y = np.asarray(y, dtype=np.float32)
    spec = librosa.stft(
        y, n_fft=config.n_fft, hop_length=config.hop_length, center=True, pad_mode="constant"
    )
    power = np.abs(spec) ** 2
    return np.matmul(mel_filterbank(config), power)


def power_to_relative_db(power: np.ndarray, axes: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """``10 log10(max(P, amin)) - 10 log10(max(max P, amin))`` over ``axes`` (no clipping)."""
    ref = np.maximum(np.max(power, axis=axes, keepdims=True), AMIN)
    return (10.0 * np.log10(np.maximum(power, AMIN)) - 10.0 * np.log10(ref)).astype(np.float32)


def _db_to_pixels(db: np.ndarray, top_db: float) -> np.ndarray:
    """dB relative to the max (≤ 0) → uint8 grey levels, as the reference rounds them."""
    db = np.maximum(db, -top_db)
    return (((db + top_db) * 255.0 / top_db).clip(0, 255) + 0.5).astype(np.uint8)


def _fit_slice(y: np.ndarray, config: MelConfig) -> np.ndarray:
    n = y.shape[-1]
    if n > config.slice_samples:
        raise InvalidInput(f"an audio slice holds at most {config.slice_samples} samples, got {n}")
    if n < config.slice_samples:
        pad = [(0, 0)] * (y.ndim - 1) + [(0, config.slice_samples - n)]
        y = np.pad(y, pad)
    return y


def audio_slice_to_image(y_slice: np.ndarray, config: MelConfig) -> np.ndarray:
    """One slice of audio → one spectrogram image, as ``diffusers.Mel.audio_slice_to_image``.

    Parameters
    ----------
    y_slice : np.ndarray
        Mono audio at ``config.sample_rate``, shape ``(n,)`` or ``(batch, n)`` with
        ``n <= config.slice_samples`` (shorter slices are zero-padded at the end).
    config : MelConfig

    Returns
    -------
    np.ndarray
        uint8, shape ``(y_res, x_res)`` (or ``(batch, y_res, x_res)``); row 0 is the lowest
        mel band; 255 is the slice's own maximum, 0 is ``top_db`` below it or quieter.
    """
    config = _check_config(config)
    y = _fit_slice(np.asarray(y_slice, dtype=np.float32), config)
    db = power_to_relative_db(mel_power(y, config))
    return _db_to_pixels(db, config.top_db)


def audio_to_images(y: np.ndarray, config: MelConfig) -> np.ndarray:
    """Cut audio into consecutive, non-overlapping slices and turn each into an image.

    As the reference: slice ``i`` is ``y[i * slice_samples:(i + 1) * slice_samples]``; a
    final remainder shorter than a slice is dropped; audio shorter than one slice is
    zero-padded to one slice.

    Parameters
    ----------
    y : np.ndarray
        Mono audio, shape ``(n_samples,)``, at ``config.sample_rate``.
    config : MelConfig

    Returns
    -------
    np.ndarray
        uint8, shape ``(n_slices, y_res, x_res)``, ``n_slices = max(1, n // slice_samples)``.
    """
    config = _check_config(config)
    y = _mono(y)
    size = config.slice_samples
    n_slices = y.shape[0] // size
    if n_slices == 0:
        return audio_slice_to_image(y[None, :], config)
    slices = y[: n_slices * size].reshape(n_slices, size)
    out = np.empty((n_slices, config.y_res, config.x_res), dtype=np.uint8)
    for start in range(0, n_slices, _SLICES_PER_BATCH):
        stop = min(start + _SLICES_PER_BATCH, n_slices)
        out[start:stop] = audio_slice_to_image(slices[start:stop], config)
    return out


def mel_db(y: np.ndarray, config: MelConfig) -> np.ndarray:
    """Power mel spectrogram of a whole piece in dB relative to the piece's maximum.

    No ``top_db`` clipping (only librosa's floor ``amin = 1e-10``), so that any crop can
    later be normalised to its own maximum by :func:`normalize_db_crop`. ``y`` and
    ``config`` as :func:`audio_to_images`.

    Returns
    -------
    np.ndarray
        float32, shape ``(y_res, 1 + n_samples // hop_length)``, values ≤ 0 dB. Frames are
        centred (frame ``t`` is centred on sample ``t * hop_length``, zero padding at the
        ends), as in :func:`audio_slice_to_image`.
    """
    import librosa

    config = _check_config(config)
    y = _mono(y)
    hop, n_fft = config.hop_length, config.n_fft
    n_frames = 1 + y.shape[0] // hop
    padded = np.pad(y, (n_fft // 2, n_fft // 2))
    basis = mel_filterbank(config)
    power = np.empty((config.y_res, n_frames), dtype=np.float32)
    for a in range(0, n_frames, _FRAMES_PER_CHUNK):
        b = min(a + _FRAMES_PER_CHUNK, n_frames)
        segment = padded[a * hop : (b - 1) * hop + n_fft]
        spec = librosa.stft(segment, n_fft=n_fft, hop_length=hop, center=False)
        power[:, a:b] = basis @ (np.abs(spec) ** 2)
    return power_to_relative_db(power)


def normalize_db_crop(db_crop: np.ndarray, config: MelConfig) -> np.ndarray:
    """A crop of :func:`mel_db` → a model image in [-1, 1].

    Normalises the crop to its own maximum, clips at ``-top_db`` and maps linearly, so
    that on the same audio it equals ``audio_slice_to_image(...) / 127.5 - 1`` up to the
    uint8 rounding (≤ 0.5 grey level, i.e. ≤ 1/255 here).

    Parameters
    ----------
    db_crop : np.ndarray
        dB values, shape ``(..., y_res, width)``; the maximum is taken over the last two
        axes.
    config : MelConfig

    Returns
    -------
    np.ndarray
        float32, same shape, in [-1, 1].
    """
    config = _check_config(config)
    db = np.asarray(db_crop, dtype=np.float32)
    db = db - np.max(db, axis=(-2, -1), keepdims=True)
    db = np.maximum(db, -config.top_db)
    return ((db + config.top_db) * (2.0 / config.top_db) - 1.0).astype(np.float32)


def images_to_unit(images: Any) -> Any:
    """uint8 grey levels → float32 in [-1, 1] (``x / 127.5 - 1``); numpy or torch."""
    if hasattr(images, "detach"):
        return images.float() / 127.5 - 1.0
    return (np.asarray(images, dtype=np.float32) / 127.5 - 1.0).astype(np.float32)


def unit_to_images(x: Any) -> Any:
    """Floats in [-1, 1] → uint8 grey levels (clipped and rounded, as the pipeline); numpy or torch."""
    if hasattr(x, "detach"):
        import torch

        return ((x.detach().float() + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return np.round(np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5, 0, 255)).astype(
        np.uint8
    )


def image_to_db(image: np.ndarray, config: MelConfig) -> np.ndarray:
    """uint8 grey levels → dB relative to the slice maximum, in ``[-top_db, 0]`` (float64)."""
    config = _check_config(config)
    return np.asarray(image).astype(np.float64) * config.top_db / 255.0 - config.top_db


def image_to_mel_power(image: np.ndarray, config: MelConfig) -> np.ndarray:
    """uint8 image(s) → power mel spectrogram(s) with maximum 1 (float64, same shape)."""
    return np.power(10.0, image_to_db(image, config) / 10.0)


def image_to_audio(image: np.ndarray, config: MelConfig, *, vocoder: object = "fast") -> np.ndarray:
    """Spectrogram image(s) → audio via Griffin-Lim.

    Parameters
    ----------
    image : np.ndarray
        uint8, shape ``(y_res, width)`` or ``(batch, y_res, width)`` (any width).
    config : MelConfig
    vocoder : {"fast", "librosa"} or GriffinLim
        ``"fast"``: the batched torch vocoder of :mod:`encore.audio.vocoder` with its
        defaults on the CPU; ``"librosa"``: the reference
        (``librosa.feature.inverse.mel_to_audio`` with ``config.n_iter`` iterations, as
        ``diffusers.Mel.image_to_audio``); or a :class:`~encore.audio.vocoder.GriffinLim`
        (choose device and iterations there).

    Returns
    -------
    np.ndarray
        float32, shape ``((width - 1) * hop_length,)`` or ``(batch, (width - 1) * hop_length)``;
        not loudness-normalised.
    """
    from encore.audio import vocoder as voc

    config = _check_config(config)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InvalidInput(f"spectrogram images must be uint8, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[-2] != config.y_res:
        raise InvalidInput(
            f"expected image shape (y_res={config.y_res}, width) or (batch, {config.y_res}, "
            f"width), got {image.shape}"
        )
    if vocoder == "librosa":
        import librosa

        power = image_to_mel_power(image, config)
        audio = librosa.feature.inverse.mel_to_audio(
            power,
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_iter=config.n_iter,
        )
        return audio.astype(np.float32)
    if vocoder == "fast":
        gl = voc.GriffinLim(config)
    elif isinstance(vocoder, voc.GriffinLim):
        gl = vocoder
        if voc.spectral_config(gl.config) != voc.spectral_config(config):
            raise InvalidInput(f"the vocoder was built for {gl.config}, not {config}")
    else:
        raise InvalidInput(f"vocoder must be 'fast', 'librosa' or a GriffinLim, got {vocoder!r}")
    return gl.images_to_audio(image)
