"""The similarity model as the services use it: stored vectors in, S values out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from encore.services.context import ServiceContext

if TYPE_CHECKING:
    from encore.similarity.model import SimilarityModel
    from encore.similarity.representation import Representation


def similarity_model(ctx: ServiceContext) -> SimilarityModel:
    """The similarity model of ``Settings.similarity_model_dir`` (loaded once per process)."""
    from encore.similarity.model import SimilarityModel

    return ctx.cached(("similarity", str(ctx.settings.similarity_model_dir)),
                      lambda: SimilarityModel.load(ctx.settings.similarity_model_dir))


def representation_of(vector: Sequence[float] | Any) -> Representation:
    """A stored representation (the JSON list of :meth:`Representation.to_vector`)."""
    from encore.similarity.representation import Representation

    return Representation.from_vector(np.asarray(vector, dtype=np.float32))


def to_stored(rep: Representation) -> list[float]:
    """The JSON-storable form of a representation."""
    return [float(x) for x in rep.to_vector()]


def set_representation(ctx: ServiceContext, reps: Sequence[Representation]) -> Representation:
    """One representation for a set of songs (the paper's Eq. 3)."""
    if len(reps) == 1:
        return reps[0]
    return similarity_model(ctx).represent_set(list(reps))


def similarities_to(query: Representation, items: Sequence[Representation]) -> np.ndarray:
    """``S(query, item)`` for every item, in [0, 1] (exact; a dot product per item)."""
    if not items:
        return np.zeros(0)
    vectors = np.stack([r.search_vector() for r in items]).astype(np.float64)
    s = query.alpha / 2.0 + vectors @ query.search_vector().astype(np.float64)
    return np.clip(s, 0.0, 1.0)


def pairwise_similarities(items: Sequence[Representation]) -> np.ndarray:
    """The symmetric matrix ``S(items[i], items[j])`` (ones on the diagonal)."""
    if not items:
        return np.zeros((0, 0))
    vectors = np.stack([r.search_vector() for r in items]).astype(np.float64)
    s = np.clip(items[0].alpha / 2.0 + vectors @ vectors.T, 0.0, 1.0)
    np.fill_diagonal(s, 1.0)
    return s
