"""Updating the targets: which new clips join the dataset *D* (the paper's §3.1).

Rule: a new clip *g* with at least ``m`` counted ratings joins *D* when
``R(g) > R(d*) + margin``, where d* is the dataset clip most similar to *g* (by S, ties to
the smallest id). While *D* is empty (cold start) the top ``N`` clips by R among those with at
least ``m`` ratings join (ties: higher confidence, then more ratings, then smaller id) — but at
most ``ceil(max_share · n)`` of the ``n`` judged candidates (default: the better half), so
that a cold start with fewer rated clips than ``N`` is still a selection and does not admit
badly rated clips only because there are few.

Candidates are judged independently against the same snapshot of *D* (a clip admitted in this
pass is not the d* of another candidate in the same pass), so the outcome does not depend on
the order of the candidates; near-duplicates admitted together are resolved by the purge cycle.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from encore.errors import InvalidInput
from encore.feedback.ids import SortableId
from encore.feedback.rating import check_unit

__all__ = ["Candidate", "CurationDecision", "DatasetClip", "curate"]

Action = Literal["admit", "reject", "pending"]


@dataclass(frozen=True)
class Candidate:
    """A generated clip that may join the dataset.

    Attributes
    ----------
    clip_id : hashable
    score : float in [0, 1]
        R(g), from :func:`~encore.feedback.rating.score_clip`.
    confidence : float in [0, 1]
        c(g); it travels with the clip into the dataset (the fine-tuning weight).
    n_ratings : int >= 0
        Counted ratings with positive weight.
    """

    clip_id: Hashable
    score: float
    confidence: float
    n_ratings: int

    def __post_init__(self) -> None:
        check_unit(f"score of clip {self.clip_id!r}", self.score)
        check_unit(f"confidence of clip {self.clip_id!r}", self.confidence)
        if isinstance(self.n_ratings, bool) or not isinstance(self.n_ratings, (int, np.integer)) \
                or self.n_ratings < 0:
            raise InvalidInput(f"n_ratings={self.n_ratings!r} of clip {self.clip_id!r} must be "
                               "an integer >= 0")


@dataclass(frozen=True)
class DatasetClip:
    """A clip currently in the dataset *D*.

    Attributes
    ----------
    clip_id : sortable id (int, str, ...); ties go to the smaller
    score : float in [0, 1]
        Its current R (updated by the baseline ratings it collects).
    confidence : float in [0, 1]
    added_at : datetime or None
        When it joined *D* (the purge's age rule needs it).
    version_id : hashable or None
        The model version that generated it (the purge's retired-version rule).
    """

    clip_id: SortableId
    score: float
    confidence: float = 1.0
    added_at: datetime | None = None
    version_id: Hashable | None = None

    def __post_init__(self) -> None:
        check_unit(f"score of dataset clip {self.clip_id!r}", self.score)
        check_unit(f"confidence of dataset clip {self.clip_id!r}", self.confidence)


@dataclass(frozen=True)
class CurationDecision:
    """What happens to one candidate.

    Attributes
    ----------
    clip_id : hashable
    action : "admit", "reject" or "pending"
        ``pending``: not enough ratings yet; judge again later.
    reason : str
        Human-readable, names the numbers compared.
    baseline_id : hashable or None
        d*, the nearest dataset clip compared against (None at cold start).
    baseline_score : float or None
        R(d*).
    similarity : float or None
        S(g, d*).
    confidence : float
        c(g), stored with the dataset entry when admitted.
    """

    clip_id: Hashable
    action: Action
    reason: str
    baseline_id: Hashable | None = None
    baseline_score: float | None = None
    similarity: float | None = None
    confidence: float = 0.0


def curate(
    candidates: Sequence[Candidate],
    dataset: Sequence[DatasetClip],
    similarity: np.ndarray | None = None,
    *,
    min_ratings: int = 3,
    cold_start_top_n: int = 100,
    cold_start_max_share: float = 0.5,
    margin: float = 0.0,
) -> tuple[CurationDecision, ...]:
    """Decide which candidates join the dataset.

    Parameters
    ----------
    candidates : sequence of Candidate
        New clips to judge (clips already in ``dataset`` are rejected as such).
    dataset : sequence of DatasetClip
        The current dataset *D* (may be empty: cold start).
    similarity : np.ndarray [shape=(len(candidates), len(dataset))] or None
        S(g, d) in [0, 1]; may be None only when ``dataset`` is empty.
    min_ratings : int >= 1
        m, the ratings a candidate needs before it is judged.
    cold_start_top_n : int >= 1
        N, how many clips the cold start admits at most.
    cold_start_max_share : float in (0, 1]
        The cold start admits at most ``ceil(share · n)`` of the ``n`` candidates with
        enough ratings (1: no cap, the plain top N).
    margin : float >= 0
        Required lead of R(g) over R(d*) (0: the paper's strict ``>``).

    Returns
    -------
    tuple of CurationDecision
        One per candidate, in the order of ``candidates``.

    Examples
    --------
    >>> d = curate([Candidate("g", 0.7, 0.8, 3)], [DatasetClip("d", 0.6)], np.array([[0.9]]))
    >>> d[0].action, d[0].baseline_id
    ('admit', 'd')
    """
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, int) or min_ratings < 1:
        raise InvalidInput(f"min_ratings={min_ratings!r} must be an integer >= 1")
    if isinstance(cold_start_top_n, bool) or not isinstance(cold_start_top_n, int) \
            or cold_start_top_n < 1:
        raise InvalidInput(f"cold_start_top_n={cold_start_top_n!r} must be an integer >= 1")
    if (isinstance(cold_start_max_share, bool)
            or not isinstance(cold_start_max_share, (int, float))
            or not 0.0 < cold_start_max_share <= 1.0):
        raise InvalidInput(f"cold_start_max_share={cold_start_max_share!r} must be in (0, 1]")
    if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise InvalidInput(f"margin={margin!r} must be a finite number >= 0")
    ids = [c.clip_id for c in candidates]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"candidate clip {dup!r} appears more than once")
    in_dataset = {d.clip_id for d in dataset}
    if len(in_dataset) != len(dataset):
        raise InvalidInput("a clip appears more than once in the dataset")

    decisions: dict[int, CurationDecision] = {}
    judged: list[int] = []
    for k, cand in enumerate(candidates):
        if cand.clip_id in in_dataset:
            decisions[k] = CurationDecision(cand.clip_id, "reject", "already in the dataset",
                                            confidence=cand.confidence)
        elif cand.n_ratings < min_ratings:
            decisions[k] = CurationDecision(
                cand.clip_id, "pending",
                f"needs {min_ratings} ratings, has {cand.n_ratings}", confidence=cand.confidence)
        else:
            judged.append(k)

    if not dataset:
        ranked = sorted(judged, key=lambda k: (-candidates[k].score, -candidates[k].confidence,
                                               -candidates[k].n_ratings, candidates[k].clip_id))
        # small epsilon: 0.5 * 80 must stay 40 whatever the float rounding
        share_cap = math.ceil(cold_start_max_share * len(ranked) - 1e-9)
        admitted = min(cold_start_top_n, share_cap)
        limit = (f"top {admitted}: N={cold_start_top_n}, at most {cold_start_max_share:.0%} "
                 f"of {len(ranked)} rated")
        for rank, k in enumerate(ranked, start=1):
            cand = candidates[k]
            if rank <= admitted:
                reason = (f"cold start: rank {rank} of {len(ranked)} by R={cand.score:.4f} "
                          f"({limit} join)")
                decisions[k] = CurationDecision(cand.clip_id, "admit", reason,
                                                confidence=cand.confidence)
            else:
                reason = (f"cold start: rank {rank} of {len(ranked)} by R={cand.score:.4f} is "
                          f"outside the {limit}")
                decisions[k] = CurationDecision(cand.clip_id, "reject", reason,
                                                confidence=cand.confidence)
        return tuple(decisions[k] for k in range(len(candidates)))

    sim = _check_similarity(similarity, len(candidates), len(dataset))
    order = sorted(range(len(dataset)), key=lambda j: dataset[j].clip_id)
    for k in judged:
        cand = candidates[k]
        best = order[0]
        for j in order[1:]:
            if sim[k, j] > sim[k, best]:  # strict: ties keep the smaller id
                best = j
        base = dataset[best]
        s = float(sim[k, best])
        if cand.score > base.score + margin:
            action: Action = "admit"
            reason = (f"R={cand.score:.4f} beats its nearest dataset clip {base.clip_id!r} "
                      f"(S={s:.3f}, R={base.score:.4f})")
        else:
            action = "reject"
            reason = (f"R={cand.score:.4f} does not beat its nearest dataset clip "
                      f"{base.clip_id!r} (S={s:.3f}, R={base.score:.4f}"
                      + (f", margin {margin:g})" if margin else ")"))
        decisions[k] = CurationDecision(cand.clip_id, action, reason, baseline_id=base.clip_id,
                                        baseline_score=base.score, similarity=s,
                                        confidence=cand.confidence)
    return tuple(decisions[k] for k in range(len(candidates)))


def _check_similarity(similarity: np.ndarray | None, n_rows: int, n_cols: int) -> np.ndarray:
    if similarity is None:
        raise InvalidInput(f"similarity of shape ({n_rows}, {n_cols}) is required when the "
                           "dataset is not empty")
    sim = np.asarray(similarity, dtype=float)
    if sim.shape != (n_rows, n_cols):
        raise InvalidInput(f"similarity has shape {sim.shape}, expected ({n_rows}, {n_cols})")
    bad = ~np.isfinite(sim) | (sim < 0) | (sim > 1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(f"similarity[{i}, {j}]={float(sim[i, j])!r} must be in [0, 1]")
    return sim


@dataclass(frozen=True)
class CentredScore:
    """A clip judged against its input song's usual and its raters' usual ratings.

    ``score``: weighted mean over its ratings of ``(u − Δ_rater) − m_song`` in stars — how
    much better (> 0) or worse (< 0) it did than clips of the same input song usually do,
    rater bias removed; ``n_ratings``: how many ratings it rests on.
    """

    clip_id: Hashable
    score: float
    n_ratings: int


def centred_scores(
    ratings: Sequence[tuple[Hashable, Hashable, float]],
    song_of_clip: Mapping[Hashable, Hashable],
    biases: Mapping[Hashable, float],
    weights: Mapping[Hashable, float],
    *,
    pseudo_count: float = 3.0,
) -> dict[Hashable, CentredScore]:
    """Centred scores of every rated clip (the ``centred`` curation rule).

    Parameters
    ----------
    ratings : sequence of (rater_id, clip_id, stars)
    song_of_clip : mapping clip_id -> song key
        The clip's input song(s) (a hashable key); clips of one key are compared.
    biases, weights : mappings rater_id -> float
        The rater model's bias Δ and weight ω (missing: 0 and 1; weight 0 drops a rater).
    pseudo_count : float > 0
        A song's mean is shrunk towards the global mean with this many pseudo-ratings.

    Closeness to the input plays no part: a clip that copies its song is judged like any
    other clip of that song (S stays the duplicate guard of the purge).
    """
    if not pseudo_count > 0:
        raise InvalidInput(f"pseudo_count={pseudo_count!r} must be > 0")
    rows = []
    for rater, clip, stars in ratings:
        w = float(weights.get(rater, 1.0))
        if w <= 0 or clip not in song_of_clip:
            continue
        rows.append((clip, song_of_clip[clip], float(stars) - float(biases.get(rater, 0.0)), w))
    if not rows:
        return {}
    total_w = sum(r[3] for r in rows)
    mu = sum(r[2] * r[3] for r in rows) / total_w
    song_sum: dict[Hashable, list[float]] = {}
    for _, song, u, w in rows:
        acc = song_sum.setdefault(song, [0.0, 0.0])
        acc[0] += u * w
        acc[1] += w
    song_mean = {s: (a[0] + pseudo_count * mu) / (a[1] + pseudo_count) for s, a in song_sum.items()}
    clip_sum: dict[Hashable, list[float]] = {}
    for clip, song, u, w in rows:
        acc = clip_sum.setdefault(clip, [0.0, 0.0, 0.0])
        acc[0] += (u - song_mean[song]) * w
        acc[1] += w
        acc[2] += 1
    return {c: CentredScore(c, a[0] / a[1], int(a[2])) for c, a in clip_sum.items()}


def curate_centred(
    scores: Sequence[CentredScore],
    in_dataset: set[Hashable],
    *,
    min_ratings: int = 3,
    margin: float = 0.25,
) -> tuple[CurationDecision, ...]:
    """Admit the clips that beat their song's usual rating by more than ``margin`` stars on
    at least ``min_ratings`` ratings; reject those that do not; the rest wait."""
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, int) or min_ratings < 1:
        raise InvalidInput(f"min_ratings={min_ratings!r} must be an integer >= 1")
    if not math.isfinite(margin) or margin < 0:
        raise InvalidInput(f"margin={margin!r} must be a finite number >= 0")
    out = []
    for s in scores:
        if s.clip_id in in_dataset:
            out.append(CurationDecision(s.clip_id, "reject", "already in the dataset"))
        elif s.n_ratings < min_ratings:
            out.append(CurationDecision(s.clip_id, "pending",
                                        f"needs {min_ratings} ratings, has {s.n_ratings}"))
        elif s.score > margin:
            out.append(CurationDecision(
                s.clip_id, "admit",
                f"{s.score:+.2f} stars over its song's usual (margin {margin:g})"))
        else:
            out.append(CurationDecision(
                s.clip_id, "reject",
                f"{s.score:+.2f} stars against its song's usual does not beat the margin "
                f"{margin:g}"))
    return tuple(out)
