"""Hyper-parameters of a similarity model; they travel with the model (``similarity_config.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from encore.errors import InvalidInput

CONFIG_FILE = "similarity_config.json"


@dataclass(frozen=True)
class SimilarityConfig:
    """Architecture and similarity settings of a :class:`~encore.similarity.model.SimilarityModel`.

    Parameters
    ----------
    image_height, image_width
        Size of one spectrogram slice as stored (mel bins × frames).
    pool
        Average-pooling factor applied to a slice before the encoder (1 keeps full
        resolution, 2 halves both axes).
    channels
        Output channels of the encoder's stride-2 convolutions (one entry per halving).
    latent_dim
        Dimension of the encoder output vectors that are quantised.
    codebook_size
        Number of codebook entries ``K`` (the histogram length).
    codebook_decay
        EMA decay of the codebook updates.
    dead_code_threshold
        A code whose EMA cluster size falls below this is replaced by a random encoder
        output of the current batch (``threshold_ema_dead_code``).
    commitment_weight
        Weight of the commitment loss.
    cosine_codebook
        Use cosine-similarity codes (l2-normalised vectors and codebook).
    row_features
        Pool the encoder statistics per latent row (frequency band) instead of over the
        whole grid, so the head sees *where* in the spectrum each feature occurs.
    head_hidden, embedding_dim
        Width of the metric head's hidden layer and of the metric embedding.
    alpha
        Weight of the metric embedding in ``S`` (``1 - alpha`` is the histogram's weight);
        see :mod:`encore.similarity.representation`.
    temperature
        Temperature of the supervised contrastive loss.
    genres
        Genre names in label order (informational; saved with the model).
    """

    image_height: int = 128
    image_width: int = 128
    pool: int = 2
    channels: tuple[int, ...] = (32, 64, 96)
    latent_dim: int = 64
    codebook_size: int = 512
    codebook_decay: float = 0.95
    dead_code_threshold: float = 1.0
    commitment_weight: float = 0.25
    cosine_codebook: bool = True
    row_features: bool = True
    head_hidden: int = 256
    embedding_dim: int = 64
    alpha: float = 0.8
    temperature: float = 0.1
    genres: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("image_height", "image_width", "pool", "latent_dim", "codebook_size",
                     "head_hidden", "embedding_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"SimilarityConfig.{name}={value!r} must be a positive integer")
        if not self.channels or any(int(c) <= 0 for c in self.channels):
            raise InvalidInput(f"SimilarityConfig.channels={self.channels!r} must be positive")
        down = self.pool * 2 ** len(self.channels)
        if self.image_height % down or self.image_width % down:
            raise InvalidInput(
                f"image size {self.image_height}x{self.image_width} is not divisible by "
                f"pool * 2**len(channels) = {down}"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise InvalidInput(f"SimilarityConfig.alpha={self.alpha!r} must be in [0, 1]")
        if not 0.0 < self.codebook_decay < 1.0:
            raise InvalidInput(f"SimilarityConfig.codebook_decay={self.codebook_decay!r} must be in (0, 1)")
        if self.temperature <= 0:
            raise InvalidInput(f"SimilarityConfig.temperature={self.temperature!r} must be > 0")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "genres", tuple(str(g) for g in self.genres))

    @property
    def latent_height(self) -> int:
        return self.image_height // (self.pool * 2 ** len(self.channels))

    @property
    def latent_width(self) -> int:
        return self.image_width // (self.pool * 2 ** len(self.channels))

    @property
    def tokens_per_slice(self) -> int:
        """Codebook indices per slice (latent height × width)."""
        return self.latent_height * self.latent_width

    @property
    def feature_dim(self) -> int:
        """Length of the pooled encoder statistics: mean and mean square per latent channel
        (and per latent row with ``row_features``)."""
        return 2 * self.latent_dim * (self.latent_height if self.row_features else 1)

    def replace(self, **changes: object) -> SimilarityConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["channels"] = list(self.channels)
        data["genres"] = list(self.genres)
        return data

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SimilarityConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise InvalidInput(f"unknown similarity config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("channels", "genres"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: str | Path) -> SimilarityConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"cannot read similarity config {path}: {exc}") from exc
        return cls.from_dict(data)
