"""Report statistics: the paper's Table 1 and the change per iteration (issue 6).

For each input song and model version: the mean rating and the count; the overall row (all
ratings of a version pooled, as in the paper's "Overall"); the change per iteration — version
k against version k−1 in the given version order — with a percentile-bootstrap confidence
interval; and all of it split by dispatch branch (new clips vs dataset baselines).

Branches. A rating's version is always the version that generated the rated clip, whatever
branch delivered it. ``generate`` ratings come from the listener who asked for the clip,
``review`` ratings from other listeners served the same new clip (output agreement), and
``baseline`` ratings of dataset clips served as d*. The split reports ``new`` (generate and
review pooled: every rating of a clip when it was new), ``generate``, ``review`` and
``baseline``, each where present. The pooled table counts all of them for their version.

Means are of the raw 1–5 star ratings (what listeners gave, comparable to the paper's
table), optionally weighted per rating (e.g. by rater weight, so that flagged raters drop
out); counts are the ratings with positive weight.

Bootstrap. ``cluster="rater"`` (the default) resamples **raters** with replacement and takes
all their ratings of both versions; ``cluster="rating"`` resamples ratings within each version
independently. Rater resampling is the honest choice here: ratings of one rater share that
rater's bias (the P.913 model), so they are not independent draws, and the sampling unit that
generalises is the listener. Resampling single ratings understates the uncertainty whenever a
few raters give many of the ratings, and ignores that the rater mix can differ between
versions (the paper's v0 was rated by 5 users, v1 by 50). When the same raters rate both
versions, rater resampling keeps their pairing, so a shared bias cancels in the difference.
Resamples in which a version has no rating are discarded (``resamples_used`` says how many
remain); with fewer than 100 usable resamples the interval is NaN. Raters are resampled in
the sorted order of their ids, so a seed reproduces an interval only for the same ids: pass
keys that are stable across installations (the services pass user ids, not the random
pseudonyms, which made the pilot's intervals move in the second decimal). With very few raters
(< ~10) any percentile interval is rough; the counts are reported next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import DTypeLike, NDArray

from encore.errors import InvalidInput
from encore.feedback.config import BootstrapCluster
from encore.feedback.guards import ServedGuard, ServedSet
from encore.feedback.rating import validate_ratings

__all__ = [
    "Cell",
    "Comparison",
    "GainDecomposition",
    "IterationChange",
    "MeanEstimate",
    "PairedComparison",
    "PolicyValue",
    "RatingRecords",
    "RatingTable",
    "Report",
    "bootstrap_mean_difference",
    "build_report",
    "decompose_gain",
    "fair_comparisons",
    "mean_estimate",
    "off_policy_value",
    "paired_comparison",
    "rating_table",
    "record_pairs",
    "same_round_comparison",
    "two_way_bootstrap",
]

BRANCHES = ("generate", "review", "baseline")
SELECTIONS = ("taste", "explore", "single")
# the report's split: name -> the branches it pools
BRANCH_SPLIT = {"new": ("generate", "review"), "generate": ("generate",),
                "review": ("review",), "baseline": ("baseline",)}
_MIN_USABLE_RESAMPLES = 100
MIN_PAIRS = 10  # counted pairs needed before the headline uses the paired comparison
MIN_MATCHED = 10  # explore deliveries that served the taste pick, for a self-normalised interval
UNSELECTED = ("explore", "single", None)  # a uniform pick among the candidates (or only one)
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True, eq=False, init=False)
class RatingRecords:
    """Ratings with what the report groups them by (parallel arrays, one entry per rating).

    Each argument that may be None is filled with the default named below, so every
    attribute of a built record set is an array of length n.

    Attributes
    ----------
    ratings : np.ndarray [shape=(n,)]
        Stars, 1..5 in steps of 0.5.
    song_ids : np.ndarray [shape=(n,)]
        The input song (or a key for a set of input songs) of the request.
    version_ids : np.ndarray [shape=(n,)]
        The model version that generated the rated clip.
    rater_ids : np.ndarray [shape=(n,)]
    branches : np.ndarray [shape=(n,)] or None
        Dispatch branch of the delivery ("generate", "review" or "baseline"); None: all
        "generate".
    weights : np.ndarray [shape=(n,)] or None
        Per-rating weights >= 0 (e.g. rater weights); None: all 1.

    The fair comparison (issue 15) also reads, each optional:

    clip_ids : np.ndarray or None
        The rated clip (the two-way bootstrap resamples clips); None: every rating its own clip.
    selections : np.ndarray or None
        How the delivery's clip was chosen among the request's candidates: "taste", "explore",
        "single", or None (baseline and review deliveries, and generate deliveries made before
        best-of-n — treated as "single", i.e. no selection).
    propensities : np.ndarray or None
        For "explore" deliveries: the probability of the served candidate under the uniform
        draw (1 / number of candidates); NaN where unknown.
    taste_picks : np.ndarray or None
        1 where the served clip is the candidate the taste model ranked first (the highest
        predicted stars of its request), 0 where another, NaN where unknown.
    fresh : np.ndarray [dtype=bool] or None
        The clip was generated for this delivery's request; None: ``branches == "generate"``.
    rounds : np.ndarray or None
        The period (set of active versions) when the clip was delivered; None: one round.
    pair_ids : np.ndarray or None
        Two ratings sharing a pair id are the two halves of a paired delivery; None: no pairs.
    """

    ratings: NDArray[np.float64]
    song_ids: np.ndarray
    version_ids: np.ndarray
    rater_ids: np.ndarray
    branches: NDArray[np.object_]
    weights: NDArray[np.float64]
    clip_ids: np.ndarray
    selections: NDArray[np.object_]
    propensities: NDArray[np.float64]
    taste_picks: NDArray[np.float64]
    fresh: NDArray[np.bool_]
    rounds: np.ndarray
    pair_ids: NDArray[np.object_]

    def __init__(
        self,
        ratings: np.ndarray,
        song_ids: np.ndarray,
        version_ids: np.ndarray,
        rater_ids: np.ndarray,
        branches: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        clip_ids: np.ndarray | None = None,
        selections: np.ndarray | None = None,
        propensities: np.ndarray | None = None,
        taste_picks: np.ndarray | None = None,
        fresh: np.ndarray | None = None,
        rounds: np.ndarray | None = None,
        pair_ids: np.ndarray | None = None,
    ) -> None:
        checked = validate_ratings(ratings)
        n = checked.shape[0]
        arrays = {}
        for name, value in (("song_ids", song_ids), ("version_ids", version_ids),
                            ("rater_ids", rater_ids)):
            arr = np.asarray(value).reshape(-1)
            if arr.shape[0] != n:
                raise InvalidInput(f"RatingRecords.{name} has {arr.shape[0]} entries for {n} "
                                   "ratings")
            arrays[name] = arr
        branch_arr = (np.full(n, "generate", dtype=object) if branches is None
                      else np.asarray(branches, dtype=object).reshape(-1))
        if branch_arr.shape[0] != n:
            raise InvalidInput(f"RatingRecords.branches has {branch_arr.shape[0]} entries for {n} "
                               "ratings")
        bad = [b for b in set(branch_arr.tolist()) if b not in BRANCHES]
        if bad:
            raise InvalidInput(f"branch={bad[0]!r} must be 'generate', 'review' or 'baseline'")
        weight_arr = (np.ones(n) if weights is None
                      else np.asarray(weights, dtype=float).reshape(-1))
        if weight_arr.shape[0] != n:
            raise InvalidInput(f"RatingRecords.weights has {weight_arr.shape[0]} entries for {n} "
                               "ratings")
        if np.any(~np.isfinite(weight_arr) | (weight_arr < 0)):
            i = int(np.flatnonzero(~np.isfinite(weight_arr) | (weight_arr < 0))[0])
            raise InvalidInput(f"weight={float(weight_arr[i])!r} (index {i}) must be finite and "
                               ">= 0")
        object.__setattr__(self, "ratings", checked)
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "branches", branch_arr)
        object.__setattr__(self, "weights", weight_arr)

        # the fields of the fair comparison (issue 15), validated and filled with defaults
        def column(name: str, value: np.ndarray | None, default: np.ndarray,
                   dtype: DTypeLike) -> np.ndarray:
            arr = default if value is None else np.asarray(value, dtype=dtype).reshape(-1)
            if arr.shape[0] != n:
                raise InvalidInput(f"RatingRecords.{name} has {arr.shape[0]} entries for {n} "
                                   "ratings")
            return arr

        clip_arr = column("clip_ids", clip_ids, np.arange(n), object)
        selection_arr = column("selections", selections, np.full(n, None, dtype=object), object)
        bad = [x for x in set(selection_arr.tolist()) if x is not None and x not in SELECTIONS]
        if bad:
            raise InvalidInput(f"selection={bad[0]!r} must be 'taste', 'explore', 'single' or "
                               "None")
        propensity_arr = column("propensities", propensities, np.full(n, np.nan), float)
        known = np.isfinite(propensity_arr)
        if np.any(known & ((propensity_arr <= 0) | (propensity_arr > 1))):
            i = int(np.flatnonzero(known & ((propensity_arr <= 0) | (propensity_arr > 1)))[0])
            raise InvalidInput(f"propensity={float(propensity_arr[i])!r} (index {i}) must be in "
                               "(0, 1]")
        picks = column("taste_picks", taste_picks, np.full(n, np.nan), float)
        if np.any(np.isfinite(picks) & (picks != 0) & (picks != 1)):
            raise InvalidInput("RatingRecords.taste_picks must be 1, 0 or NaN (unknown)")
        fresh_arr = column("fresh", fresh, branch_arr == "generate", bool)
        round_arr = column("rounds", rounds, np.zeros(n, dtype=np.int64), object)
        pair_arr = column("pair_ids", pair_ids, np.full(n, None, dtype=object), object)
        for name, arr in (("clip_ids", clip_arr), ("selections", selection_arr),
                          ("propensities", propensity_arr), ("taste_picks", picks),
                          ("fresh", fresh_arr), ("rounds", round_arr), ("pair_ids", pair_arr)):
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    def subset(self, mask: np.ndarray) -> RatingRecords:
        """The records where ``mask`` is True."""
        def part(name: str) -> np.ndarray:
            return getattr(self, name)[mask]

        return RatingRecords(
            self.ratings[mask], self.song_ids[mask], self.version_ids[mask],
            self.rater_ids[mask], part("branches"), part("weights"), clip_ids=part("clip_ids"),
            selections=part("selections"), propensities=part("propensities"),
            taste_picks=part("taste_picks"), fresh=part("fresh"), rounds=part("rounds"),
            pair_ids=part("pair_ids"))


@dataclass(frozen=True)
class Cell:
    """Mean rating and count of one (song, version); ``song_id`` None for the overall row."""

    song_id: Hashable | None
    version_id: Hashable
    mean: float
    count: int


@dataclass(frozen=True)
class IterationChange:
    """Mean rating of ``version_id`` minus that of ``previous_version_id``, with its CI.

    ``difference``, ``ci_low`` and ``ci_high`` are NaN when a version has no rating (or too
    few usable resamples for the interval). ``song_id`` None: all songs pooled.
    """

    song_id: Hashable | None
    version_id: Hashable
    previous_version_id: Hashable
    difference: float
    ci_low: float
    ci_high: float
    n_ratings: int
    n_ratings_previous: int
    n_raters: int
    n_raters_previous: int
    resamples_used: int
    cluster: BootstrapCluster
    level: float


@dataclass(frozen=True)
class RatingTable:
    """The paper's Table 1 with the change per iteration."""

    versions: tuple[Hashable, ...]
    songs: tuple[Hashable, ...]
    cells: tuple[Cell, ...]
    overall: tuple[Cell, ...]
    changes: tuple[IterationChange, ...]
    changes_by_song: tuple[IterationChange, ...]

    def cell(self, song_id: Hashable | None, version_id: Hashable) -> Cell | None:
        """The cell of a song (None: the overall row) and version, or None if it has no rating."""
        rows = self.overall if song_id is None else self.cells
        for c in rows:
            if c.song_id == song_id and c.version_id == version_id:
                return c
        return None


