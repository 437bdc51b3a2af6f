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

    def replace(self, **changes: object) -> MelConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

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
