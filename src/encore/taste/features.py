"""What the taste model reads: a clip as the platform measured it, relative to a listener.

Inputs are what the platform already computes (no new model, nothing the simulated listeners
could whisper): for each clip its audio descriptors (:mod:`encore.audio.descriptors`) and
its similarity-model embedding; for each listener the mean descriptors and embedding of the
songs they uploaded, and the clips they rated before with their centred ratings.

For a (listener, clip) pair the model builds two feature vectors:

- **local** (per-listener weights): ``d = z − z_songs`` (the clip's standardised
  descriptors minus the listener's songs'), ``d²`` (a preference that peaks near one's own
  songs is a negative weight on ``d²``; a personal offset is a weight on ``d``), and the
  *memory*: the kernel-weighted mean of the listener's centred ratings of earlier clips that
  sound like this one (and its total kernel mass).
- **global** (shared weights): the local features plus ``z`` itself, the embedding, and the
  cosine between the clip's and the songs' embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encore.audio.descriptors import DESCRIPTOR_NAMES

N_DESCRIPTORS = len(DESCRIPTOR_NAMES)


@dataclass(frozen=True)
class ClipFeatures:
    """A clip as the taste model sees it.

    Attributes
    ----------
    descriptors : np.ndarray [shape=(D,)]
        Audio descriptors in :data:`encore.audio.descriptors.DESCRIPTOR_NAMES` order.
    embedding : np.ndarray [shape=(E,)]
        The similarity model's unit-norm embedding.
    """

    descriptors: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class ListenerProfile:
    """A listener's own songs (mean descriptors and mean embedding), or ``None`` parts when
    the listener has no analysed song."""

    descriptors: np.ndarray | None
    embedding: np.ndarray | None


@dataclass(frozen=True)
class Scaler:
    """Standardisation of the descriptors (fitted on the training clips)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, descriptors: np.ndarray) -> Scaler:
        d = np.asarray(descriptors, dtype=np.float64)
        mean = np.nanmean(d, axis=0) if len(d) else np.zeros(N_DESCRIPTORS)
        scale = np.nanstd(d, axis=0) if len(d) > 1 else np.ones(N_DESCRIPTORS)
        mean = np.nan_to_num(mean)
        scale = np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0)
        return cls(mean=mean, scale=scale)

    def __call__(self, descriptors: np.ndarray) -> np.ndarray:
        z = (np.asarray(descriptors, dtype=np.float64) - self.mean) / self.scale
        return np.clip(np.nan_to_num(z), -6.0, 6.0)


def kernel(z_a: np.ndarray, z_b: np.ndarray, bandwidth: float) -> np.ndarray:
    """RBF kernel between standardised descriptor rows: ``(len(z_a), len(z_b))``."""
    if len(z_a) == 0 or len(z_b) == 0:
        return np.zeros((len(z_a), len(z_b)))
    d2 = (
        np.sum(z_a**2, axis=1)[:, None] + np.sum(z_b**2, axis=1)[None, :] - 2.0 * z_a @ z_b.T
    )
    return np.exp(-np.maximum(d2, 0.0) / (2.0 * bandwidth**2 * z_a.shape[1]))


def memory(
    z: np.ndarray, history_z: np.ndarray, history_y: np.ndarray, bandwidth: float,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """The memory features of clips ``z`` from a listener's history: ``(n, 2)`` —
    kernel-weighted mean of the history's centred ratings (0 with no history) and
    ``log1p`` of the kernel mass. ``exclude[i, j]`` true drops history item j for clip i
    (leave-one-out while fitting)."""
    k = kernel(z, history_z, bandwidth)
    if exclude is not None and k.size:
        k = np.where(exclude, 0.0, k)
    mass = k.sum(axis=1)
    mean = np.where(mass > 1e-9, (k @ history_y) / np.maximum(mass, 1e-9), 0.0)
    # shrink towards 0 where the evidence is thin (one pseudo-observation of weight 1)
    mean = mean * mass / (mass + 1.0)
    return np.column_stack([mean, np.log1p(mass)])


def local_features(z: np.ndarray, z_songs: np.ndarray | None, mem: np.ndarray) -> np.ndarray:
    """``[d, d², memory]`` for clips ``z`` (``(n, 2D + 2)``); ``d`` is 0 without songs."""
    d = z - z_songs[None, :] if z_songs is not None else np.zeros_like(z)
    return np.hstack([d, d**2, mem])


def global_features(
    local: np.ndarray, z: np.ndarray, embedding: np.ndarray, song_embedding: np.ndarray | None
) -> np.ndarray:
    """``[local, z, embedding, cos(embedding, songs)]``."""
    if song_embedding is not None:
        norm = float(np.linalg.norm(song_embedding))
        cos = embedding @ (song_embedding / norm) if norm > 0 else np.zeros(len(embedding))
    else:
        cos = np.zeros(len(embedding))
    return np.hstack([local, z, embedding, cos[:, None]])