@dataclass(frozen=True)
class PairedComparison:
    """Paired deliveries of ``version_id`` (B) and ``reference_id`` (A): the same listener,
    input songs, candidate seeds and strength, served blind by the two versions.

    ``mean_difference`` is the mean over pairs of B − A (stars) with a listener-clustered
    percentile-bootstrap interval (listeners resampled with all their pairs); ``win_rate`` the
    share of pairs B won (ties count half) with its interval from the same resamples;
    ``listener_gains`` each listener's mean B − A (sorted), summarised by ``gain_quantiles``
    (min, 25 %, median, 75 %, max); ``share_improved`` / ``share_worse`` the listeners whose
    mean gain is above / below zero.
    """

    version_id: Hashable
    reference_id: Hashable
    n_pairs: int
    n_listeners: int
    mean_difference: float
    ci_low: float
    ci_high: float
    win_rate: float
    win_rate_ci_low: float
    win_rate_ci_high: float
    share_improved: float
    share_worse: float
    listener_gains: tuple[float, ...]
    gain_quantiles: tuple[float, ...]
    resamples_used: int
    level: float


@dataclass(frozen=True)
class PolicyValue:
    """Off-policy value of serving the taste model's pick, from uniform (explore) deliveries.

    ``logged_mean``: mean rating of the explore deliveries (the value of a uniform pick);
    ``ips``: mean of r·1[served = taste pick]/propensity (unbiased); ``snips``: the
    self-normalised form Σ r·m/p / Σ m/p (consistent, far less variable: with uniform
    propensities it is the mean rating of the explore deliveries that happened to serve the
    taste pick); ``gain`` = ``snips`` − ``logged_mean`` — selection alone. Intervals:
    listener-clustered percentile bootstrap, all from the same resamples; those of ``snips``
    and ``gain`` are NaN with fewer than ``MIN_MATCHED`` (10) deliveries that served the
    taste pick.
    """

    version_id: Hashable
    n: int
    n_matched: int
    n_listeners: int
    logged_mean: float
    ips: float
    ips_ci_low: float
    ips_ci_high: float
    snips: float
    snips_ci_low: float
    snips_ci_high: float
    gain: float
    gain_ci_low: float
    gain_ci_high: float
    resamples_used: int
    level: float


