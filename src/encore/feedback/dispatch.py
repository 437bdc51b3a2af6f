"""Dispatch: what a listener gets when they ask for music from input songs *I* (the paper's §3.1).

Three branches, chosen by one uniform draw ``u``:

- ``u < p_b`` (``baseline_probability``, default 0.25) and a non-empty dataset *D*: the
  **baseline** d*, the dataset clip nearest to *I* by S that they have not rated yet;
- ``p_b <= u < p_b + p_r`` (``review_probability``, default 0.3): **review**, a new clip that
  another listener's request generated and that still needs ratings (a *pending* candidate,
  see :func:`review_eligible`), the one nearest to *I* by S. This is output agreement for new
  clips (the same clip reaches several listeners): without it a generated clip is
  rated only by the listener who asked for it and never reaches the ratings curation needs;
- otherwise, and whenever the drawn branch has no eligible clip, a new clip is **generated**
  by a model version drawn among the active versions with probabilities proportional to
  their A/B weights.

The :class:`DispatchDecision` is for the services only: the listener must never learn which
branch or version produced what they hear (confirmation bias, paper §6).

Randomness: exactly one uniform draw decides the branch on every call (also when the dataset
is empty or nothing awaits review), and one more picks the version when generating, so a
seeded generator gives the same sequence of decisions for the same data. Versions are considered in sorted
id order, so the mapping's iteration order does not matter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from encore.errors import Conflict, InvalidInput
from encore.feedback.ids import IdT, SortableId

logger = logging.getLogger(__name__)

__all__ = [
    "DispatchDecision",
    "ReviewCandidate",
    "choose_version",
    "dispatch",
    "nearest_unrated",
    "review_eligible",
    "validate_ab_weights",
]

Branch = Literal["baseline", "review", "generate"]
SimilarityInput = np.ndarray | Sequence[float] | Callable[[Sequence[Hashable]], Sequence[float]]


@dataclass(frozen=True)
class DispatchDecision:
    """The outcome of :func:`dispatch` (never shown to the listener).

    Attributes
    ----------
    branch : "baseline", "review" or "generate"
    clip_id : hashable or None
        The existing clip to serve (baseline: a dataset clip; review: a pending new clip).
    version_id : hashable or None
        The model version to generate with (generate branch only).
    similarity : float or None
        S(clip, I) of the served existing clip.
    reason : str
        Why this branch, for logs (e.g. the fallback when every dataset clip is rated).
    """

    branch: Branch
    clip_id: Hashable | None
    version_id: Hashable | None
    similarity: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.branch in ("baseline", "review"):
            if self.clip_id is None or self.version_id is not None:
                raise InvalidInput(f"a {self.branch} decision needs clip_id and no version_id, got "
                                   f"clip_id={self.clip_id!r}, version_id={self.version_id!r}")
        elif self.branch == "generate":
            if self.version_id is None or self.clip_id is not None:
                raise InvalidInput("a generate decision needs version_id and no clip_id, got "
                                   f"clip_id={self.clip_id!r}, version_id={self.version_id!r}")
        else:
            raise InvalidInput(f"branch={self.branch!r} must be 'baseline', 'review' or "
                               "'generate'")


def validate_ab_weights(versions: Mapping[IdT, float]) -> tuple[list[IdT], np.ndarray]:
    """Check A/B weights of the active versions; return sorted ids and probabilities.

    Parameters
    ----------
    versions : mapping version_id -> weight
        Weights are finite and >= 0, with a positive sum (a zero weight keeps a version
        active but unserved).

    Returns
    -------
    ids : list
        Version ids in sorted order.
    p : np.ndarray [shape=(n,)]
        Selection probabilities, summing to 1.

    Raises
    ------
    Conflict
        If there is no active version.
    InvalidInput
        If a weight is negative, not finite, or all weights are zero.
    """
    if not versions:
        raise Conflict("no active model version to generate with")
    ids = sorted(versions)
    w = []
    for vid in ids:
        weight = versions[vid]
        if (isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer,
                                                                np.floating))
                or not math.isfinite(weight) or weight < 0):
            raise InvalidInput(f"A/B weight {weight!r} of version {vid!r} must be a finite "
                               "number >= 0")
        w.append(float(weight))
    arr = np.asarray(w)
    if arr.sum() <= 0:
        raise InvalidInput(f"A/B weights {dict(zip(ids, w, strict=True))!r} are all zero")
    return ids, arr / arr.sum()


def choose_version(versions: Mapping[IdT, float], rng: np.random.Generator) -> IdT:
    """Draw a model version with probability proportional to its A/B weight.

    Examples
    --------
    >>> choose_version({"v0": 0.0, "v1": 1.0}, np.random.default_rng(0))
    'v1'
    """
    ids, p = validate_ab_weights(versions)
    return ids[int(rng.choice(len(ids), p=p))]


def nearest_unrated(
    dataset_ids: Sequence[IdT],
    similarity: SimilarityInput,
    rated_clip_ids: Collection[Hashable],
) -> tuple[IdT, float] | None:
    """The clip most similar to the inputs among those the listener has not rated.

    Used for the baseline (``dataset_ids``: the dataset *D*) and the review branch (the
    pending new clips).

    Parameters
    ----------
    dataset_ids : sequence of clip ids
        The clips of the dataset *D*.
    similarity : array [shape=(len(dataset_ids),)] or callable
        S(d, I) for each dataset clip in ``dataset_ids`` order, or a callable that takes a
        list of clip ids and returns their similarities (called once, for the eligible
        clips only).
    rated_clip_ids : collection of clip ids
        Clips this listener has already rated.

    Returns
    -------
    (clip_id, similarity) or None
        ``None`` if no dataset clip is eligible. Ties go to the smallest clip id.
    """
    rated = set(rated_clip_ids)
    positions = [k for k, cid in enumerate(dataset_ids) if cid not in rated]
    if not positions:
        return None
    eligible = [dataset_ids[k] for k in positions]
    if callable(similarity):
        sims = np.asarray(similarity(eligible), dtype=float).reshape(-1)
        if sims.shape != (len(eligible),):
            raise InvalidInput(f"similarity callable returned {sims.shape[0]} values for "
                               f"{len(eligible)} clips")
    else:
        full = np.asarray(similarity, dtype=float).reshape(-1)
        if full.shape != (len(dataset_ids),):
            raise InvalidInput(f"similarity has {full.shape[0]} values for {len(dataset_ids)} "
                               "dataset clips")
        sims = full[positions]
    bad = ~np.isfinite(sims) | (sims < 0.0) | (sims > 1.0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"similarity={float(sims[k])!r} of clip {eligible[k]!r} must be in [0, 1]")
    order = sorted(range(len(eligible)), key=lambda k: eligible[k])
    best = order[0]
    for k in order[1:]:
        if sims[k] > sims[best]:  # strict: on a tie the smaller id (seen first) stays
            best = k
    return eligible[best], float(sims[best])


@dataclass(frozen=True)
class ReviewCandidate:
    """A new clip that might be served to more listeners (the review branch).

    Attributes
    ----------
    clip_id : sortable id (int, str, ...)
    version_id : hashable
        The model version that generated it.
    n_ratings : int >= 0
        Its counted ratings so far.
    n_open : int >= 0
        Deliveries of it still awaiting a rating (recent ones: a listener who never rates
        must not block the clip forever; the services choose how recent).
    """

    clip_id: SortableId
    version_id: Hashable
    n_ratings: int
    n_open: int = 0

    def __post_init__(self) -> None:
        for name in ("n_ratings", "n_open"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InvalidInput(f"{name}={value!r} of clip {self.clip_id!r} must be an "
                                   "integer >= 0")


def review_eligible(
    candidates: Sequence[ReviewCandidate],
    *,
    seen_clip_ids: Collection[Hashable],
    active_versions: Collection[Hashable],
    min_ratings: int = 3,
) -> list[SortableId]:
    """The clips the review branch may serve to one listener, in sorted id order.

    A clip is eligible when it was generated by a version that is active now (a retired or
    draft version's clips are no longer candidates worth rating), this listener has never
    been served it (neither as its requester nor as a reviewer, so not rated by them either),
    and its ratings plus the deliveries still awaiting a rating are fewer than
    ``min_ratings`` (``m``, what curation needs: more would be wasted on a clip that can
    already be judged). Whether a clip is still a candidate at all (not in the dataset,
    ready, with a representation) is for the caller to filter.

    Examples
    --------
    >>> cands = [ReviewCandidate(1, "v0", 1), ReviewCandidate(2, "v0", 3),
    ...          ReviewCandidate(3, "old", 0), ReviewCandidate(4, "v0", 1, n_open=1)]
    >>> review_eligible(cands, seen_clip_ids={4}, active_versions={"v0"})
    [1]
    """
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, int) or min_ratings < 1:
        raise InvalidInput(f"min_ratings={min_ratings!r} must be an integer >= 1")
    seen, active = set(seen_clip_ids), set(active_versions)
    ids = [c.clip_id for c in candidates
           if c.version_id in active and c.clip_id not in seen
           and c.n_ratings + c.n_open < min_ratings]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"review candidate clip {dup!r} appears more than once")
    return sorted(ids)


def dispatch(
    *,
    dataset_ids: Sequence[SortableId],
    similarity: SimilarityInput,
    rated_clip_ids: Collection[Hashable],
    versions: Mapping[IdT, float],
    rng: np.random.Generator,
    baseline_probability: float = 0.25,
    review_ids: Sequence[SortableId] = (),
    review_similarity: SimilarityInput = (),
    review_probability: float = 0.3,
) -> DispatchDecision:
    """Decide between the baseline d*, a pending new clip, and a new generation.

    Parameters
    ----------
    dataset_ids : sequence of clip ids
        Clips of the dataset *D* (may be empty).
    similarity : array [shape=(len(dataset_ids),)] or callable
        S(d, I) of each dataset clip to the request's inputs (see :func:`nearest_unrated`);
        the callable is only called on the baseline branch.
    rated_clip_ids : collection of clip ids
        Clips this listener has rated (never served again as a baseline).
    versions : mapping version_id -> A/B weight
        The active model versions.
    rng : np.random.Generator
        Seeded generator; one draw decides the branch, one more the version.
    baseline_probability : float in [0, 1]
        p_b, the chance of the baseline branch when the dataset is not empty.
    review_ids : sequence of clip ids
        The pending new clips this listener may review (see :func:`review_eligible`).
    review_similarity : array [shape=(len(review_ids),)] or callable
        S(g, I) of each of them (a callable is only called on the review branch).
    review_probability : float in [0, 1]
        p_r, the chance of the review branch when a clip awaits review;
        ``p_b + p_r <= 1``.

    Returns
    -------
    DispatchDecision

    Raises
    ------
    Conflict
        If a new clip must be generated and there is no active version.
    InvalidInput
        For a probability outside [0, 1], bad A/B weights or bad similarities.

    Examples
    --------
    >>> d = dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v0": 1.0},
    ...              rng=np.random.default_rng(0))
    >>> d.branch, d.version_id
    ('generate', 'v0')
    """
    if (isinstance(baseline_probability, bool) or not isinstance(baseline_probability,
                                                                  (int, float))
            or not 0.0 <= baseline_probability <= 1.0):
        raise InvalidInput(f"baseline_probability={baseline_probability!r} must be in [0, 1]")
    if (isinstance(review_probability, bool) or not isinstance(review_probability, (int, float))
            or not 0.0 <= review_probability <= 1.0):
        raise InvalidInput(f"review_probability={review_probability!r} must be in [0, 1]")
    if baseline_probability + review_probability > 1.0 + 1e-12:
        raise InvalidInput(f"baseline_probability={baseline_probability!r} + review_probability="
                           f"{review_probability!r} must not exceed 1")
    draw = float(rng.random())
    # (branch, candidates, their similarity, why none, why the one served, why all were rated)
    served: tuple[Branch, Sequence[SortableId], SimilarityInput, str, str, str] | None
    if draw < baseline_probability:
        served = ("baseline", dataset_ids, similarity, "the dataset is empty",
                  "nearest unrated dataset clip", "the listener has rated every dataset clip")
    elif draw < baseline_probability + review_probability:
        served = ("review", review_ids, review_similarity, "no new clip awaits ratings",
                  "nearest pending new clip", "the listener has rated every pending new clip")
    else:
        served = None
    if served is None:
        reason = "generate drawn"
    else:
        branch, ids, sims, when_empty, when_found, when_all_rated = served
        if len(ids) == 0:
            reason = f"{branch} drawn but {when_empty}"
        else:
            found = nearest_unrated(ids, sims, rated_clip_ids)
            if found is not None:
                clip_id, sim = found
                return DispatchDecision(branch, clip_id, None, similarity=sim,
                                        reason=f"{branch} drawn: {when_found}")
            reason = f"{branch} drawn but {when_all_rated}"
    version_id = choose_version(versions, rng)
    logger.debug("dispatch: %s -> generate with version %r", reason, version_id)
    return DispatchDecision("generate", None, version_id, reason=reason)
