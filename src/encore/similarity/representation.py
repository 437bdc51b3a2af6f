"""Song representations and the similarity ``S(a, b)`` (numpy only).

A :class:`Representation` describes one song or a set of songs (the paper's Eq. 3):

- ``histogram`` ``h`` (length ``K``): the normalised counts of the VQ-VAE codebook entries
  used across all slices of all songs. Sets pool the *counts*, so a set is one histogram
  however many songs it holds, and the order of the songs does not matter.
- ``features`` (length ``2·D``): the mean and mean square of the continuous encoder
  outputs over the same tokens; they pool the same way as the counts and are what the
  metric head reads.
- ``embedding`` ``e`` (length ``E``, unit norm): the metric head's output for the pooled
  histogram and features, trained with supervised contrastive learning on genre labels.
- ``weight``: the number of codebook tokens pooled (the pooling weight of this entry).

The similarity of two representations is a convex combination of the cosine similarity of
the metric embeddings, mapped to [0, 1], and the Bhattacharyya coefficient of the
histograms::

    S(a, b) = α · (1 + cos(e_a, e_b)) / 2  +  (1 − α) · Σ_k √(h_a[k] · h_b[k])

``S`` is symmetric, lies in [0, 1] (both terms do) and ``S(a, a) = 1`` (``cos = 1``,
``Σ h = 1``). With the *search vector* ``u = [√(α/2) · e, √(1 − α) · √h]`` (norm ``√(1 − α/2)``),
``S(a, b) = α/2 + u_a · u_b``, so nearest-neighbour search is a dot product
(:mod:`encore.similarity.index`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from encore.errors import InvalidInput

_VECTOR_VERSION = 1.0
_HEADER = 6  # version, K, F, E, alpha, weight


@dataclass(frozen=True, eq=False)
class Representation:
    """One song or set of songs, as the similarity model sees it.

    Attributes
    ----------
    histogram : np.ndarray
        ``(K,)`` float32, non-negative, sums to 1: codebook usage.
    features : np.ndarray
        ``(F,)`` float32: pooled encoder statistics (mean, then mean square, per channel).
    embedding : np.ndarray
        ``(E,)`` float32, unit L2 norm: the metric-head embedding.
    weight : float
        Number of codebook tokens pooled (> 0).
    alpha : float
        Weight of the embedding term in ``S`` (from the model that made this).
    """

    histogram: np.ndarray
    features: np.ndarray
    embedding: np.ndarray
    weight: float
    alpha: float

    def __post_init__(self) -> None:
        h = np.asarray(self.histogram, dtype=np.float32).reshape(-1)
        f = np.asarray(self.features, dtype=np.float32).reshape(-1)
        e = np.asarray(self.embedding, dtype=np.float32).reshape(-1)
        if h.size == 0 or e.size == 0:
            raise InvalidInput(f"empty representation (K={h.size}, E={e.size})")
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(f)) and np.all(np.isfinite(e))):
            raise InvalidInput("representation holds non-finite values")
        if np.any(h < 0) or not np.isclose(h.sum(), 1.0, atol=1e-3):
            raise InvalidInput(f"histogram must be non-negative and sum to 1, sums to {h.sum():.4f}")
        if not self.weight > 0:
            raise InvalidInput(f"representation weight={self.weight!r} must be > 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise InvalidInput(f"alpha={self.alpha!r} must be in [0, 1]")
        norm = float(np.linalg.norm(e))
        if norm == 0:
            raise InvalidInput("representation embedding has zero norm")
        for arr in (h, f, e):
            arr.setflags(write=False)
        object.__setattr__(self, "histogram", h)
        object.__setattr__(self, "features", f)
        object.__setattr__(self, "embedding", e / np.float32(norm))
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "alpha", float(self.alpha))

    # --- serialisation ----------------------------------------------------------------

    def to_vector(self) -> np.ndarray:
        """A flat float32 vector (header, histogram, features, embedding) for storage.

        Returns
        -------
        np.ndarray
            ``(6 + K + F + E,)`` float32; :meth:`from_vector` inverts it exactly.
        """
        header = np.array(
            [_VECTOR_VERSION, self.histogram.size, self.features.size, self.embedding.size,
             self.alpha, self.weight],
            dtype=np.float32,
        )
        return np.concatenate([header, self.histogram, self.features, self.embedding])

    def to_bytes(self) -> bytes:
        """:meth:`to_vector` as little-endian float32 bytes."""
        return self.to_vector().astype("<f4").tobytes()

    @classmethod
    def from_vector(cls, vector: np.ndarray | Sequence[float]) -> Representation:
        """Rebuild a representation from :meth:`to_vector`'s output."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.size < _HEADER or v[0] != _VECTOR_VERSION:
            raise InvalidInput(f"not a representation vector (length {v.size}, header {v[:1]})")
        k, f, e = (int(x) for x in v[1:4])
        if v.size != _HEADER + k + f + e:
            raise InvalidInput(
                f"representation vector has length {v.size}, header says {_HEADER + k + f + e}"
            )
        alpha, weight = float(v[4]), float(v[5])
        o = _HEADER
        return cls(
            histogram=v[o : o + k],
            features=v[o + k : o + k + f],
            embedding=v[o + k + f :],
            weight=weight,
            alpha=alpha,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Representation:
        """Inverse of :meth:`to_bytes`."""
        if len(data) % 4:
            raise InvalidInput(f"representation bytes length {len(data)} is not a multiple of 4")
        return cls.from_vector(np.frombuffer(data, dtype="<f4"))

    # --- similarity -------------------------------------------------------------------

    def search_vector(self) -> np.ndarray:
        """The vector ``u = [√(α/2)·e, √(1−α)·√h]`` (norm ``√(1 − α/2)``) with ``S(a, b) = α/2 + u_a·u_b``."""
        return search_vector(self.embedding, self.histogram, self.alpha)


def search_vector(embedding: np.ndarray, histogram: np.ndarray, alpha: float) -> np.ndarray:
    """The dot-product form of ``S`` for one representation.

    Parameters
    ----------
    embedding : np.ndarray
        ``(E,)`` unit-norm metric embedding.
    histogram : np.ndarray
        ``(K,)`` codebook histogram summing to 1.
    alpha : float
        Embedding weight in [0, 1].

    Returns
    -------
    np.ndarray
        ``(E + K,)`` float32 with ``α/2 + u_a·u_b = S(a, b)``.
    """
    e = np.asarray(embedding, dtype=np.float32)
    h = np.clip(np.asarray(histogram, dtype=np.float32), 0.0, None)
    return np.concatenate(
        [np.float32(np.sqrt(alpha / 2.0)) * e, np.float32(np.sqrt(1.0 - alpha)) * np.sqrt(h)]
    ).astype(np.float32)


def bhattacharyya(h_a: np.ndarray, h_b: np.ndarray) -> float:
    """Bhattacharyya coefficient ``Σ √(h_a·h_b)`` of two histograms, in [0, 1]."""
    a = np.clip(np.asarray(h_a, dtype=np.float64), 0.0, None)
    b = np.clip(np.asarray(h_b, dtype=np.float64), 0.0, None)
    if a.shape != b.shape:
        raise InvalidInput(f"histograms of different lengths {a.shape} and {b.shape}")
    return float(np.clip(np.sum(np.sqrt(a * b)), 0.0, 1.0))


def similarity(a: Representation, b: Representation) -> float:
    """``S(a, b) = α·(1 + cos(e_a, e_b))/2 + (1 − α)·BC(h_a, h_b)``, in [0, 1].

    Both representations must come from the same model (same sizes and ``α``).
    """
    if (a.histogram.shape, a.embedding.shape) != (b.histogram.shape, b.embedding.shape):
        raise InvalidInput(
            f"representations from different models: K={a.histogram.size}/{b.histogram.size}, "
            f"E={a.embedding.size}/{b.embedding.size}"
        )
    if not np.isclose(a.alpha, b.alpha):
        raise InvalidInput(f"representations with different alpha {a.alpha} and {b.alpha}")
    cos = float(np.clip(np.dot(a.embedding.astype(np.float64), b.embedding), -1.0, 1.0))
    s = a.alpha * (1.0 + cos) / 2.0 + (1.0 - a.alpha) * bhattacharyya(a.histogram, b.histogram)
    return float(np.clip(s, 0.0, 1.0))


def pool_counts(
    histograms: np.ndarray, features: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Pool song statistics into set statistics (Eq. 3), independent of order.

    Rows are summed in a canonical (sorted) order, so any permutation of the inputs gives
    bit-identical output.

    Parameters
    ----------
    histograms : np.ndarray
        ``(n, K)`` normalised histograms.
    features : np.ndarray
        ``(n, F)`` pooled feature means.
    weights : np.ndarray
        ``(n,)`` token counts (> 0).

    Returns
    -------
    histogram : np.ndarray
        ``(K,)`` float32, the normalised pooled counts.
    features : np.ndarray
        ``(F,)`` float32, the token-weighted mean of the features.
    weight : float
        Total token count.
    """
    h = np.asarray(histograms, dtype=np.float64)
    f = np.asarray(features, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if h.ndim != 2 or f.ndim != 2 or not (h.shape[0] == f.shape[0] == w.size) or w.size == 0:
        raise InvalidInput(
            f"cannot pool histograms {h.shape}, features {f.shape} and weights {w.shape}"
        )
    if np.any(w <= 0):
        raise InvalidInput(f"pooling weights must be > 0, got min {w.min()}")
    rows = np.concatenate([w[:, None], h, f], axis=1)
    order = np.lexsort(rows.T[::-1])
    rows = rows[order]
    w, h, f = rows[:, 0], rows[:, 1 : 1 + h.shape[1]], rows[:, 1 + h.shape[1] :]
    total = float(w.sum())
    counts = (h * w[:, None]).sum(axis=0)
    hist = counts / counts.sum()
    feats = (f * w[:, None]).sum(axis=0) / total
    return hist.astype(np.float32), feats.astype(np.float32), total