@dataclass(frozen=True)
class Comparison:
    """One estimate of ``version_id`` − ``reference_id`` (stars), with how it was measured.

    ``method``: ``"paired"`` (mean paired difference, listener-clustered interval),
    ``"same-round fresh"`` (fresh clips only — the clip generated for the rated request —
    within the rounds where both were served, each round's difference weighted by its ratings;
    two-way bootstrap over raters and clips), ``"off-policy"`` (selection alone from explore
    deliveries; ``policy`` holds the estimate) or ``"taste vs explore"`` (selection alone from
    one version's taste and explore deliveries, same-round fresh). ``n`` / ``n_reference``:
    ratings (pairs for paired) on each side; ``n_raters`` distinct raters (listeners);
    ``n_clips`` distinct clips; ``rounds`` the rounds used.
    """

    version_id: Hashable
    reference_id: Hashable
    method: str
    difference: float
    ci_low: float
    ci_high: float
    n: int
    n_reference: int
    n_raters: int
    n_clips: int
    resamples_used: int
    level: float
    rounds: tuple[Hashable, ...] = ()
    paired: PairedComparison | None = None
    policy: PolicyValue | None = None


@dataclass(frozen=True)
class GainDecomposition:
    """A version's gain over a reference split into its parts (each a :class:`Comparison` or
    None where the data cannot say): ``selection`` — the reference's weights served by the
    taste model's pick vs a uniform pick; ``weights`` — the version's weights vs the
    reference's, both uniform picks (explore vs explore, same round, fresh); ``both`` — the
    version as served vs the reference's uniform pick (paired where pairs exist).
    ``remainder`` = both − selection − weights: interaction plus noise (NaN if a part is
    missing)."""

    version_id: Hashable
    reference_id: Hashable
    selection: Comparison | None
    weights: Comparison | None
    both: Comparison | None
    remainder: float


@dataclass(frozen=True)
class MeanEstimate:
    """Mean rating of a set of ratings (``label``: a version, or ``"dataset clips"``) with a
    two-way (raters and clips) percentile-bootstrap interval."""

    label: Hashable
    mean: float
    ci_low: float
    ci_high: float
    n: int
    n_raters: int
    n_clips: int
    resamples_used: int
    level: float


@dataclass(frozen=True)
class Report:
    """Everything pooled (``table``) and split by dispatch branch (``by_branch``: keys of
    ``BRANCH_SPLIT`` that have ratings — ``new``, ``generate``, ``review``, ``baseline``).

    The fair comparison (issue 15): ``headline`` — each version against its parent and against
    the reference (v0): paired where there are at least ``min_pairs`` counted pairs, else
    same-round fresh clips; ``paired`` and ``same_round`` — every paired and every same-round
    fresh comparison computed (the headline picks one of them); ``decomposition`` — the gain's
    parts; ``fresh_means`` — each version's mean over fresh clips (the plot's points and error
    bars); ``baseline`` — the dataset clips served as baselines, apart from every version.
    ``served`` and ``guards``: each version's served clips' diversity and median similarity to
    the input, and the guards against the reference (:mod:`encore.feedback.guards`; filled
    in by the caller, which has the clips' features).
    """

    table: RatingTable
    by_branch: dict[str, RatingTable]
    headline: tuple[Comparison, ...] = ()
    paired: tuple[PairedComparison, ...] = ()
    same_round: tuple[Comparison, ...] = ()
    decomposition: tuple[GainDecomposition, ...] = ()
    fresh_means: tuple[MeanEstimate, ...] = ()
    baseline: MeanEstimate | None = None
    served: tuple[ServedSet, ...] = ()
    guards: tuple[ServedGuard, ...] = ()


def bootstrap_mean_difference(
    ratings: np.ndarray,
    is_new: np.ndarray,
    clusters: np.ndarray,
    *,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    cluster: BootstrapCluster = "rater",
) -> tuple[float, float, float, int]:
    """Difference of (weighted) means, new minus old, with a percentile-bootstrap CI.

    Parameters
    ----------
    ratings : np.ndarray [shape=(n,)]
    is_new : np.ndarray [shape=(n,), dtype=bool]
        True for ratings of the newer version, False for the older one.
    clusters : np.ndarray [shape=(n,)]
        Rater of each rating (used when ``cluster="rater"``).
    rng : np.random.Generator
    weights : np.ndarray [shape=(n,)] or None
    n_resamples : int >= 1
    level : float in (0, 1)
    cluster : "rater" or "rating"

    Returns
    -------
    (difference, ci_low, ci_high, resamples_used)
        NaN where undefined (see the module docstring).
    """
    r = np.asarray(ratings, dtype=float)
    new = np.asarray(is_new, dtype=bool)
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=float)
    if not (r.shape == new.shape == w.shape == np.asarray(clusters).shape):
        raise InvalidInput("ratings, is_new, clusters and weights must have the same shape")
    _check_bootstrap(n_resamples, level)
    wn, wo = w[new].sum(), w[~new].sum()
    if wn <= 0 or wo <= 0:
        return float("nan"), float("nan"), float("nan"), 0
    diff = float(np.dot(w[new], r[new]) / wn - np.dot(w[~new], r[~new]) / wo)

    if cluster == "rater":
        code, m = _codes(np.asarray(clusters))
        sums = [np.bincount(code[sel], (w * r)[sel], m) for sel in (new, ~new)]
        mass = [np.bincount(code[sel], w[sel], m) for sel in (new, ~new)]
        draws = _chunked(n_resamples, m, lambda b: _cluster_draw(rng, b, m, sums, mass))
    elif cluster == "rating":
        groups = [(w * r)[new], w[new], (w * r)[~new], w[~new]]
        size = max(int(new.sum()), int((~new).sum()))
        draws = _chunked(n_resamples, size, lambda b: _stratified_draw(rng, b, groups))
    else:
        raise InvalidInput(f"cluster={cluster!r} must be 'rater' or 'rating'")
    lo, hi, used = _interval(draws, level, n_resamples)
    return diff, lo, hi, used


