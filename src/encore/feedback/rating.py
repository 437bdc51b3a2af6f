"""The rating function R and the confidence c of a clip (the paper's Eq. 1).

Notation (code -> paper):

- ``rating``        -> the explicit rating, 1–5 stars in steps of 0.5
- ``bias``          -> the rater's bias Δ (stars), from :mod:`encore.feedback.raters`
- ``r_hat``         -> r̂ = clamp((rating − Δ − 1) / 4, 0, 1)
- ``l_hat``         -> l̂, the listened fraction in [0, 1] (:mod:`encore.feedback.listening`)
- ``similarity``    -> S(g, I), similarity of the clip to its inputs, in [0, 1]
- ``R``             -> R = w_r·r̂ + w_l·l̂ + w_s·S with w normalised to sum 1 (default 1/3 each)
- ``confidence``    -> c = (a_r·r̂ + a_l·l̂) / (a_r + a_l) (default a_r = a_l)

Aggregation over listeners (output agreement): a clip's r̂ and l̂ are the means of the
per-listener values weighted by rater reliability (the ``weight`` of
:class:`~encore.feedback.raters.RaterAssessment`); R and c are computed from those means.
Because R is linear this equals the weighted mean of the per-listener R.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from encore.errors import InvalidInput
from encore.feedback.config import DEFAULT_CONFIG, FeedbackConfig, check_weights

if TYPE_CHECKING:
    from encore.feedback.raters import RatingSet

__all__ = [
    "RATING_MAX",
    "RATING_MIN",
    "RATING_STEP",
    "ClipRating",
    "ClipScore",
    "check_unit",
    "confidence",
    "normalized_rating",
    "rating_score",
    "score_clip",
    "score_clips",
    "validate_rating",
    "validate_ratings",
]

RATING_MIN = 1.0
RATING_MAX = 5.0
RATING_STEP = 0.5
_STEP_TOL = 1e-9


def validate_rating(rating: object) -> float:
    """Check one explicit rating: a number in 1..5 in steps of 0.5.

    Returns
    -------
    float
        The rating, exactly on the 0.5 grid.

    Raises
    ------
    InvalidInput
        ``"rating=5.3 must be 1..5 in steps of 0.5"`` (the message names the value).

    Examples
    --------
    >>> validate_rating(3.5)
    3.5
    """
    if isinstance(rating, bool) or not isinstance(rating, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"rating={rating!r} must be 1..5 in steps of 0.5")
    value = float(rating)
    steps = (value - RATING_MIN) / RATING_STEP
    if (not math.isfinite(value) or value < RATING_MIN - _STEP_TOL
            or value > RATING_MAX + _STEP_TOL or abs(steps - round(steps)) > _STEP_TOL):
        raise InvalidInput(f"rating={rating!r} must be 1..5 in steps of 0.5")
    return RATING_MIN + RATING_STEP * round(steps)


def validate_ratings(ratings: Sequence[float] | np.ndarray) -> np.ndarray:
    """Vectorised :func:`validate_rating`; the message names the first bad value and its index.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]
    """
    arr = np.asarray(ratings, dtype=float).reshape(-1)
    steps = (arr - RATING_MIN) / RATING_STEP
    with np.errstate(invalid="ignore"):
        bad = (~np.isfinite(arr) | (arr < RATING_MIN - _STEP_TOL) | (arr > RATING_MAX + _STEP_TOL)
               | (np.abs(steps - np.round(steps)) > _STEP_TOL))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"rating={float(arr[i])!r} (index {i}) must be 1..5 in steps of 0.5")
    return RATING_MIN + RATING_STEP * np.round(steps)


def normalized_rating(rating: float | np.ndarray, bias: float | np.ndarray = 0.0
                      ) -> float | np.ndarray:
    """r̂ = clamp((rating − bias − 1) / 4, 0, 1).

    Parameters
    ----------
    rating : float or np.ndarray
        Stars, 1..5 (validated by the caller with :func:`validate_rating`).
    bias : float or np.ndarray
        The rater's bias Δ in stars (positive: rates higher than the consensus).

    Examples
    --------
    >>> normalized_rating(4.0), normalized_rating(4.0, bias=0.5), normalized_rating(1.0, bias=0.5)
    (0.75, 0.625, 0.0)
    """
    value = np.clip((np.asarray(rating, dtype=float) - np.asarray(bias, dtype=float)
                     - RATING_MIN) / (RATING_MAX - RATING_MIN), 0.0, 1.0)
    return float(value) if value.ndim == 0 else value


def rating_score(r_hat: float, l_hat: float, similarity: float, *,
                 weights: tuple[float, float, float] = DEFAULT_CONFIG.rating_weights) -> float:
    """R = w_r·r̂ + w_l·l̂ + w_s·S, weights normalised to sum to 1.

    Parameters
    ----------
    r_hat, l_hat, similarity : float in [0, 1]
    weights : (w_r, w_l, w_s), non-negative, not all zero (default equal: the paper's mean)

    Examples
    --------
    >>> round(rating_score(0.75, 1.0, 0.5), 6)
    0.75
    """
    w_r, w_l, w_s = check_weights("rating-function weights", tuple(weights))
    for name, value in (("r_hat", r_hat), ("l_hat", l_hat), ("similarity", similarity)):
        check_unit(name, value)
    return float(w_r * r_hat + w_l * l_hat + w_s * similarity)


def confidence(r_hat: float, l_hat: float, *,
               weights: tuple[float, float] = DEFAULT_CONFIG.confidence_weights) -> float:
    """c = (a_r·r̂ + a_l·l̂) / (a_r + a_l), in [0, 1].

    Examples
    --------
    >>> confidence(0.5, 1.0), confidence(0.5, 1.0, weights=(3.0, 1.0))
    (0.75, 0.625)
    """
    a_r, a_l = check_weights("confidence weights", tuple(weights))
    check_unit("r_hat", r_hat)
    check_unit("l_hat", l_hat)
    return float(a_r * r_hat + a_l * l_hat)


@dataclass(frozen=True)
class ClipRating:
    """One listener's counted rating of one clip.

    Attributes
    ----------
    rater_id : hashable
    rating : float
        Stars, 1..5 in steps of 0.5.
    listened_fraction : float in [0, 1]
        l̂ of that listen (:attr:`ListenSummary.fraction`).
    """

    rater_id: Hashable
    rating: float
    listened_fraction: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rating", validate_rating(self.rating))
        check_unit("listened_fraction", self.listened_fraction)


@dataclass(frozen=True)
class ClipScore:
    """The aggregate R and c of one clip over its listeners.

    Attributes
    ----------
    R : float in [0, 1]
    confidence : float in [0, 1]
    r_hat, l_hat : float in [0, 1]
        Reliability-weighted means of the per-listener r̂ and l̂.
    similarity : float in [0, 1]
    n_ratings : int
        Ratings with a positive weight (the count the curation rule compares with m).
    weight_total : float
        Sum of the rater weights used.
    """

    R: float
    confidence: float
    r_hat: float
    l_hat: float
    similarity: float
    n_ratings: int
    weight_total: float


def score_clip(
    ratings: Sequence[ClipRating],
    *,
    similarity: float,
    biases: Mapping[Hashable, float] | None = None,
    weights: Mapping[Hashable, float] | None = None,
    config: FeedbackConfig = DEFAULT_CONFIG,
) -> ClipScore | None:
    """Aggregate R and c of one clip over several listeners (output agreement).

    Parameters
    ----------
    ratings : sequence of ClipRating
        The clip's counted ratings (one per listener normally; repeats are averaged in as
        separate observations).
    similarity : float in [0, 1]
        S(g, I) of the clip to its own inputs.
    biases : mapping rater_id -> Δ (stars), optional
        Rater biases from :func:`~encore.feedback.raters.assess_raters`; missing raters have
        Δ = 0 (no evidence yet).
    weights : mapping rater_id -> weight in [0, 1], optional
        Rater reliability weights; missing raters weigh 1.
    config : FeedbackConfig
        Supplies the rating-function and confidence weights.

    Returns
    -------
    ClipScore or None
        ``None`` when no rating has a positive weight (no trustworthy rating: the clip has
        no score yet).

    Examples
    --------
    >>> rs = [ClipRating("a", 5.0, 1.0), ClipRating("b", 3.0, 0.5)]
    >>> s = score_clip(rs, similarity=0.6, biases={"a": 1.0})
    >>> round(s.r_hat, 4), round(s.l_hat, 4), round(s.R, 4), round(s.confidence, 4)
    (0.625, 0.75, 0.6583, 0.6875)
    """
    check_unit("similarity", similarity)
    biases = biases or {}
    weights = weights or {}
    w = np.array([float(weights.get(r.rater_id, 1.0)) for r in ratings], dtype=float)
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise InvalidInput(f"rater weights {w.tolist()!r} must be finite and >= 0")
    if w.size == 0 or w.sum() <= 0:
        return None
    stars = np.array([r.rating for r in ratings], dtype=float)
    delta = np.array([float(biases.get(r.rater_id, 0.0)) for r in ratings], dtype=float)
    if np.any(~np.isfinite(delta)):
        raise InvalidInput(f"rater biases {delta.tolist()!r} must be finite")
    r_hat_each = np.asarray(normalized_rating(stars, delta), dtype=float)
    l_hat_each = np.array([r.listened_fraction for r in ratings], dtype=float)
    r_hat = float(np.dot(w, r_hat_each) / w.sum())
    l_hat = float(np.dot(w, l_hat_each) / w.sum())
    return ClipScore(
        R=rating_score(r_hat, l_hat, similarity, weights=config.rating_weights),
        confidence=confidence(r_hat, l_hat, weights=config.confidence_weights),
        r_hat=r_hat,
        l_hat=l_hat,
        similarity=float(similarity),
        n_ratings=int(np.count_nonzero(w > 0)),
        weight_total=float(w.sum()),
    )


def score_clips(
    data: RatingSet,
    *,
    similarity: Mapping[Hashable, float],
    biases: Mapping[Hashable, float] | None = None,
    weights: Mapping[Hashable, float] | None = None,
    config: FeedbackConfig = DEFAULT_CONFIG,
) -> dict[Hashable, ClipScore | None]:
    """:func:`score_clip` for every clip of a :class:`~encore.feedback.raters.RatingSet`.

    Parameters
    ----------
    data : RatingSet
        Counted ratings of many clips.
    similarity : mapping clip_id -> S(g, I) in [0, 1]
        Must cover every clip in ``data``.
    biases, weights : mapping rater_id -> float, optional
        Typically ``QualityControlResult.biases`` and ``.weights``.
    config : FeedbackConfig

    Returns
    -------
    dict clip_id -> ClipScore or None
    """
    rows: dict[Hashable, list[ClipRating]] = {}
    for rater, clip, stars, listened in zip(data.rater_ids.tolist(), data.clip_ids.tolist(),
                                            data.ratings.tolist(),
                                            data.listened_fraction.tolist(), strict=True):
        rows.setdefault(clip, []).append(ClipRating(rater, stars, listened))
    missing = [c for c in rows if c not in similarity]
    if missing:
        raise InvalidInput(f"no similarity given for clip {missing[0]!r}")
    return {clip: score_clip(r, similarity=similarity[clip], biases=biases, weights=weights,
                             config=config) for clip, r in rows.items()}


def check_unit(name: str, value: object) -> None:
    """Check that ``value`` is a number in [0, 1] (a python or numpy scalar, not a bool, not
    NaN); ``name`` words the error."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not 0.0 <= float(value) <= 1.0):
        raise InvalidInput(f"{name}={value!r} must be a number in [0, 1]")
