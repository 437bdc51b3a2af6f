"""Song similarity: a VQ-VAE over spectrogram slices, code histograms, a metric head, ``S(a, b)``.

- :class:`~encore.similarity.representation.Representation` and
  :func:`~encore.similarity.representation.similarity` (numpy only): one vector per song or
  set of songs, and ``S(a, b) ∈ [0, 1]``.
- :class:`~encore.similarity.index.SimilarityIndex` (numpy only): exact top-k search with
  exclusions.
- :class:`~encore.similarity.model.SimilarityModel` (torch): load a model folder, turn
  slices or audio into representations. ``SimilarityModel.default()`` loads the shipped
  model.

This package imports nothing of the web, the database or the job queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from encore.similarity.index import Neighbour, SimilarityIndex
from encore.similarity.representation import Representation, bhattacharyya, similarity

if TYPE_CHECKING:
    from encore.similarity.config import SimilarityConfig
    from encore.similarity.model import SimilarityModel

__all__ = [
    "Neighbour",
    "Representation",
    "SimilarityConfig",
    "SimilarityIndex",
    "SimilarityModel",
    "bhattacharyya",
    "similarity",
]


def __getattr__(name: str) -> Any:
    # torch-backed names load on first use, so numpy-only users stay light.
    if name == "SimilarityModel":
        from encore.similarity.model import SimilarityModel

        return SimilarityModel
    if name == "SimilarityConfig":
        from encore.similarity.config import SimilarityConfig

        return SimilarityConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