def _chunked(n_resamples: int, width: int, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    out = [draw(min(step, n_resamples - start)) for start in range(0, n_resamples, step)]
    return np.concatenate(out)


def _cluster_draw(rng: np.random.Generator, b: int, m: int, sums: list[np.ndarray],
                  mass: list[np.ndarray]) -> np.ndarray:
    idx = rng.integers(0, m, size=(b, m))
    s_new, s_old = sums[0][idx].sum(axis=1), sums[1][idx].sum(axis=1)
    n_new, n_old = mass[0][idx].sum(axis=1), mass[1][idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_new > 0) & (n_old > 0), s_new / n_new - s_old / n_old, np.nan)


def _stratified_draw(rng: np.random.Generator, b: int, groups: list[np.ndarray]) -> np.ndarray:
    wr_new, w_new, wr_old, w_old = groups
    i_new = rng.integers(0, w_new.shape[0], size=(b, w_new.shape[0]))
    i_old = rng.integers(0, w_old.shape[0], size=(b, w_old.shape[0]))
    n_new, n_old = w_new[i_new].sum(axis=1), w_old[i_old].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_new > 0) & (n_old > 0),
                        wr_new[i_new].sum(axis=1) / n_new - wr_old[i_old].sum(axis=1) / n_old,
                        np.nan)


def rating_table(
    records: RatingRecords,
    *,
    rng: np.random.Generator,
    versions: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    cluster: BootstrapCluster = "rater",
) -> RatingTable:
    """Mean rating and count per (song, version), the overall row, and changes per iteration.

    Parameters
    ----------
    records : RatingRecords
    rng : np.random.Generator
        Seeded generator for the bootstrap.
    versions : sequence of version ids, optional
        Iteration order (v0, v1, …); changes compare each version with the one before it.
        Default: the sorted version ids present. Versions listed but without ratings get no
        cells and NaN changes.
    n_resamples, level, cluster
        Bootstrap settings (see :func:`bootstrap_mean_difference`).

    Returns
    -------
    RatingTable
    """
    present = sorted(set(records.version_ids.tolist()))
    order = tuple(present if versions is None else versions)
    if len(set(order)) != len(order):
        raise InvalidInput(f"versions {order!r} contain a duplicate")
    missing = [v for v in present if v not in order]
    if missing:
        raise InvalidInput(f"version {missing[0]!r} has ratings but is not in versions {order!r}")
    songs = tuple(sorted(set(records.song_ids.tolist())))
    w = records.weights

    def cell(song: Hashable | None, version: Hashable) -> Cell | None:
        mask = records.version_ids == version
        if song is not None:
            mask &= records.song_ids == song
        mass = float(w[mask].sum())
        if mass <= 0:
            return None
        mean = float(np.dot(w[mask], records.ratings[mask]) / mass)
        return Cell(song, version, mean, int(np.count_nonzero(w[mask] > 0)))

    cells = tuple(c for s in songs for v in order if (c := cell(s, v)) is not None)
    overall = tuple(c for v in order if (c := cell(None, v)) is not None)

    def change(song: Hashable | None, new_v: Hashable, old_v: Hashable) -> IterationChange:
        mask = (records.version_ids == new_v) | (records.version_ids == old_v)
        if song is not None:
            mask &= records.song_ids == song
        is_new = records.version_ids[mask] == new_v
        wm = w[mask]
        diff, lo, hi, used = bootstrap_mean_difference(
            records.ratings[mask], is_new, records.rater_ids[mask], rng=rng, weights=wm,
            n_resamples=n_resamples, level=level, cluster=cluster)
        raters = records.rater_ids[mask]
        return IterationChange(
            song_id=song, version_id=new_v, previous_version_id=old_v, difference=diff,
            ci_low=lo, ci_high=hi,
            n_ratings=int(np.count_nonzero(wm[is_new] > 0)),
            n_ratings_previous=int(np.count_nonzero(wm[~is_new] > 0)),
            n_raters=len(set(raters[is_new & (wm > 0)].tolist())),
            n_raters_previous=len(set(raters[~is_new & (wm > 0)].tolist())),
            resamples_used=used, cluster=cluster, level=level)

    pairs = list(zip(order[:-1], order[1:], strict=True))
    changes = tuple(change(None, new_v, old_v) for old_v, new_v in pairs)
    changes_by_song = tuple(change(s, new_v, old_v) for s in songs for old_v, new_v in pairs)
    return RatingTable(versions=order, songs=songs, cells=cells, overall=overall,
                       changes=changes, changes_by_song=changes_by_song)


class _TableSettings(TypedDict):
    """What :func:`build_report` passes to each :func:`rating_table`."""

    versions: Sequence[Hashable]
    n_resamples: int
    level: float
    cluster: BootstrapCluster


class _Bootstrap(TypedDict):
    """The bootstrap settings passed on to each comparison and estimate."""

    rng: np.random.Generator
    n_resamples: int
    level: float


