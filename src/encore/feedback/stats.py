"""Report statistics: the paper's Table 1 and the change per iteration (issue 6, DESIGN §2.9).

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

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from encore.errors import InvalidInput
from encore.feedback.config import BootstrapCluster
from encore.feedback.rating import validate_ratings

__all__ = [
    "Cell",
    "IterationChange",
    "RatingRecords",
    "RatingTable",
    "Report",
    "bootstrap_mean_difference",
    "build_report",
    "rating_table",
]

BRANCHES = ("generate", "review", "baseline")
# the report's split: name -> the branches it pools
BRANCH_SPLIT = {"new": ("generate", "review"), "generate": ("generate",),
                "review": ("review",), "baseline": ("baseline",)}
_MIN_USABLE_RESAMPLES = 100
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True, eq=False)
class RatingRecords:
    """Ratings with what the report groups them by (parallel arrays, one entry per rating).

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
    """

    ratings: np.ndarray
    song_ids: np.ndarray
    version_ids: np.ndarray
    rater_ids: np.ndarray
    branches: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        ratings = validate_ratings(self.ratings)
        n = ratings.shape[0]
        arrays = {}
        for name in ("song_ids", "version_ids", "rater_ids"):
            arr = np.asarray(getattr(self, name)).reshape(-1)
            if arr.shape[0] != n:
                raise InvalidInput(f"RatingRecords.{name} has {arr.shape[0]} entries for {n} "
                                   "ratings")
            arrays[name] = arr
        branches = (np.full(n, "generate", dtype=object) if self.branches is None
                    else np.asarray(self.branches, dtype=object).reshape(-1))
        if branches.shape[0] != n:
            raise InvalidInput(f"RatingRecords.branches has {branches.shape[0]} entries for {n} "
                               "ratings")
        bad = [b for b in set(branches.tolist()) if b not in BRANCHES]
        if bad:
            raise InvalidInput(f"branch={bad[0]!r} must be 'generate', 'review' or 'baseline'")
        weights = (np.ones(n) if self.weights is None
                   else np.asarray(self.weights, dtype=float).reshape(-1))
        if weights.shape[0] != n:
            raise InvalidInput(f"RatingRecords.weights has {weights.shape[0]} entries for {n} "
                               "ratings")
        if np.any(~np.isfinite(weights) | (weights < 0)):
            i = int(np.flatnonzero(~np.isfinite(weights) | (weights < 0))[0])
            raise InvalidInput(f"weight={float(weights[i])!r} (index {i}) must be finite and >= 0")
        object.__setattr__(self, "ratings", ratings)
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "branches", branches)
        object.__setattr__(self, "weights", weights)

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    def subset(self, mask: np.ndarray) -> RatingRecords:
        """The records where ``mask`` is True."""
        return RatingRecords(self.ratings[mask], self.song_ids[mask], self.version_ids[mask],
                             self.rater_ids[mask], self.branches[mask],  # type: ignore[index]
                             self.weights[mask])  # type: ignore[index]


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
class Report:
    """Everything pooled (``table``) and split by dispatch branch (``by_branch``: keys of
    ``BRANCH_SPLIT`` that have ratings — ``new``, ``generate``, ``review``, ``baseline``)."""

    table: RatingTable
    by_branch: dict[str, RatingTable]


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
    if not 0 < level < 1:
        raise InvalidInput(f"level={level!r} must be in (0, 1)")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise InvalidInput(f"n_resamples={n_resamples!r} must be an integer >= 1")
    wn, wo = w[new].sum(), w[~new].sum()
    if wn <= 0 or wo <= 0:
        return float("nan"), float("nan"), float("nan"), 0
    diff = float(np.dot(w[new], r[new]) / wn - np.dot(w[~new], r[~new]) / wo)

    if cluster == "rater":
        _, code = np.unique(clusters, return_inverse=True)
        code = code.reshape(-1)
        m = int(code.max()) + 1
        sums = [np.bincount(code[sel], (w * r)[sel], m) for sel in (new, ~new)]
        mass = [np.bincount(code[sel], w[sel], m) for sel in (new, ~new)]
        draws = _chunked(n_resamples, m, lambda b: _cluster_draw(rng, b, m, sums, mass))
    elif cluster == "rating":
        groups = [(w * r)[new], w[new], (w * r)[~new], w[~new]]
        size = max(int(new.sum()), int((~new).sum()))
        draws = _chunked(n_resamples, size, lambda b: _stratified_draw(rng, b, groups))
    else:
        raise InvalidInput(f"cluster={cluster!r} must be 'rater' or 'rating'")
    draws = draws[np.isfinite(draws)]
    if draws.size < min(_MIN_USABLE_RESAMPLES, n_resamples):
        return diff, float("nan"), float("nan"), int(draws.size)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return diff, float(lo), float(hi), int(draws.size)


def _chunked(n_resamples: int, width: int, draw) -> np.ndarray:
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    out = [draw(min(step, n_resamples - start)) for start in range(0, n_resamples, step)]
    return np.concatenate(out)


def _cluster_draw(rng: np.random.Generator, b: int, m: int, sums: list, mass: list
                  ) -> np.ndarray:
    idx = rng.integers(0, m, size=(b, m))
    s_new, s_old = sums[0][idx].sum(axis=1), sums[1][idx].sum(axis=1)
    n_new, n_old = mass[0][idx].sum(axis=1), mass[1][idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_new > 0) & (n_old > 0), s_new / n_new - s_old / n_old, np.nan)


def _stratified_draw(rng: np.random.Generator, b: int, groups: list) -> np.ndarray:
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
    present = sorted(set(records.version_ids.tolist()))  # type: ignore[type-var]
    order = tuple(present if versions is None else versions)
    if len(set(order)) != len(order):
        raise InvalidInput(f"versions {order!r} contain a duplicate")
    missing = [v for v in present if v not in order]
    if missing:
        raise InvalidInput(f"version {missing[0]!r} has ratings but is not in versions {order!r}")
    songs = tuple(sorted(set(records.song_ids.tolist())))  # type: ignore[type-var]
    w = records.weights
    assert w is not None

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


def build_report(
    records: RatingRecords,
    *,
    rng: np.random.Generator,
    versions: Sequence[Hashable] | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    cluster: BootstrapCluster = "rater",
) -> Report:
    """The report's numbers: :func:`rating_table` pooled and per dispatch branch.

    Examples
    --------
    >>> rec = RatingRecords(np.array([3.0, 4.0, 2.0, 4.0]), np.array(["s1"] * 4),
    ...                     np.array(["v0", "v0", "v1", "v1"]), np.array(["a", "b", "a", "b"]))
    >>> rep = build_report(rec, rng=np.random.default_rng(0), n_resamples=200)
    >>> rep.table.cell("s1", "v0").mean, rep.table.changes[0].difference
    (3.5, -0.5)
    """
    if versions is None:
        versions = sorted(set(records.version_ids.tolist()))  # type: ignore[type-var]
    kwargs = dict(versions=versions, n_resamples=n_resamples, level=level, cluster=cluster)
    table = rating_table(records, rng=rng, **kwargs)  # type: ignore[arg-type]
    by_branch = {}
    for branch, pooled in BRANCH_SPLIT.items():
        mask = np.isin(records.branches, pooled)
        if mask.any():
            by_branch[branch] = rating_table(records.subset(mask), rng=rng,  # type: ignore[arg-type]
                                             **kwargs)
    return Report(table=table, by_branch=by_branch)
