"""The similarity model: VQ-VAE codes → song representations → ``S(a, b)``.

A model folder holds ``similarity_config.json`` (:class:`SimilarityConfig`),
``model.safetensors`` (VQ-VAE and metric head weights), ``mel_config.json`` (the
spectrogram settings the model was trained on) and, optionally, ``training.json`` and a
model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encore.audio.mel import MelConfig
from encore.errors import InvalidInput, NotFound
from encore.similarity.config import CONFIG_FILE, SimilarityConfig
from encore.similarity.index import SimilarityIndex
from encore.similarity.representation import Representation, pool_counts, similarity
from encore.similarity.vqvae import VQVAE, MetricHead

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
_BATCH = 64


@dataclass(frozen=True)
class SliceCodes:
    """Per-slice VQ-VAE output.

    Attributes
    ----------
    indices : np.ndarray
        ``(N, h·w)`` int64 codebook indices of each slice's latent grid (row-major).
    features : np.ndarray
        ``(N, 2·D)`` float32: per-slice mean and mean square of the encoder output channels.
    """

    indices: np.ndarray
    features: np.ndarray

    def histograms(self, codebook_size: int) -> np.ndarray:
        """``(N, K)`` float32 per-slice normalised code histograms."""
        n, t = self.indices.shape
        counts = np.zeros((n, codebook_size), dtype=np.float32)
        np.add.at(counts, (np.repeat(np.arange(n), t), self.indices.reshape(-1)), 1.0)
        return counts / np.float32(t)


class SimilarityModel:
    """A trained VQ-VAE with its metric head, ready to represent songs.

    Parameters
    ----------
    config : SimilarityConfig
        Architecture and ``α``.
    vqvae : VQVAE
        The VQ-VAE (only its encoder and codebook are used here).
    head : MetricHead
        The metric head.
    mel_config : MelConfig, optional
        Spectrogram settings of the training data (used by :meth:`represent_audio`).
    """

    def __init__(
        self,
        config: SimilarityConfig,
        vqvae: VQVAE,
        head: MetricHead,
        mel_config: MelConfig | None = None,
    ) -> None:
        self.config = config
        self.vqvae = vqvae.eval()
        self.head = head.eval()
        self.mel_config = mel_config or MelConfig(
            x_res=config.image_width, y_res=config.image_height
        )

    # --- construction and persistence -------------------------------------------------

    @classmethod
    def create(cls, config: SimilarityConfig, seed: int = 0,
               mel_config: MelConfig | None = None) -> SimilarityModel:
        """An untrained model with seeded weights."""
        torch.manual_seed(seed)
        return cls(config, VQVAE(config), MetricHead(config), mel_config)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"vqvae.{k}": v for k, v in self.vqvae.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return state

    def save(self, directory: str | Path, *, extra_files: dict[str, object] | None = None) -> Path:
        """Write the model folder (config, weights, mel config); returns the folder."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save(out)
        self.mel_config.save(out)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "kind": "encore-similarity"})
        for name, payload in (extra_files or {}).items():
            (out / name).write_text(json.dumps(payload, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> SimilarityModel:
        """Load a model folder written by :meth:`save`."""
        from safetensors.torch import load_file

        folder = Path(directory)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise NotFound(f"no similarity model in {folder} (need {CONFIG_FILE} and {WEIGHTS_FILE})")
        config = SimilarityConfig.load(folder)
        mel_config = MelConfig.load(folder) if (folder / "mel_config.json").is_file() else None
        state = load_file(str(folder / WEIGHTS_FILE))
        vqvae, head = VQVAE(config), MetricHead(config)
        vqvae.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("vqvae.")})
        head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        return cls(config, vqvae, head, mel_config)

    @classmethod
    def default(cls) -> SimilarityModel:
        """The model in ``Settings.similarity_model_dir`` (the shipped one by default)."""
        from encore.config import get_settings

        return cls.load(get_settings().similarity_model_dir)

    # --- slices -----------------------------------------------------------------------

    def _as_batch(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        h, w = self.config.image_height, self.config.image_width
        if x.ndim != 3 or tuple(x.shape[1:]) != (h, w):
            raise InvalidInput(
                f"slices of shape {tuple(x.shape)}, expected (N, {h}, {w}) spectrogram images"
            )
        if x.shape[0] == 0:
            raise InvalidInput("no slices given")
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        else:
            x = x.float()
            if not torch.isfinite(x).all():
                raise InvalidInput("slices hold non-finite values")
            lo, hi = float(x.min()), float(x.max())
            if lo < -1.001 or hi > 1.001:
                raise InvalidInput(
                    f"float slices must lie in [-1, 1] (got [{lo:.3f}, {hi:.3f}]); pass uint8 images otherwise"
                )
        return x[:, None]

    @torch.no_grad()
    def embed_images(self, images: np.ndarray | torch.Tensor) -> SliceCodes:
        """Codebook indices and pooled encoder statistics of each slice.

        Parameters
        ----------
        images : array
            ``(N, H, W)`` (or ``(H, W)``) spectrogram slices: uint8 grey levels, or floats in
            [-1, 1]; ``H, W`` as in the config (row 0 = lowest mel band).

        Returns
        -------
        SliceCodes
        """
        x = self._as_batch(images)
        indices, features = [], []
        for start in range(0, x.shape[0], _BATCH):
            z, idx = self.vqvae.encode(x[start : start + _BATCH])
            # (B, D, h, w) -> mean and mean square per channel (or per channel and row).
            flat = z.flatten(1, 2) if self.config.row_features else z.flatten(2)
            features.append(torch.cat([flat.mean(dim=2), flat.square().mean(dim=2)], dim=1))
            indices.append(idx.flatten(1))
        return SliceCodes(
            indices=torch.cat(indices).numpy().astype(np.int64),
            features=torch.cat(features).numpy().astype(np.float32),
        )

    # --- representations --------------------------------------------------------------

    @torch.no_grad()
    def embed_pooled(self, histograms: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Metric embeddings ``(n, E)`` of pooled histograms ``(n, K)`` and features ``(n, 2D)``."""
        h = torch.as_tensor(np.asarray(histograms, dtype=np.float32))
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        return self.head(h, f).numpy().astype(np.float32)

    def _from_pooled(self, histogram: np.ndarray, features: np.ndarray, weight: float) -> Representation:
        emb = self.embed_pooled(histogram[None], features[None])[0]
        return Representation(histogram, features, emb, weight, self.config.alpha)

    def represent_codes(self, codes: SliceCodes) -> Representation:
        """The representation of one song from its slices' :class:`SliceCodes`."""
        n, t = codes.indices.shape
        counts = np.bincount(codes.indices.reshape(-1), minlength=self.config.codebook_size)
        hist = (counts / counts.sum()).astype(np.float32)
        feats = codes.features.astype(np.float64).mean(axis=0).astype(np.float32)
        return self._from_pooled(hist, feats, float(n * t))

    def represent(self, song_slices: np.ndarray | torch.Tensor) -> Representation:
        """The representation of one song from all its slices ``(N, H, W)`` (see :meth:`embed_images`)."""
        return self.represent_codes(self.embed_images(song_slices))

    def represent_set(self, representations: Sequence[Representation]) -> Representation:
        """One representation for a set of songs (Eq. 3): pooled code counts, any order.

        Parameters
        ----------
        representations : sequence of Representation
            One per song (or per sub-set); at least one, all from this model.
        """
        if not representations:
            raise InvalidInput("represent_set needs at least one representation")
        for r in representations:
            if r.histogram.size != self.config.codebook_size or r.features.size != self.config.feature_dim:
                raise InvalidInput(
                    f"representation with K={r.histogram.size}, F={r.features.size} does not come "
                    f"from this model (K={self.config.codebook_size}, F={self.config.feature_dim})"
                )
        hist, feats, weight = pool_counts(
            np.stack([r.histogram for r in representations]),
            np.stack([r.features for r in representations]),
            np.array([r.weight for r in representations]),
        )
        return self._from_pooled(hist, feats, weight)

    def represent_songs(self, songs: Sequence[np.ndarray]) -> Representation:
        """One representation for several songs given as slice arrays."""
        return self.represent_set([self.represent(s) for s in songs])

    def represent_audio(self, y: np.ndarray, sr: int) -> Representation:
        """The representation of a mono signal ``y`` (float samples at ``sr`` Hz).

        The audio is resampled to this model's :class:`MelConfig` rate and cut into
        consecutive slices by the mel codec (:func:`encore.audio.mel.audio_to_images`);
        every slice is used.
        """
        from encore.audio.decode import resample
        from encore.audio.mel import audio_to_images

        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise InvalidInput(f"audio must be mono and non-empty, got shape {y.shape}")
        if sr <= 0:
            raise InvalidInput(f"sample rate sr={sr!r} must be positive")
        y = resample(y, int(sr), self.mel_config.sample_rate)
        return self.represent(audio_to_images(y, self.mel_config))

    def similarity(self, a: Representation, b: Representation) -> float:
        """``S(a, b)`` in [0, 1] (see :mod:`encore.similarity.representation`)."""
        return similarity(a, b)

    def index(self, ids: Sequence[object], representations: Sequence[Representation]) -> SimilarityIndex:
        """A nearest-neighbour index over ``representations``."""
        index = SimilarityIndex(self.config.alpha, self.config.embedding_dim + self.config.codebook_size)
        if ids:
            index.add_vectors(list(ids), np.stack([r.search_vector() for r in representations]))
        return index