def build_report(
    records: RatingRecords,
    *,
    rng: np.random.Generator,
    versions: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    cluster: BootstrapCluster = "rater",
    parents: dict[Hashable, Hashable | None] | None = None,
    reference: Hashable | None = None,
    min_pairs: int = MIN_PAIRS,
) -> Report:
    """The report's numbers: :func:`rating_table` pooled and per dispatch branch, and the fair
    comparison — :func:`fair_comparisons` (headline, paired, same round), the
    :func:`decompose_gain` of each compared pair of versions, each version's mean over fresh
    clips and the baseline ratings apart (:func:`mean_estimate`, two-way intervals).

    ``parents``: each version's parent (default the previous version in ``versions``);
    ``reference``: the version everything is also compared with (default the first).

    Examples
    --------
    >>> rec = RatingRecords(np.array([3.0, 4.0, 2.0, 4.0]), np.array(["s1"] * 4),
    ...                     np.array(["v0", "v0", "v1", "v1"]), np.array(["a", "b", "a", "b"]))
    >>> rep = build_report(rec, rng=np.random.default_rng(0), n_resamples=200)
    >>> rep.table.cell("s1", "v0").mean, rep.table.changes[0].difference
    (3.5, -0.5)
    """
    if versions is None:
        versions = sorted(set(records.version_ids.tolist()))
    kwargs: _TableSettings = {"versions": versions, "n_resamples": n_resamples, "level": level,
                              "cluster": cluster}
    table = rating_table(records, rng=rng, **kwargs)
    by_branch = {}
    for branch, pooled in BRANCH_SPLIT.items():
        mask = np.isin(records.branches, pooled)
        if mask.any():
            by_branch[branch] = rating_table(records.subset(mask), rng=rng, **kwargs)
    boot: _Bootstrap = {"rng": rng, "n_resamples": n_resamples, "level": level}
    headline, paired, same = fair_comparisons(records, versions=versions, parents=parents,
                                              reference=reference, min_pairs=min_pairs,
                                              **boot)
    decomposition = tuple(decompose_gain(records, c.version_id, c.reference_id,
                                         min_pairs=min_pairs, **boot)
                          for c in headline)
    fresh_means = tuple(
        m for v in versions
        if (m := mean_estimate(records, records.fresh & (records.version_ids == v),
                               v, **boot)) is not None)
    baseline = mean_estimate(records, records.branches == "baseline", "dataset clips", **boot)
    return Report(table=table, by_branch=by_branch, headline=headline, paired=paired,
                  same_round=same, decomposition=decomposition, fresh_means=fresh_means,
                  baseline=baseline)


# --- the fair comparison (issue 15): paired deliveries, two-way bootstrap, off-policy value ---



def _check_bootstrap(n_resamples: int, level: float) -> None:
    if not 0 < level < 1:
        raise InvalidInput(f"level={level!r} must be in (0, 1)")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise InvalidInput(f"n_resamples={n_resamples!r} must be an integer >= 1")


def _interval(draws: np.ndarray, level: float, n_resamples: int) -> tuple[float, float, int]:
    """Percentile interval of the finite draws (NaN with too few usable resamples)."""
    draws = draws[np.isfinite(draws)]
    if draws.size < min(_MIN_USABLE_RESAMPLES, n_resamples):
        return float("nan"), float("nan"), int(draws.size)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi), int(draws.size)


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..m-1 of ``values`` (in sorted order of the values) and m."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    _, code = np.unique(values, return_inverse=True)
    code = code.reshape(-1)
    return code, int(code.max()) + 1


def _multiplicities(rng: np.random.Generator, b: int, m: int) -> np.ndarray:
    """(b, m): how often each of m units is drawn in each of b resamples of size m."""
    if m == 0:
        return np.zeros((b, 0))
    idx = rng.integers(0, m, size=(b, m)) + (np.arange(b) * m)[:, None]
    return np.bincount(idx.ravel(), minlength=b * m).reshape(b, m).astype(float)


def two_way_bootstrap(
    ratings: np.ndarray,
    rater_ids: np.ndarray,
    clip_ids: np.ndarray,
    *,
    rng: np.random.Generator,
    is_new: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> tuple[float, float, float, int]:
    """Mean rating (``is_new`` None) or difference of means, new − old, with a two-way
    percentile-bootstrap interval that resamples raters **and** clips.

    Each resample draws the raters with replacement and, independently, the clips with
    replacement (within each side: a clip belongs to one version); a rating counts with the
    product of its rater's and its clip's multiplicities (times its weight). So all ratings of
    a rater move together, and all ratings of a clip move together — the two sources of
    dependence in crossed rating data, which a one-way bootstrap treats as independent. Only
    clips rated by two or more raters are resampled as clips: a clip with one rater is nested
    in that rater and moves with it (resampling it again would count its noise twice), so
    with no shared clip this is the rater-clustered bootstrap. Where clips are crossed with
    raters the product scheme is slightly conservative (its variance counts the rating noise
    in both factors).

    ``strata`` (e.g. rounds): the difference is taken within each stratum that has ratings on
    both sides and averaged with weights proportional to the stratum's (weighted) ratings;
    strata with one side only are dropped. Resamples in which no stratum keeps both sides are
    discarded.

    Returns
    -------
    (estimate, ci_low, ci_high, resamples_used)
        NaN where undefined; fewer than 100 usable resamples → NaN interval.
    """
    r = np.asarray(ratings, dtype=float).reshape(-1)
    n = r.shape[0]
    raters = np.asarray(rater_ids).reshape(-1)
    clips = np.asarray(clip_ids).reshape(-1)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    two = is_new is not None
    group = np.zeros(n, dtype=bool) if is_new is None else np.asarray(is_new, dtype=bool).reshape(-1)
    st = (np.zeros(n, dtype=np.int64) if strata is None or not two
          else np.asarray(strata).reshape(-1))
    if not (raters.shape[0] == clips.shape[0] == w.shape[0] == group.shape[0]
            == st.shape[0] == n):
        raise InvalidInput("ratings, rater_ids, clip_ids, is_new, strata and weights must have "
                           "the same length")
    _check_bootstrap(n_resamples, level)
    nan = float("nan")
    keep = w > 0
    s_code, n_strata = _codes(st.astype(str) if st.dtype == object else st)
    if two and n:
        has_new = np.bincount(s_code[keep & group], minlength=n_strata) > 0
        has_old = np.bincount(s_code[keep & ~group], minlength=n_strata) > 0
        keep &= (has_new & has_old)[s_code]
    if not keep.any():
        return nan, nan, nan, 0
    r, w, raters, clips, group, s_code = (a[keep] for a in (r, w, raters, clips, group, s_code))
    s_code, n_strata = _codes(s_code)
    cell = s_code * 2 + group if two else np.zeros(r.shape[0], dtype=np.int64)
    k = 2 * n_strata if two else 1
    onehot = np.zeros((r.shape[0], k))
    onehot[np.arange(r.shape[0]), cell] = 1.0
    onehot_r = onehot * r[:, None]
    pi = np.bincount(s_code, w, n_strata)

    def estimate(mass: np.ndarray, sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / mass
            if not two:
                return means[:, 0]
            diff = means[:, 1::2] - means[:, 0::2]
            ok = np.isfinite(diff)
            den = np.where(ok, pi, 0.0).sum(axis=1)
            return np.where(ok, diff * pi, 0.0).sum(axis=1) / den

    point = float(estimate((w @ onehot)[None], (w @ onehot_r)[None])[0])
    r_code, n_raters = _codes(raters)
    c_key, _ = _codes(clips.astype(str) if clips.dtype == object else clips)
    c_code, n_clips = _codes(c_key * 2 + group)
    c_group = np.zeros(n_clips, dtype=bool)
    c_group[c_code] = group
    # a clip heard by one rater only is nested in that rater: it moves with the rater
    pairs = np.unique(c_code.astype(np.int64) * max(n_raters, 1) + r_code)
    crossed = np.bincount(pairs // max(n_raters, 1), minlength=n_clips) >= 2
    clip_sets = [np.flatnonzero((c_group == g) & crossed) for g in (False, True)]

    def draw(b: int) -> np.ndarray:
        mr = _multiplicities(rng, b, n_raters)
        mc = np.ones((b, n_clips))
        for cs in clip_sets:
            if cs.size:
                mc[:, cs] = _multiplicities(rng, b, cs.size)
        wb = mr[:, r_code] * mc[:, c_code] * w
        return estimate(wb @ onehot, wb @ onehot_r)

    draws = _chunked(n_resamples, r.shape[0] + n_raters + n_clips, draw)
    lo, hi, used = _interval(draws, level, n_resamples)
    return point, lo, hi, used


def paired_comparison(
    ratings: np.ndarray,
    reference_ratings: np.ndarray,
    listener_ids: np.ndarray,
    *,
    rng: np.random.Generator,
    version_id: Hashable = None,
    reference_id: Hashable = None,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> PairedComparison:
    """Paired comparison of a version (``ratings``, B) with a reference (``reference_ratings``,
    A): one entry per pair, ``listener_ids`` the listener who got both halves.

    The interval resamples **listeners** with all their pairs (a listener's pairs share that
    listener's taste and scale); with fewer than 2 listeners it is NaN.

    Examples
    --------
    >>> pc = paired_comparison(np.array([4.0, 3.0, 5.0]), np.array([3.0, 3.0, 4.0]),
    ...                        np.array([1, 1, 2]), rng=np.random.default_rng(0),
    ...                        n_resamples=200)
    >>> round(pc.mean_difference, 3), pc.win_rate, pc.share_improved, pc.listener_gains
    (0.667, 0.8333333333333334, 1.0, (0.5, 1.0))
    """
    b_r = np.asarray(ratings, dtype=float).reshape(-1)
    a_r = np.asarray(reference_ratings, dtype=float).reshape(-1)
    lis = np.asarray(listener_ids).reshape(-1)
    if not b_r.shape == a_r.shape == lis.shape:
        raise InvalidInput("ratings, reference_ratings and listener_ids must have the same "
                           "length")
    _check_bootstrap(n_resamples, level)
    nan = float("nan")
    d = b_r - a_r
    if d.size == 0:
        return PairedComparison(version_id, reference_id, 0, 0, nan, nan, nan, nan, nan, nan,
                                nan, nan, (), (nan,) * 5, 0, level)
    win = (d > 0) + 0.5 * (d == 0)
    code, m = _codes(lis)
    sums, counts, wins = (np.bincount(code, x, m) for x in (d, np.ones_like(d), win))
    gains = np.sort(sums / counts)
    lo = hi = w_lo = w_hi = nan
    used = 0
    if m >= 2:
        def draw(b: int) -> np.ndarray:
            idx = rng.integers(0, m, size=(b, m))
            cnt = counts[idx].sum(axis=1)
            return np.stack([sums[idx].sum(axis=1) / cnt, wins[idx].sum(axis=1) / cnt], axis=1)

        draws = _chunked(n_resamples, m, draw)
        lo, hi, used = _interval(draws[:, 0], level, n_resamples)
        w_lo, w_hi, _ = _interval(draws[:, 1], level, n_resamples)
    return PairedComparison(
        version_id=version_id, reference_id=reference_id, n_pairs=int(d.size), n_listeners=m,
        mean_difference=float(d.mean()), ci_low=lo, ci_high=hi, win_rate=float(win.mean()),
        win_rate_ci_low=w_lo, win_rate_ci_high=w_hi,
        share_improved=float(np.mean(gains > 0)), share_worse=float(np.mean(gains < 0)),
        listener_gains=tuple(float(g) for g in gains),
        gain_quantiles=tuple(float(q) for q in np.quantile(gains, [0, 0.25, 0.5, 0.75, 1])),
        resamples_used=used, level=level)


def off_policy_value(
    ratings: np.ndarray,
    propensities: np.ndarray,
    taste_picks: np.ndarray,
    listener_ids: np.ndarray,
    *,
    rng: np.random.Generator,
    version_id: Hashable = None,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> PolicyValue:
    """Value of the taste policy (serve the candidate the taste model ranks first) estimated
    from deliveries that served a candidate at random (inverse propensity weighting).

    Parameters
    ----------
    ratings : np.ndarray [shape=(n,)]
        The requester's rating of each explore delivery.
    propensities : np.ndarray [shape=(n,)]
        Probability with which the logging policy served that candidate (1 / number of
        candidates for a uniform pick). Entries with NaN propensity or pick are left out.
    taste_picks : np.ndarray [shape=(n,)]
        1 where the served candidate is the taste model's pick, else 0 (NaN: unknown).
    listener_ids : np.ndarray [shape=(n,)]
        Clusters of the bootstrap (listeners resampled with all their deliveries).

    Examples
    --------
    >>> pv = off_policy_value(np.array([5.0, 2.0, 3.0, 4.0]), np.full(4, 0.5),
    ...                       np.array([1, 0, 0, 1]), np.array([1, 1, 2, 2]),
    ...                       rng=np.random.default_rng(0), n_resamples=200)
    >>> pv.ips, pv.snips, pv.logged_mean, pv.gain
    (4.5, 4.5, 3.5, 1.0)
    """
    r = np.asarray(ratings, dtype=float).reshape(-1)
    p = np.asarray(propensities, dtype=float).reshape(-1)
    m = np.asarray(taste_picks, dtype=float).reshape(-1)
    lis = np.asarray(listener_ids).reshape(-1)
    if not r.shape == p.shape == m.shape == lis.shape:
        raise InvalidInput("ratings, propensities, taste_picks and listener_ids must have the "
                           "same length")
    _check_bootstrap(n_resamples, level)
    ok = np.isfinite(p) & np.isfinite(m)
    if np.any(ok & ((p <= 0) | (p > 1))):
        raise InvalidInput("propensities must be in (0, 1]")
    r, p, m, lis = r[ok], p[ok], m[ok], lis[ok]
    nan = float("nan")
    if r.size == 0:
        return PolicyValue(version_id, 0, 0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan,
                           nan, 0, level)
    iw = m / p
    code, k = _codes(lis)
    a, bsum, c, cnt = (np.bincount(code, x, k) for x in (r * iw, iw, r, np.ones_like(r)))

    def values(a_: np.ndarray, b_: np.ndarray, c_: np.ndarray, n_: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            ips = a_ / n_
            snips = np.where(b_ > 0, a_ / np.where(b_ > 0, b_, 1), np.nan)
            return np.stack([ips, snips, snips - c_ / n_], axis=-1)

    point = values(*(np.array([x.sum()]) for x in (a, bsum, c, cnt)))[0]
    intervals = [(nan, nan, 0)] * 3
    if k >= 2:
        def draw(b: int) -> np.ndarray:
            idx = rng.integers(0, k, size=(b, k))
            return values(a[idx].sum(1), bsum[idx].sum(1), c[idx].sum(1), cnt[idx].sum(1))

        draws = _chunked(n_resamples, k, draw)
        intervals = [_interval(draws[:, j], level, n_resamples) for j in range(3)]
        if np.count_nonzero(m > 0) < MIN_MATCHED:  # a ratio of a handful: no interval
            intervals[1:] = [(nan, nan, intervals[1][2])] * 2
    (i_lo, i_hi, used), (s_lo, s_hi, _), (g_lo, g_hi, _) = intervals
    return PolicyValue(
        version_id=version_id, n=int(r.size), n_matched=int(np.count_nonzero(m > 0)),
        n_listeners=k, logged_mean=float(r.mean()), ips=float(point[0]), ips_ci_low=i_lo,
        ips_ci_high=i_hi, snips=float(point[1]), snips_ci_low=s_lo, snips_ci_high=s_hi,
        gain=float(point[2]), gain_ci_low=g_lo, gain_ci_high=g_hi, resamples_used=used,
        level=level)


def _sorted_keys(values: set[Any]) -> tuple[Any, ...]:
    """The values in their own order, or by ``str`` where they do not compare (mixed types,
    which is why they are typed ``Any``: comparability is tried, not required)."""
    try:
        return tuple(sorted(values))
    except TypeError:
        return tuple(sorted(values, key=str))


def record_pairs(
    records: RatingRecords, version: Hashable, reference: Hashable, *,
    reference_unselected: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (version's half, reference's half) of the counted pairs of two versions.

    A pair counts when exactly two rated deliveries with positive weight share its pair id,
    one of each version, rated by the same listener. ``reference_unselected``: only pairs
    whose reference half was a uniform pick (not the taste model's).
    """
    w = records.weights
    pids = records.pair_ids
    rows: dict[Hashable, list[int]] = {}
    for row in np.flatnonzero(w > 0):
        if pids[row] is not None:
            rows.setdefault(pids[row], []).append(int(row))
    new, old = [], []
    for idx in rows.values():
        if len(idx) != 2:
            continue
        i, j = idx
        if records.version_ids[i] == reference:
            i, j = j, i
        if (records.version_ids[i], records.version_ids[j]) != (version, reference):
            continue
        if records.rater_ids[i] != records.rater_ids[j]:
            continue
        if reference_unselected and records.selections[j] == "taste":
            continue
        new.append(i)
        old.append(j)
    return np.array(new, dtype=np.int64), np.array(old, dtype=np.int64)


def _paired_from_records(
    records: RatingRecords, version: Hashable, reference: Hashable, *, rng: np.random.Generator,
    n_resamples: int, level: float, reference_unselected: bool = False,
) -> tuple[PairedComparison, Comparison] | None:
    new, old = record_pairs(records, version, reference, reference_unselected=reference_unselected)
    if new.size == 0:
        return None
    pc = paired_comparison(records.ratings[new], records.ratings[old], records.rater_ids[new],
                           rng=rng, version_id=version, reference_id=reference,
                           n_resamples=n_resamples, level=level)
    rounds = records.rounds[np.concatenate([new, old])]
    comp = Comparison(
        version_id=version, reference_id=reference, method="paired",
        difference=pc.mean_difference, ci_low=pc.ci_low, ci_high=pc.ci_high, n=pc.n_pairs,
        n_reference=pc.n_pairs, n_raters=pc.n_listeners,
        n_clips=len(set(records.clip_ids[np.concatenate([new, old])].tolist())),
        resamples_used=pc.resamples_used, level=level,
        rounds=_sorted_keys(set(rounds.tolist())), paired=pc)
    return pc, comp


def _same_round(
    records: RatingRecords, version: Hashable, reference: Hashable, new_mask: np.ndarray,
    old_mask: np.ndarray, *, rng: np.random.Generator, n_resamples: int, level: float,
    method: str = "same-round fresh",
) -> Comparison | None:
    """Fresh ratings of ``new_mask`` − those of ``old_mask`` within the common rounds."""
    w = records.weights
    base = records.fresh & (w > 0)
    new, old = base & new_mask, base & old_mask
    rounds = records.rounds
    common = set(rounds[new].tolist()) & set(rounds[old].tolist())
    if not common:
        return None
    in_common = np.isin(rounds.astype(str), [str(x) for x in common])
    new &= in_common
    old &= in_common
    sel = new | old
    diff, lo, hi, used = two_way_bootstrap(
        records.ratings[sel], records.rater_ids[sel], records.clip_ids[sel],
        rng=rng, is_new=new[sel], strata=rounds[sel].astype(str), weights=w[sel],
        n_resamples=n_resamples, level=level)
    return Comparison(
        version_id=version, reference_id=reference, method=method, difference=diff,
        ci_low=lo, ci_high=hi, n=int(new.sum()), n_reference=int(old.sum()),
        n_raters=len(set(records.rater_ids[sel].tolist())),
        n_clips=len(set(records.clip_ids[sel].tolist())),
        resamples_used=used, level=level, rounds=_sorted_keys(common))


def _unselected(records: RatingRecords) -> np.ndarray:
    sel = records.selections
    return np.array([x in UNSELECTED for x in sel.tolist()], dtype=bool)


def same_round_comparison(
    records: RatingRecords, version: Hashable, reference: Hashable, *,
    rng: np.random.Generator, n_resamples: int = 2000, level: float = 0.95,
) -> Comparison | None:
    """``version`` − ``reference`` over fresh clips (generated for the rated request, so no
    review or baseline rating) in the rounds where both were rated, two-way bootstrap, or None
    when they share no round."""
    return _same_round(records, version, reference, records.version_ids == version,
                       records.version_ids == reference, rng=rng, n_resamples=n_resamples,
                       level=level)


def fair_comparisons(
    records: RatingRecords,
    *,
    rng: np.random.Generator,
    versions: Sequence[Hashable],
    parents: dict[Hashable, Hashable | None] | None = None,
    reference: Hashable | None = None,
    min_pairs: int = MIN_PAIRS,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> tuple[tuple[Comparison, ...], tuple[PairedComparison, ...], tuple[Comparison, ...]]:
    """Each version against its parent and against ``reference`` (default the first version):
    ``(headline, paired, same_round)``. The headline is the paired comparison where the two
    have at least ``min_pairs`` counted pairs, else the same-round fresh comparison (or the
    paired one with fewer pairs when they share no round). ``parents`` default: the previous
    version in ``versions``."""
    order = list(versions)
    if not order:
        return (), (), ()
    reference = order[0] if reference is None else reference
    if parents is None:
        parents = {v: (order[k - 1] if k else None) for k, v in enumerate(order)}
    targets: list[tuple[Hashable, Hashable]] = []
    for v in order:
        for ref in (parents.get(v), reference):
            if ref is not None and ref != v and ref in order and (v, ref) not in targets:
                targets.append((v, ref))
    headline, paired, same = [], [], []
    for v, ref in targets:
        p = _paired_from_records(records, v, ref, rng=rng, n_resamples=n_resamples, level=level)
        s = same_round_comparison(records, v, ref, rng=rng, n_resamples=n_resamples, level=level)
        if p is not None:
            paired.append(p[0])
        if s is not None:
            same.append(s)
        if p is not None and (p[0].n_pairs >= min_pairs or s is None):
            headline.append(p[1])
        elif s is not None:
            headline.append(s)
    return tuple(headline), tuple(paired), tuple(same)


def decompose_gain(
    records: RatingRecords,
    version: Hashable,
    reference: Hashable,
    *,
    rng: np.random.Generator,
    min_pairs: int = MIN_PAIRS,
    n_resamples: int = 2000,
    level: float = 0.95,
) -> GainDecomposition:
    """The gain of ``version`` (B) over ``reference`` (A) in parts.

    - selection alone: A's weights served by the taste model's pick vs a uniform pick —
      :func:`off_policy_value` on A's explore deliveries with a known taste pick; where fewer
      than ``MIN_MATCHED`` of them served the taste pick, A's taste deliveries vs A's uniform
      ones (same round, fresh) if A has both, else the thin off-policy estimate (no interval);
    - weights alone: B's uniform picks vs A's uniform picks (explore or single candidate),
      same round, fresh;
    - both: B as served vs A's uniform pick — paired (pairs whose A half was not a taste
      pick) when there are at least ``min_pairs``, else same round, fresh.
    """
    v = records.version_ids
    uniform = _unselected(records)
    sel = records.selections
    w = records.weights
    kw: _Bootstrap = {"rng": rng, "n_resamples": n_resamples, "level": level}

    selection: Comparison | None = None
    explore = records.fresh & (w > 0) & (v == reference) & (sel == "explore")
    pv = off_policy_value(records.ratings[explore], records.propensities[explore],
                          records.taste_picks[explore], records.rater_ids[explore],
                          version_id=reference, **kw)
    off_policy = None
    if pv.n_matched > 0 and np.isfinite(pv.gain):
        off_policy = Comparison(
            version_id=reference, reference_id=reference, method="off-policy",
            difference=pv.gain, ci_low=pv.gain_ci_low, ci_high=pv.gain_ci_high, n=pv.n_matched,
            n_reference=pv.n, n_raters=pv.n_listeners, n_clips=pv.n,
            resamples_used=pv.resamples_used, level=level,
            rounds=_sorted_keys(set(records.rounds[explore].tolist())), policy=pv)
    selection = off_policy
    if pv.n_matched < MIN_MATCHED:  # too few taste picks among the explore deliveries
        selection = _same_round(records, reference, reference, (v == reference) & (sel == "taste"),
                                (v == reference) & uniform, method="taste vs explore",
                                **kw) or off_policy
    weights = _same_round(records, version, reference, (v == version) & uniform,
                          (v == reference) & uniform, **kw)
    p = _paired_from_records(records, version, reference, reference_unselected=True, **kw)
    both = None
    if p is not None and p[0].n_pairs >= min_pairs:
        both = p[1]
    else:
        both = _same_round(records, version, reference, v == version,
                           (v == reference) & uniform, **kw)
        if both is None and p is not None:
            both = p[1]
    remainder = (both.difference - selection.difference - weights.difference
                 if both is not None and selection is not None and weights is not None
                 else float("nan"))
    return GainDecomposition(version_id=version, reference_id=reference, selection=selection,
                             weights=weights, both=both, remainder=float(remainder))


def mean_estimate(
    records: RatingRecords, mask: np.ndarray, label: Hashable, *, rng: np.random.Generator,
    n_resamples: int = 2000, level: float = 0.95,
) -> MeanEstimate | None:
    """Mean of the ratings in ``mask`` (positive weight) with a two-way bootstrap interval."""
    w = records.weights
    sel = np.asarray(mask, dtype=bool) & (w > 0)
    if not sel.any():
        return None
    mean, lo, hi, used = two_way_bootstrap(
        records.ratings[sel], records.rater_ids[sel], records.clip_ids[sel],
        rng=rng, weights=w[sel], n_resamples=n_resamples, level=level)
    return MeanEstimate(label=label, mean=mean, ci_low=lo, ci_high=hi, n=int(sel.sum()),
                        n_raters=len(set(records.rater_ids[sel].tolist())),
                        n_clips=len(set(records.clip_ids[sel].tolist())),
                        resamples_used=used, level=level)
