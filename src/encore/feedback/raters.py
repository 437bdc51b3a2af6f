"""The rater model and quality control (ITU-T P.913 / Netflix SUREAL).

Rater model
-----------
Rating ``u`` of clip ``j`` by rater ``i``::

    u_ij = ψ_j + Δ_i + σ_i · ε,   ε ~ N(0, 1)

Notation (code -> model): ``quality`` -> ψ_j (true clip quality, stars), ``bias`` -> Δ_i
(rater bias, stars), ``sigma`` -> σ_i (rater inconsistency, stars), ``omega`` -> ω_i (rater
weight from quality control; 1 in the first pass).

It is fitted by alternating maximisation of the (weighted) likelihood, the "alternating
projection" solver of SUREAL's subject model, with two weak priors that turn it into MAP
where data are thin (see :mod:`encore.feedback.config`)::

    1. ψ_j = Σ_i ω_i/σ_i² (u_ij − Δ_i) / Σ_i ω_i/σ_i²          (weighted mean per clip)
    2. Δ_i = Σ_j d_ij (u_ij − ψ_j) / (m_i + σ_i²/τ²)            (Δ_i ~ N(0, τ²) prior)
    3. σ_i² = (Σ_j (u_ij − ψ_j − Δ_i)² + ν₀ s₀²) / (m_i + ν₀)   (ν₀ pseudo-ratings at the
                                                                 pooled variance s₀²),
       σ_i ≥ sigma_floor
    4. centre: Δ ← Δ − mean(Δ over raters with ω > 0), ψ ← ψ + that mean (only relative
       biases are identifiable; P.913 also sets the mean bias to zero)

until no parameter moves by more than ``rater_tolerance``. ``d_ij = 1 − h_ij`` is what a
rating tells about its rater: one minus its leverage ``h_ij = (ω_i/σ_i²) / Σ_k ω_k/σ_k²`` on
its own clip's ψ_j, and ``m_i = Σ_j d_ij``. With many raters per clip d ≈ 1 and this is the
textbook update; a clip's only rater has d = 0 (ψ_j simply absorbs the rating, which says
nothing about the rater's bias or noise); and ``Σ r² / Σ d`` is the unbiased residual
variance of a weighted mean, so σ_i is not driven to zero on clips with two or three raters
(the degeneracy of the plain MLE, which also made it converge slowly). Standard errors: ψ_j
has ``sqrt(Σ ω²/σ²) / Σ ω/σ²`` (the SE of the weighted mean), Δ_i has
``σ_i / sqrt(m_i + σ_i²/τ²)``. Raters linked to the rest by no shared clip have
unidentifiable biases: the prior holds them near 0.

Quality control
---------------
A rater is judged once they have ``qc_min_ratings`` ratings, **by consistency with itself and
with raters of the same taste, never by agreement with everyone**. Two rules flag them, each
with a recorded reason; a flagged rater gets ``flagged_weight`` (default 0: ignored):

A. **High or identical ratings that the rater's own minimal listening contradicts** (the
   paper's §2.1 example): their median listened fraction is at most ``low_listen_fraction``
   *and* at least ``saturation_share`` of their ratings are at the top of the scale (4.5 or
   5), or at a single value above the bottom (1 star). An honest listener who dislikes a clip
   stops at the unlock point and gives it 1 star, so 1 star after minimal listening is
   consistent, not misconduct; loving everything while listening to it is not flagged
   either. A rater whose ratings are shown to follow their own listening (the F-test of
   ``u ~ 1 + listen`` has p < ``qc_alpha``) is not flagged by this rule.

B. **A spread of ratings that nothing explains, where an honest rater's taste would have
   been seen.** The rater's ratings are regressed on the witnesses of their own taste, with
   free slopes: their own listened fraction (listening that follows the ratings), and the
   leave-one-out consensus ψ^c₋ᵢ of each *taste cluster* c of raters (the precision-weighted
   mean of the bias-corrected ratings of that cluster's other raters on the clip; 0 after
   centring where none of them rated it). Taste clusters come from the raters' agreement on
   shared clips (spectral clustering of the cosine similarity of their mean-centred
   ratings, ``qc_taste_clusters`` at most; clusters that agree with each other at least
   ``qc_cluster_merge`` times as much as within themselves are merged), so two groups that
   rank the clips in opposite orders each vouch for their own members: a slope may take any
   sign and each cluster has its own, and the rater's own cluster need not be known (its
   ratings choose nothing, so the test stays exact under the null). A cluster column enters
   only where it could track a typical member's taste on these clips (reliability below,
   ≥ ``qc_min_reliability``). With ``clip_features``, each cluster's taste model (a ridge
   regression of its other raters' mean-centred ratings on the features' first
   ``qc_feature_dims`` principal components) predicts every clip and is one more witness;
   where the data hold a rater's repeated ratings of a clip, the other rating is one too
   (test–retest). The witnesses enter in blocks, the most reliable first, up to the number
   that gives the test the most power (chosen from the ratings' spread and the witnesses,
   never from their association). Two F-tests against ``u ~ 1``, without and with per-group
   offsets (clip groups with ≥ 2 of the rater's ratings: input song, genre), must both give
   p ≥ ``qc_alpha``.
   **Absence of evidence is not evidence**: the rater is flagged only if a typical honest
   rater with ratings *as spread as theirs* would have shown the association with power
   ≥ ``qc_min_power``. Of a rater's rating variance ``s²``, the part beyond honest rating
   noise, ``(s² − σ²_ref)/s²``, would be taste (σ²_ref is the larger of ``qc_honest_noise``²
   and the ``qc_noise_quantile`` quantile of the raters' noise around their own cluster's
   consensus); each witness tracks taste with a reliability ρ² — listening: the pooled
   within-rater R² of ratings on listening over the pooled taste share, discounted where the
   rater's listening varies less than a quarter of the median rater's; cluster c: the share
   of the rater's clips it covers × ``V_c / (V_c + e²)`` (V_c the spread of the cluster's
   true quality, e² the consensus' mean error variance there), weighted by the cluster's
   share of raters; a taste model: its pooled leave-one-out R² over the pooled taste share;
   a retest: the share of clips rated twice × the rater's taste share. Conditionally
   independent witnesses add their signal-to-error ratios ``ρ²/(1 − ρ²)``, and the expected
   ``R² = taste share × ρ²_joint`` gives the power (noncentral F, λ = n·R²/(1 − R²)). So a random rater (uniform stars, spread 1.3 stars, nothing
   explains it) is judged and flagged, while an honest rater who heard clips of little
   varied appeal, or who dislikes most clips (ratings barely spread, listening at the unlock
   point), is "not judged" (with a note) rather than flagged for what nobody could see.

Judging runs in rounds (``qc_rounds``): the clusters and consensus of the next round leave
out the raters flagged so far, so adversaries do not vouch for one another; it stops when the
flagged set is stable.

Weights of unflagged raters measure **consistency, not agreement**: σ_c is the residual SD of
the richest taste model above (for raters with constant ratings, the SUREAL σ), and
``weight = min(1, (reliability_tolerance · median σ_c / σ_c)²)`` — an inverse-variance weight
relative to a tolerant reference, so only clearly erratic raters lose weight. The final fit is
the rater model refitted with ω = these weights.

Known limits: an adversary who fakes listening that follows its ratings, or rates the reverse
of a cluster's consensus, looks like a taste and is not flagged; a coordinated group that
rates alike forms its own taste cluster and vouches for itself; a rater who gives random
ratings after always listening to the unlock point leaves only the cluster consensus to judge
them, which on clips with 1–3 raters rarely has the power to (``clip_features`` do). Trap
clips with known quality and rate limits per account (services) are the defences there. A
rater who gives 1 star to (nearly) everything after minimal listening is consistent and is
not flagged (the ``min_listen`` adversary with a fixed 1 star among them); after bias
correction such ratings pull their clips' estimates towards the average, not down. Verdicts
are not permanent: the services re-run :func:`assess_raters` on all ratings, so more evidence
can clear a rater.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse, special, stats
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import eigsh

from encore.errors import InvalidInput
from encore.feedback.config import DEFAULT_CONFIG, FeedbackConfig
from encore.feedback.rating import RATING_MAX, RATING_MIN, validate_ratings

logger = logging.getLogger(__name__)

__all__ = [
    "QualityControlResult",
    "RaterAssessment",
    "RaterModelFit",
    "RatingSet",
    "assess_raters",
    "fit_rater_model",
]


@dataclass(frozen=True, eq=False)
class RatingSet:
    """Counted ratings as parallel arrays (one entry per rating).

    Attributes
    ----------
    rater_ids : np.ndarray [shape=(n,)]
        Rater of each rating (sortable ids, e.g. ints or strings).
    clip_ids : np.ndarray [shape=(n,)]
        Clip of each rating.
    ratings : np.ndarray [shape=(n,), dtype=float]
        Stars, 1..5 in steps of 0.5 (validated).
    listened_fraction : np.ndarray [shape=(n,), dtype=float]
        l̂ of the listen behind each rating, in [0, 1] (validated).
    """

    rater_ids: np.ndarray
    clip_ids: np.ndarray
    ratings: np.ndarray
    listened_fraction: np.ndarray

    def __post_init__(self) -> None:
        raters = np.asarray(self.rater_ids).reshape(-1)
        clips = np.asarray(self.clip_ids).reshape(-1)
        ratings = validate_ratings(self.ratings)
        listened = np.asarray(self.listened_fraction, dtype=float).reshape(-1)
        n = ratings.shape[0]
        if not (raters.shape[0] == clips.shape[0] == listened.shape[0] == n):
            raise InvalidInput(f"RatingSet arrays differ in length: {raters.shape[0]} raters, "
                               f"{clips.shape[0]} clips, {n} ratings, {listened.shape[0]} "
                               "listened fractions")
        bad = ~np.isfinite(listened) | (listened < 0) | (listened > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidInput(f"listened_fraction={float(listened[i])!r} (index {i}) must be in [0, 1]")
        object.__setattr__(self, "rater_ids", raters)
        object.__setattr__(self, "clip_ids", clips)
        object.__setattr__(self, "ratings", ratings)
        object.__setattr__(self, "listened_fraction", listened)

    @classmethod
    def from_records(cls, records: Iterable[tuple[Hashable, Hashable, float, float]]
                     ) -> RatingSet:
        """Build from ``(rater_id, clip_id, rating, listened_fraction)`` tuples."""
        rows = list(records)
        if not rows:
            return cls(np.array([]), np.array([]), np.array([]), np.array([]))
        raters, clips, ratings, listened = zip(*rows, strict=True)
        return cls(np.asarray(raters), np.asarray(clips), np.asarray(ratings, dtype=float),
                   np.asarray(listened, dtype=float))

    def __len__(self) -> int:
        return int(self.ratings.shape[0])


@dataclass(frozen=True, eq=False)
class RaterModelFit:
    """Estimates of the rater model ``u_ij = ψ_j + Δ_i + σ_i ε``.

    Attributes
    ----------
    clip_ids : tuple
        Sorted clip ids; the order of ``quality`` and ``quality_se``.
    quality : np.ndarray [shape=(n_clips,)]
        ψ_j in stars; NaN for a clip with no rating of positive weight.
    quality_se : np.ndarray [shape=(n_clips,)]
        Standard error of ψ_j (stars); NaN where ψ_j is.
    rater_ids : tuple
        Sorted rater ids; the order of the per-rater arrays.
    bias, bias_se, sigma : np.ndarray [shape=(n_raters,)]
        Δ_i, its SE, and σ_i, in stars. Mean Δ over raters with positive weight is 0.
    n_ratings : np.ndarray [shape=(n_raters,), dtype=int]
    iterations : int
    converged : bool
    """

    clip_ids: tuple[Hashable, ...]
    quality: np.ndarray
    quality_se: np.ndarray
    rater_ids: tuple[Hashable, ...]
    bias: np.ndarray
    bias_se: np.ndarray
    sigma: np.ndarray
    n_ratings: np.ndarray
    iterations: int
    converged: bool

    def quality_ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Normal-approximation confidence interval of each ψ_j, in stars."""
        z = float(stats.norm.ppf(0.5 + level / 2))
        return self.quality - z * self.quality_se, self.quality + z * self.quality_se

    def biases(self) -> dict[Hashable, float]:
        """``{rater_id: Δ}``."""
        return {r: float(b) for r, b in zip(self.rater_ids, self.bias, strict=True)}

    def qualities(self) -> dict[Hashable, float]:
        """``{clip_id: ψ}``."""
        return {c: float(q) for c, q in zip(self.clip_ids, self.quality, strict=True)}


@dataclass(frozen=True)
class RaterAssessment:
    """Quality-control verdict on one rater.

    Attributes
    ----------
    rater_id : hashable
    bias : float
        Δ in stars (subtract from the rater's ratings before normalising).
    sigma : float
        σ, the rater's inconsistency in stars (SUREAL model).
    weight : float in [0, 1]
        Reliability weight for aggregates (``flagged_weight`` when flagged).
    flagged : bool
    reasons : tuple of str
        Why flagged (empty otherwise).
    n_ratings : int
    median_listen : float
        Median listened fraction of the rater's rated listens.
    p_value : float or None
        Smallest p-value of the association tests of rule B (None when not run).
    consistency_sigma : float or None
        σ_c, the residual SD behind the weight (None when the rater was not judged).
    note : str
        Why a rater was not judged (too few ratings, too little evidence either way, nothing
        to test the ratings against), else empty.
    """

    rater_id: Hashable
    bias: float
    sigma: float
    weight: float
    flagged: bool
    reasons: tuple[str, ...] = ()
    n_ratings: int = 0
    median_listen: float = float("nan")
    p_value: float | None = None
    consistency_sigma: float | None = None
    note: str = ""


@dataclass(frozen=True, eq=False)
class QualityControlResult:
    """Output of :func:`assess_raters`: the final model fit and one assessment per rater."""

    fit: RaterModelFit
    assessments: tuple[RaterAssessment, ...]
    _by_id: dict[Hashable, RaterAssessment] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {a.rater_id: a for a in self.assessments})

    def __getitem__(self, rater_id: Hashable) -> RaterAssessment:
        return self._by_id[rater_id]

    @property
    def weights(self) -> dict[Hashable, float]:
        """``{rater_id: weight}`` for :func:`~encore.feedback.rating.score_clip`."""
        return {a.rater_id: a.weight for a in self.assessments}

    @property
    def biases(self) -> dict[Hashable, float]:
        """``{rater_id: Δ}`` for :func:`~encore.feedback.rating.score_clip`."""
        return {a.rater_id: a.bias for a in self.assessments}

    @property
    def flagged(self) -> tuple[Hashable, ...]:
        """Ids of flagged raters."""
        return tuple(a.rater_id for a in self.assessments if a.flagged)


# --------------------------------------------------------------------------------------
# the rater model


@dataclass(frozen=True)
class _Indexed:
    rater_keys: np.ndarray
    clip_keys: np.ndarray
    ri: np.ndarray
    cj: np.ndarray


def _index(data: RatingSet) -> _Indexed:
    try:
        rater_keys, ri = np.unique(data.rater_ids, return_inverse=True)
        clip_keys, cj = np.unique(data.clip_ids, return_inverse=True)
    except TypeError as exc:
        raise InvalidInput(f"rater and clip ids must be mutually comparable ({exc})") from exc
    return _Indexed(rater_keys, clip_keys, ri.reshape(-1), cj.reshape(-1))


def fit_rater_model(
    data: RatingSet,
    *,
    rater_weights: Mapping[Hashable, float] | None = None,
    config: FeedbackConfig = DEFAULT_CONFIG,
) -> RaterModelFit:
    """Fit ``rating = quality + bias + rater-specific noise`` (P.913 / SUREAL subject model).

    Parameters
    ----------
    data : RatingSet
        Counted ratings (at least one).
    rater_weights : mapping rater_id -> weight in [0, 1], optional
        ω_i, how much each rater's ratings count in the clip estimates (missing: 1). A rater
        with ω = 0 still gets a bias and σ estimated against the others' ψ.
    config : FeedbackConfig
        ``rater_max_iterations``, ``rater_tolerance``, ``bias_prior_sd``,
        ``sigma_prior_ratings``, ``sigma_floor``.

    Returns
    -------
    RaterModelFit

    Raises
    ------
    InvalidInput
        If ``data`` is empty or a weight is outside [0, 1], or every weight is zero.
    """
    if len(data) == 0:
        raise InvalidInput("cannot fit the rater model on zero ratings")
    idx = _index(data)
    omega = np.ones(len(idx.rater_keys))
    if rater_weights:
        for k, rid in enumerate(idx.rater_keys.tolist()):
            w = float(rater_weights.get(rid, 1.0))
            if not np.isfinite(w) or not 0.0 <= w <= 1.0:
                raise InvalidInput(f"rater weight {w!r} of rater {rid!r} must be in [0, 1]")
            omega[k] = w
    if not np.any(omega > 0):
        raise InvalidInput("every rater weight is zero: no clip can be estimated")
    fit = _alternating_fit(data.ratings, idx.ri, idx.cj, len(idx.rater_keys),
                           len(idx.clip_keys), omega, config)
    psi, psi_se, delta, delta_se, sigma2, n_i, iterations, converged = fit
    if not converged:
        logger.warning("rater model did not converge in %d iterations", iterations)
    return RaterModelFit(
        clip_ids=tuple(idx.clip_keys.tolist()),
        quality=psi,
        quality_se=psi_se,
        rater_ids=tuple(idx.rater_keys.tolist()),
        bias=delta,
        bias_se=delta_se,
        sigma=np.sqrt(sigma2),
        n_ratings=n_i,
        iterations=iterations,
        converged=converged,
    )


class _AlternatingFit(NamedTuple):
    """What :func:`_alternating_fit` estimates (per clip: ψ; per rater: Δ, σ², counts)."""

    psi: np.ndarray
    psi_se: np.ndarray
    delta: np.ndarray
    delta_se: np.ndarray
    sigma2: np.ndarray
    n_i: np.ndarray
    iterations: int
    converged: bool


def _alternating_fit(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, n_raters: int,
                     n_clips: int, omega: np.ndarray, config: FeedbackConfig) -> _AlternatingFit:
    tau2 = config.bias_prior_sd ** 2
    nu0 = config.sigma_prior_ratings
    floor2 = config.sigma_floor ** 2
    n_i = np.bincount(ri, minlength=n_raters)

    # initial values: clip means, zero biases, pooled variance
    psi = np.bincount(cj, u, n_clips) / np.maximum(np.bincount(cj, minlength=n_clips), 1)
    delta = np.zeros(n_raters)
    s0 = max(float(np.mean((u - psi[cj]) ** 2)), floor2)
    sigma2 = np.full(n_raters, s0)
    active = omega > 0

    converged = False
    iterations = 0
    for iteration in range(1, config.rater_max_iterations + 1):
        iterations = iteration
        # 1. clip quality: precision-weighted mean of bias-corrected ratings
        w_obs = omega[ri] / sigma2[ri]
        den = np.bincount(cj, w_obs, n_clips)
        num = np.bincount(cj, w_obs * (u - delta[ri]), n_clips)
        with np.errstate(invalid="ignore", divide="ignore"):
            psi_new = np.where(den > 0, num / den, np.nan)
        ok = np.isfinite(psi_new[cj])
        e = np.where(ok, u - psi_new[cj], 0.0)
        # information each rating carries about its rater: 1 - its leverage on its clip's ψ
        # (a clip's only rater learns nothing about their own bias or noise from it)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(ok, 1.0 - w_obs / den[cj], 0.0)
        m_i = np.bincount(ri, d, n_raters)
        # 2. rater bias, MAP under the N(0, tau^2) prior
        delta_new = np.bincount(ri, d * e, n_raters) / (m_i + sigma2 / tau2)
        # 3. rater inconsistency, with nu0 pseudo-ratings at the pooled variance
        r2 = np.where(ok, (e - delta_new[ri]) ** 2, 0.0)
        pooled_mask = ok & active[ri]
        s0 = max(float(r2[pooled_mask].sum() / max(d[pooled_mask].sum(), 1e-12)), floor2)
        sigma2_new = np.maximum((np.bincount(ri, r2, n_raters) + nu0 * s0) / (m_i + nu0), floor2)
        # 4. centre the biases of the raters that count
        centre_mask = active & (m_i > 0)
        shift = float(delta_new[centre_mask].mean()) if centre_mask.any() else 0.0
        delta_new -= shift
        psi_new += shift

        change = max(
            float(np.nanmax(np.abs(psi_new - psi))) if np.isfinite(psi_new).any() else 0.0,
            float(np.max(np.abs(delta_new - delta))),
            float(np.max(np.abs(np.sqrt(sigma2_new) - np.sqrt(sigma2)))),
        )
        psi, delta, sigma2 = psi_new, delta_new, sigma2_new
        if change < config.rater_tolerance:
            converged = True
            break

    w_obs = omega[ri] / sigma2[ri]
    den = np.bincount(cj, w_obs, n_clips)
    num_sq = np.bincount(cj, omega[ri] ** 2 / sigma2[ri], n_clips)
    with np.errstate(invalid="ignore", divide="ignore"):
        psi_se = np.where(den > 0, np.sqrt(num_sq) / den, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(np.isfinite(psi[cj]), 1.0 - w_obs / den[cj], 0.0)
    delta_se = np.sqrt(sigma2 / (np.bincount(ri, d, n_raters) + sigma2 / tau2))
    return _AlternatingFit(psi, psi_se, delta, delta_se, sigma2, n_i, iterations, converged)


# --------------------------------------------------------------------------------------
# quality control


def assess_raters(
    data: RatingSet,
    *,
    clip_groups: Mapping[Hashable, Hashable] | None = None,
    clip_features: Mapping[Hashable, Sequence[float] | np.ndarray] | None = None,
    config: FeedbackConfig = DEFAULT_CONFIG,
) -> QualityControlResult:
    """Fit the rater model, judge every rater, and refit with the resulting weights.

    Judging runs in rounds (``qc_rounds``): after each round the taste clusters and their
    consensus are re-estimated without the raters flagged so far, so that adversaries do not
    vouch for each other, and every rater is judged again; it stops when the flagged set is
    stable. Rules A and B are in the module docstring.

    Parameters
    ----------
    data : RatingSet
        All counted ratings (with the listened fraction of each).
    clip_groups : mapping clip_id -> group, optional
        A grouping of clips along which taste may differ (input song, genre, similarity
        cluster). Lets rule B recognise a consistent opinion on a subgroup as taste.
        Clips missing from the mapping form no group.
    clip_features : mapping clip_id -> 1-D array of floats, optional
        What each clip sounds like (the similarity model's embedding, audio descriptors; all
        of one length). Each taste cluster then also gets a *taste model*, a ridge regression
        of its other raters' ratings on the first ``qc_feature_dims`` principal components,
        whose prediction is one more witness of a rater's taste on every clip it rated, not
        only on clips others rated too. Clips missing from the mapping have no prediction.
    config : FeedbackConfig
        Rater-model and quality-control settings.

    Returns
    -------
    QualityControlResult
        ``fit`` (the final, weighted fit) and one :class:`RaterAssessment` per rater, in
        sorted rater order.
    """
    idx = _index(data)
    u, listened = data.ratings, data.listened_fraction
    n_raters, n_clips = len(idx.rater_keys), len(idx.clip_keys)
    rater_list = idx.rater_keys.tolist()
    groups = None
    if clip_groups is not None:
        codes: dict[Hashable, int] = {}
        groups = np.array([-1 if (g := clip_groups.get(c)) is None
                           else codes.setdefault(g, len(codes))
                           for c in idx.clip_keys.tolist()])
    order = np.argsort(idx.ri, kind="stable")
    bounds = np.searchsorted(idx.ri[order], np.arange(n_raters + 1))
    rows_of = [order[bounds[k]:bounds[k + 1]] for k in range(n_raters)]

    dummies_of = [None if groups is None else _group_dummies(groups[idx.cj[rows]])
                  for rows in rows_of]
    components = None if clip_features is None else _feature_components(
        clip_features, idx.clip_keys.tolist(), config.qc_feature_dims)
    retest = _retest_column(u, idx.ri, idx.cj, n_clips)
    flagged: set[int] = set()
    verdicts: list[_Verdict] = []
    for round_no in range(1, config.qc_rounds + 1):
        omega = np.array([0.0 if k in flagged else 1.0 for k in range(n_raters)])
        fit = _alternating_fit(u, idx.ri, idx.cj, n_raters, n_clips, omega, config)
        delta, sigma = fit.delta, np.sqrt(fit.sigma2)
        witnesses = _witnesses(u, listened, idx.ri, idx.cj, rows_of, delta, sigma, omega,
                               n_raters, n_clips, config, components)
        verdicts = []
        for k, rows in enumerate(rows_of):
            ev = _evidence(rows, u, listened, retest, dummies_of[k], witnesses,
                           float(sigma[k]), config)
            verdicts.append(_decide(ev, config))
        now_flagged = {k for k, v in enumerate(verdicts) if v.reasons}
        logger.debug("quality control round %d: %d raters flagged", round_no, len(now_flagged))
        if now_flagged == flagged or len(now_flagged) == n_raters:
            flagged = now_flagged
            break
        flagged = now_flagged

    sigmas_c = [v.sigma_c for v in verdicts if not v.reasons and v.sigma_c is not None]
    reference = float(np.median(sigmas_c)) if sigmas_c else None
    weights: dict[Hashable, float] = {}
    for rater_id, v in zip(rater_list, verdicts, strict=True):
        if v.reasons:
            weights[rater_id] = config.flagged_weight
        elif v.sigma_c is None or reference is None:
            weights[rater_id] = 1.0
        else:
            ratio = config.reliability_tolerance * reference / max(v.sigma_c, 1e-12)
            weights[rater_id] = float(min(1.0, ratio ** 2))

    if any(w > 0 for w in weights.values()):
        final = fit_rater_model(data, rater_weights=weights, config=config)
    else:  # every rater flagged: keep an unweighted fit rather than nothing
        logger.warning("quality control flagged every rater; clip estimates are unweighted")
        final = fit_rater_model(data, config=config)
    assessments = []
    for k, (rater_id, v) in enumerate(zip(rater_list, verdicts, strict=True)):
        assessments.append(RaterAssessment(
            rater_id=rater_id,
            bias=float(final.bias[k]),
            sigma=float(final.sigma[k]),
            weight=weights[rater_id],
            flagged=bool(v.reasons),
            reasons=v.reasons,
            n_ratings=int(final.n_ratings[k]),
            median_listen=v.median_listen,
            p_value=v.p_value,
            consistency_sigma=v.sigma_c,
            note=v.note,
        ))
        if v.reasons:
            logger.info("rater %r flagged: %s", rater_id, "; ".join(v.reasons))
    return QualityControlResult(fit=final, assessments=tuple(assessments))


def _leave_one_out_quality(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, delta: np.ndarray,
                           sigma: np.ndarray, omega: np.ndarray, n_clips: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """ψ of each rating's clip estimated without any rating of that rating's rater.

    Returns the estimates and their error variances (stars²); both NaN/inf where no other
    rater with positive weight rated the clip.
    """
    w = omega[ri] / sigma[ri] ** 2
    v = w * (u - delta[ri])
    den = np.bincount(cj, w, n_clips)
    num = np.bincount(cj, v, n_clips)
    pair = ri.astype(np.int64) * n_clips + cj
    _, inv = np.unique(pair, return_inverse=True)
    inv = inv.reshape(-1)
    pair_w = np.bincount(inv, w)[inv]
    pair_v = np.bincount(inv, v)[inv]
    rest = den[cj] - pair_w
    ok = rest > 1e-9 * np.maximum(den[cj], 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, (num[cj] - pair_v) / rest, np.nan),
                np.where(ok, 1.0 / rest, np.inf))


def _power_sigma2(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, delta: np.ndarray,
                  sigma_fit: np.ndarray, omega: np.ndarray, n_raters: int, n_clips: int,
                  config: FeedbackConfig, labels: np.ndarray | None = None) -> np.ndarray:
    """Each rater's noise variance for the power calculation of rule B (stars²).

    Only clips with at least two ratings of raters that count say anything about a rater's
    noise: residuals of the bias-corrected ratings around such a clip's consensus (the
    precision-weighted mean of the raters that count), each with one degree of freedom less
    its leverage on that mean (``1 − 1/n_j`` for equal weights); ``qc_power_sigma_prior_df``
    pseudo-ratings at ``qc_power_sigma_prior`` make up for the rest::

        σ²_i = (Σ r² + ν·s²_prior) / (Σ (1 − 1/n_j) + ν),  σ_i >= sigma_floor
    """
    x = u - delta[ri]
    active = omega[ri] > 0
    if labels is None:
        key, n_keys, outside = cj, n_clips, np.zeros(u.shape[0], dtype=bool)
    else:  # the consensus of the rater's own taste cluster on the clip
        n_lab = int(labels.max()) + 2
        key, n_keys, outside = cj * n_lab + (labels[ri] + 1), n_clips * n_lab, labels[ri] < 0
    n_j = np.bincount(key, active.astype(float), n_keys)
    # the clip's consensus, weighted by the fitted precisions (erratic raters barely move it)
    w = np.where(active, omega[ri] / sigma_fit[ri] ** 2, 0.0)
    w_j = np.bincount(key, w, n_keys)
    mean_j = np.bincount(key, w * x, n_keys) / np.where(w_j > 0, w_j, 1.0)
    multi = (n_j[key] >= 2) & ~outside
    # a rating loses its leverage on that mean from its degree of freedom (1 − 1/n_j for
    # equal weights); one outside it (a rater that does not count) keeps all of it
    dof = np.where(multi, 1.0 - w / np.where(w_j[key] > 0, w_j[key], 1.0), 0.0)
    r2 = np.where(multi, (x - mean_j[key]) ** 2, 0.0)
    nu = config.qc_power_sigma_prior_df
    sigma2 = (np.bincount(ri, r2, n_raters) + nu * config.qc_power_sigma_prior ** 2) \
        / (np.bincount(ri, dof, n_raters) + nu)
    return np.maximum(sigma2, config.sigma_floor ** 2)


def _quality_se(ri: np.ndarray, cj: np.ndarray, sigma: np.ndarray, omega: np.ndarray,
                n_clips: int) -> np.ndarray:
    """SE of each clip's precision-weighted mean for raters of noise ``sigma`` (NaN: none)."""
    w = omega[ri] / sigma[ri] ** 2
    den = np.bincount(cj, w, n_clips)
    num_sq = np.bincount(cj, omega[ri] ** 2 / sigma[ri] ** 2, n_clips)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sqrt(num_sq) / den, np.nan)


def _signal_variance(psi: np.ndarray, psi_se: np.ndarray) -> float:
    """Spread of true clip quality: variance of the estimates minus their mean error variance."""
    ok = np.isfinite(psi) & np.isfinite(psi_se)
    if ok.sum() < 2:
        return 0.0
    return max(float(np.var(psi[ok], ddof=1) - np.mean(psi_se[ok] ** 2)), 0.0)


# --------------------------------------------------------------------------------------
# witnesses of a rater's taste


@dataclass(frozen=True)
class _Witnesses:
    """What the population says, in one round, about what an honest rater looks like."""

    labels: np.ndarray  # (n_raters,) taste cluster of each rater, -1: none
    consensus: np.ndarray  # (n_ratings, K) leave-one-out consensus of each cluster, NaN: none
    consensus_var: np.ndarray  # (n_ratings, K) its error variance (stars²), inf: none
    cluster_signal: np.ndarray  # (K,) spread of true quality within each cluster (stars²)
    cluster_share: np.ndarray  # (K,) share of clustered raters in each cluster
    noise_ref: float  # rating-noise variance of an honest rater (stars², upper quantile)
    listen_rho2: float  # how well listening tracks an honest rater's taste (squared corr.)
    listen_var_ref: float  # median variance of the listened fraction of honest raters
    taste_model: np.ndarray | None = None  # (n_ratings, K) each cluster's leave-one-out
    # feature model's prediction of the rating's clip, NaN: none
    taste_model_rho2: np.ndarray | None = None  # (K,) its reliability


def _taste_clusters(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, eligible: np.ndarray,
                    n_raters: int, n_clips: int, n_clusters: int,
                    merge_ratio: float) -> np.ndarray:
    """Group raters by taste: spectral clustering of their agreement on shared clips.

    Each eligible rater's ratings are centred on the rater's mean; the similarity of two raters
    is the sum over the clips both rated of the products of their centred ratings, divided by
    the norms of both raters' centred rating vectors (a cosine over sparse overlap). Raters of
    opposed tastes have negative similarity, so the leading eigenvectors separate taste
    groups whatever their sizes; k-means on the row-normalised embedding gives the labels.
    Returns -1 for raters that are not eligible or share no clip with an eligible rater.
    """
    labels = np.full(n_raters, -1)
    members = np.flatnonzero(eligible)
    if members.size < 2 * n_clusters or n_clusters < 1:
        if members.size >= 2:
            labels[members] = 0
        return labels
    pos = np.full(n_raters, -1)
    pos[members] = np.arange(members.size)
    keep = pos[ri] >= 0
    mean_u = np.bincount(ri, u, n_raters) / np.maximum(np.bincount(ri, minlength=n_raters), 1)
    o = (u - mean_u[ri])[keep]
    mat = sparse.csr_matrix((o, (cj[keep], pos[ri[keep]])), shape=(n_clips, members.size))
    gram = sparse.csr_matrix(mat.T @ mat)  # sparse: raters share clips with few others
    inv_norm = sparse.diags(1.0 / np.sqrt(np.maximum(gram.diagonal(), 1e-12)))
    gram.setdiag(0.0)
    gram.eliminate_zeros()
    sim = sparse.csr_matrix(inv_norm @ gram @ inv_norm)
    dims = min(n_clusters, members.size - 1)
    if members.size <= 200:
        values, vectors = np.linalg.eigh(sim.toarray())
        values, vectors = values[-dims:], vectors[:, -dims:]
    else:  # Lanczos on the sparse matrix: O(ratings), not O(raters³)
        start = np.random.default_rng(0).normal(size=members.size)
        values, vectors = eigsh(sim, k=dims, which="LA", v0=start)
    emb = vectors * np.sqrt(np.maximum(values, 0.0))
    length = np.linalg.norm(emb, axis=1)
    linked = length > 1e-9
    if linked.sum() < 2 * n_clusters:
        labels[members[linked]] = 0
        return labels
    unit = emb[linked] / length[linked, None]
    with warnings.catch_warnings():  # an empty cluster only means fewer tastes than clusters
        warnings.simplefilter("ignore")
        _, lab = kmeans2(unit, n_clusters, minit="++", seed=0, iter=50)
    keep = np.flatnonzero(linked)
    lab = _merge_alike(np.unique(lab, return_inverse=True)[1].reshape(-1),
                       sparse.csr_matrix(sim[keep][:, keep]), merge_ratio)
    labels[members[linked]] = lab
    return labels


def _merge_alike(lab: np.ndarray, sim: sparse.csr_matrix, ratio: float) -> np.ndarray:
    """Merge clusters that agree with each other nearly as much as within themselves.

    k-means splits one taste into several clusters when there are fewer tastes than
    clusters; each split halves the raters behind a consensus. Two clusters are merged while
    the mean similarity between them is at least ``ratio`` times the mean of their mean
    within-cluster similarities (opposed tastes have a negative one and are never merged).
    """
    while True:
        k = int(lab.max()) + 1
        if k < 2:
            return lab
        onehot = np.eye(k)[lab]
        total = onehot.T @ np.asarray(sim @ onehot)
        sizes = onehot.sum(axis=0)
        pairs = np.outer(sizes, sizes) - np.diag(sizes)  # within: ordered pairs i != j
        mean = total / np.maximum(pairs, 1)
        within = np.diag(mean)
        best, best_ratio = None, ratio
        for a in range(k):
            for b in range(a + 1, k):
                ref = 0.5 * (within[a] + within[b])
                if within[a] > 0 and within[b] > 0 and mean[a, b] >= best_ratio * ref:
                    best, best_ratio = (a, b), mean[a, b] / ref
        if best is None:
            return lab
        lab = np.where(lab == best[1], best[0], lab)
        lab = np.unique(lab, return_inverse=True)[1].reshape(-1)


def _feature_components(clip_features: Mapping[Hashable, Sequence[float] | np.ndarray],
                        clip_keys: list[Hashable], dims: int) -> np.ndarray | None:
    """Standardised principal components of the clips' features (NaN rows: no features)."""
    rows, present = [], []
    width = None
    for j, c in enumerate(clip_keys):
        vec = clip_features.get(c)
        if vec is None:
            continue
        x = np.asarray(vec, dtype=float).reshape(-1)
        if width is None:
            width = x.shape[0]
        if x.shape[0] != width or not np.isfinite(x).all():
            raise InvalidInput(f"clip_features of clip {c!r} must be {width} finite numbers "
                               f"like the others, got shape {x.shape}")
        rows.append(x)
        present.append(j)
    out = np.full((len(clip_keys), dims), np.nan)
    if len(rows) < 3 or not width:
        return None
    x = np.vstack(rows)
    x = x - x.mean(axis=0)
    scale = x.std(axis=0)
    x = x[:, scale > 0] / scale[scale > 0]
    if x.shape[1] == 0:
        return None
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    k = int(min(dims, np.sum(sv > 1e-9 * sv[0]), len(rows) - 2))
    if k < 1:
        return None
    z = x @ vt[:k].T
    z /= z.std(axis=0)
    out = out[:, :k]
    out[np.array(present)] = z
    return out


def _retest_column(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, n_clips: int) -> np.ndarray:
    """For each rating, the mean of the same rater's other ratings of the same clip (NaN: none).

    A clip served twice to one rater is a test–retest pair: an honest rater's two ratings
    share its taste for the clip and differ by its noise; a random rater's are independent.
    """
    pair = ri.astype(np.int64) * n_clips + cj
    _, inv = np.unique(pair, return_inverse=True)
    inv = inv.reshape(-1)
    count = np.bincount(inv)[inv]
    total = np.bincount(inv, u)[inv]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1, (total - u) / (count - 1), np.nan)


def _taste_models(u: np.ndarray, ri: np.ndarray, cj: np.ndarray, rows_of: list[np.ndarray],
                  labels: np.ndarray, omega: np.ndarray, components: np.ndarray,
                  noise_ref: float, n_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's ridge model of its raters' mean-centred ratings on the clip components,
    refitted without the rater being judged (sufficient statistics minus the rater's own);
    its predictions for every rating, and its reliability (pooled over the cluster's raters:
    their R² on their leave-one-out predictions over their share of spread beyond noise)."""
    z_all = components[cj]
    has = np.isfinite(z_all).all(axis=1)
    p = components.shape[1]
    n_raters = len(rows_of)
    xtx = np.zeros((n_raters, p, p))
    xty = np.zeros((n_raters, p))
    yc = np.zeros(u.shape[0])
    for k, rows in enumerate(rows_of):
        if rows.size == 0:
            continue
        yc[rows] = u[rows] - u[rows].mean()
        r = rows[has[rows]]
        if r.size:
            xtx[k] = z_all[r].T @ z_all[r]
            xty[k] = z_all[r].T @ yc[r]
    ridge = np.eye(p)
    pred = np.full((u.shape[0], n_k), np.nan)
    rho2 = np.zeros(n_k)
    for c in range(n_k):
        member = (labels == c) & (omega > 0)
        a_c, b_c = xtx[member].sum(axis=0) + ridge, xty[member].sum(axis=0)
        num = signal = 0.0
        for k, rows in enumerate(rows_of):
            r = rows[has[rows]]
            if r.size == 0:
                continue
            if member[k]:
                beta = np.linalg.solve(a_c - xtx[k], b_c - xty[k])
            else:
                beta = np.linalg.solve(a_c, b_c)
            pred[r, c] = z_all[r] @ beta
            if member[k] and r.size >= 3:
                f, y = pred[r, c] - pred[r, c].mean(), yc[r]
                tss = float(y @ y)
                if tss > 0 and float(f @ f) > 0:
                    num += float(f @ y) ** 2 / float(f @ f)
                    signal += max(tss - (r.size - 1) * noise_ref, 0.0)
        rho2[c] = min(num / signal, 0.95) if signal > 0 and num > 0 else 0.0
    return pred, rho2


def _witnesses(u: np.ndarray, listened: np.ndarray, ri: np.ndarray, cj: np.ndarray,
               rows_of: list[np.ndarray], delta: np.ndarray, sigma: np.ndarray,
               omega: np.ndarray, n_raters: int, n_clips: int,
               config: FeedbackConfig, components: np.ndarray | None = None) -> _Witnesses:
    counts = np.bincount(ri, minlength=n_raters)
    spread = np.array([float(np.ptp(u[r])) if r.size else 0.0 for r in rows_of])
    eligible = (omega > 0) & (counts >= config.qc_min_ratings) & (spread > 0)
    labels = _taste_clusters(u, ri, cj, eligible, n_raters, n_clips, config.qc_taste_clusters,
                             config.qc_cluster_merge)
    n_k = max(int(labels.max()) + 1, 1)
    sigma_p2 = _power_sigma2(u, ri, cj, delta, sigma, omega, n_raters, n_clips, config,
                             labels=labels)
    sigma_p = np.sqrt(sigma_p2)
    ref_pool = sigma_p2[eligible & (labels >= 0)]
    noise_ref = float(np.quantile(ref_pool, config.qc_noise_quantile)) if ref_pool.size \
        else 0.0
    noise_ref = max(noise_ref, config.qc_honest_noise ** 2)
    consensus = np.full((u.shape[0], n_k), np.nan)
    consensus_var = np.full((u.shape[0], n_k), np.inf)
    signal = np.zeros(n_k)
    share = np.zeros(n_k)
    for c in range(n_k):
        om_c = omega * (labels == c)
        if not om_c.any():
            continue
        consensus[:, c], _ = _leave_one_out_quality(u, ri, cj, delta, sigma, om_c, n_clips)
        _, consensus_var[:, c] = _leave_one_out_quality(u, ri, cj, delta, sigma_p, om_c,
                                                        n_clips)
        w = om_c[ri] / sigma_p2[ri]
        den = np.bincount(cj, w, n_clips)
        with np.errstate(invalid="ignore", divide="ignore"):
            psi_c = np.where(den > 0, np.bincount(cj, w * (u - delta[ri]), n_clips) / den,
                             np.nan)
        signal[c] = _signal_variance(psi_c, _quality_se(ri, cj, sigma_p, om_c, n_clips))
        share[c] = float(np.sum(labels == c))
    share = share / max(share.sum(), 1.0)

    # listening as a witness, pooled over the raters that count (within-rater correlation)
    explained = total = signal_total = 0.0
    listen_vars = []
    for k in np.flatnonzero(eligible):
        rows = rows_of[k]
        y, x = u[rows], listened[rows]
        tss = float(np.sum((y - y.mean()) ** 2))
        vx = float(np.var(x, ddof=1))
        listen_vars.append(vx)
        if tss <= 0 or vx <= 0:
            continue
        r = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sqrt(tss * vx * (rows.size - 1)))
        n = rows.size
        explained += max(r * r - 1.0 / (n - 1), 0.0) * tss  # in-sample R² less its chance
        total += tss
        signal_total += max(tss - (n - 1) * noise_ref, 0.0)
    listen_rho2 = float(min(explained / signal_total, 0.95)) if signal_total > 0 else 0.0
    listen_var_ref = float(np.median(listen_vars)) if listen_vars else 0.0
    taste_model = taste_model_rho2 = None
    if components is not None:
        taste_model, taste_model_rho2 = _taste_models(u, ri, cj, rows_of, labels, omega,
                                                      components, noise_ref, n_k)
    return _Witnesses(labels, consensus, consensus_var, signal, share, noise_ref, listen_rho2,
                      listen_var_ref, taste_model, taste_model_rho2)


@dataclass(frozen=True)
class _Evidence:
    n: int
    median_listen: float
    modal_share: float
    modal_value: float
    top_share: float
    bottom_share: float
    sigma: float  # SUREAL sigma
    p_taste: float | None = None
    p_listen: float | None = None
    p_group: float | None = None
    df_taste: tuple[int, int] | None = None
    n_tested: int = 0
    expected_r2: float = 0.0
    sigma_c: float | None = None
    signal_share: float = 0.0


@dataclass(frozen=True)
class _Verdict:
    reasons: tuple[str, ...]
    median_listen: float
    p_value: float | None
    sigma_c: float | None
    note: str = ""


def _witness_block(
    columns: np.ndarray, reliability: Callable[[int, np.ndarray], float],
    cluster_share: np.ndarray, config: FeedbackConfig,
) -> tuple[list[np.ndarray], float] | None:
    """The columns of ``columns`` (the rater's clips × clusters: a consensus or a taste
    model) that the rater's ratings are tested against, centred, with the share-weighted
    reliability of the block (at most 0.95); a column enters with at least 3 finite, not
    all equal values and ``reliability(c, have)`` of at least ``qc_min_reliability``."""
    cols: list[np.ndarray] = []
    rho2 = 0.0
    for c in range(columns.shape[1]):
        col = columns[:, c]
        have = np.isfinite(col)
        if have.sum() < 3 or np.ptp(col[have]) <= 0:
            continue
        r = reliability(c, have)
        if r < config.qc_min_reliability:
            continue
        cols.append(np.where(have, col - col[have].mean(), 0.0))
        rho2 += cluster_share[c] * r
    return (cols, min(rho2, 0.95)) if cols else None


def _evidence(rows: np.ndarray, u_all: np.ndarray, listened_all: np.ndarray,
              retest_all: np.ndarray, dummies: np.ndarray | None, wit: _Witnesses,
              sigma: float, config: FeedbackConfig) -> _Evidence:
    u, listened = u_all[rows], listened_all[rows]
    n = int(u.shape[0])
    median_listen = float(np.median(listened)) if n else float("nan")
    if n == 0:
        return _Evidence(0, median_listen, 0.0, float("nan"), 0.0, 0.0, sigma)
    values, counts = np.unique(u, return_counts=True)
    base: dict[str, Any] = dict(
        n=n, median_listen=median_listen, modal_share=float(counts.max() / n),
        modal_value=float(values[np.argmax(counts)]),
        top_share=float(np.mean(u >= RATING_MAX - 0.5)),
        bottom_share=float(np.mean(u == RATING_MIN)), sigma=sigma)
    if n < config.qc_min_ratings or counts.size < 2:
        return _Evidence(**base)

    # witnesses of the rater's own taste, in blocks: (centred columns, reliability ρ²)
    blocks: list[tuple[list[np.ndarray], float]] = []
    var_l = float(np.var(listened, ddof=1))
    p_listen = None
    if var_l > 0:
        col = listened - listened.mean()
        if base["median_listen"] <= config.low_listen_fraction and max(
                base["top_share"], base["modal_share"]) >= config.saturation_share:
            alone = _f_test(u, np.column_stack([np.ones(n), col]))  # rule A's exemption
            p_listen = None if alone is None else alone.p_value
        scale = min(1.0, 4 * var_l / wit.listen_var_ref) if wit.listen_var_ref > 0 else 1.0
        blocks.append(([col], wit.listen_rho2 * scale))
    def consensus_reliability(c: int, have: np.ndarray) -> float:
        # how well this cluster's consensus on these clips tracks the cluster's taste; a
        # column that could not tell a typical rater of that cluster from noise only costs
        # degrees of freedom (decided without the rater's ratings, so the test stays exact)
        v = wit.cluster_signal[c]
        e2 = float(np.mean(wit.consensus_var[rows, c][have]))
        return float(have.mean()) * v / (v + e2) if v > 0 else 0.0

    block = _witness_block(wit.consensus[rows], consensus_reliability, wit.cluster_share, config)
    if block is not None:
        blocks.append(block)
    var_u = float(np.var(u, ddof=1))
    signal_share = max(var_u - wit.noise_ref, 0.0) / var_u if var_u > 0 else 0.0
    if wit.taste_model is not None and wit.taste_model_rho2 is not None:
        model_rho2 = wit.taste_model_rho2
        block = _witness_block(wit.taste_model[rows],
                               lambda c, have: float(have.mean()) * float(model_rho2[c]),
                               wit.cluster_share, config)
        if block is not None:
            blocks.append(block)
    # test-retest: the rater's own other rating(s) of the same clip; an honest rater's
    # agree up to its noise, so its reliability is the rater's taste share itself
    retest = retest_all[rows]
    have = np.isfinite(retest)
    if have.sum() >= 3 and np.ptp(retest[have]) > 0:
        blocks.append(([np.where(have, retest - retest[have].mean(), 0.0)],
                       min(float(have.mean()) * signal_share, 0.95)))
    if not blocks:
        return _Evidence(**base, signal_share=signal_share)

    # A typical honest rater with ratings this spread: beyond rating noise, its spread is
    # taste, which each witness tracks with its reliability (independent errors: the
    # signal-to-error ratios add). The test uses the most reliable blocks up to the number
    # that gives it the most power (chosen from the spread of the ratings and the witnesses,
    # not from their association, so the F-test stays exact): a witness that adds little
    # costs more degrees of freedom than it brings.
    blocks.sort(key=lambda b: -b[1])
    best = (len(blocks), -1.0, 0.0)
    kappa = 0.0
    n_cols = 0
    for m, (bcols, r2) in enumerate(blocks, start=1):
        kappa += r2 / (1 - r2) if 0 < r2 < 1 else 0.0
        n_cols += len(bcols)
        expected_m = signal_share * kappa / (1 + kappa)
        power_m = _power(expected_m, (n_cols, n - 1 - n_cols), config.qc_alpha, n) \
            if n - 1 - n_cols >= 2 else 0.0
        if power_m > best[1] + 1e-9:
            best = (m, power_m, expected_m)
    chosen = [c for bcols, _ in blocks[:best[0]] for c in bcols]
    x = np.column_stack([np.ones(n), *chosen])
    taste = _f_test(u, x)
    group = None
    if dummies is not None and dummies.shape[1]:
        group = _f_test(u, np.column_stack([x, dummies]))
    # consistency (for the weight): the residual SD of the richest model, every witness in
    if best[0] == len(blocks):
        richest = group or taste
    else:
        richest_x = np.column_stack([np.ones(n), *[c for bcols, _ in blocks for c in bcols],
                                     *([] if dummies is None else [dummies])])
        richest = _f_test(u, richest_x) or group or taste
    return _Evidence(
        **base,
        p_taste=None if taste is None else taste.p_value,
        p_listen=p_listen,
        p_group=None if group is None else group.p_value,
        df_taste=None if taste is None else (taste.df_model, taste.df_resid),
        n_tested=n, expected_r2=best[2],
        sigma_c=None if richest is None else richest.sigma,
        signal_share=signal_share,
    )


def _decide(ev: _Evidence, config: FeedbackConfig) -> _Verdict:
    if ev.n < config.qc_min_ratings:
        return _Verdict((), ev.median_listen, None, None,
                        note=f"not judged: {ev.n} ratings, {config.qc_min_ratings} needed")

    # rule A: ratings that the rater's own minimal listening contradicts (unless they are
    # shown to follow the rater's listening after all)
    follows_listening = ev.p_listen is not None and ev.p_listen < config.qc_alpha
    minimal = ev.median_listen <= config.low_listen_fraction and not follows_listening
    if minimal and ev.top_share >= config.saturation_share:
        return _Verdict((f"{ev.top_share:.0%} of {ev.n} ratings at the top of the scale (4.5 or 5) with "
                         f"minimal listening (median {ev.median_listen:.0%} of the clip, limit "
                         f"{config.low_listen_fraction:.0%})",),
                        ev.median_listen, None, ev.sigma)
    if minimal and ev.modal_share >= config.saturation_share and ev.modal_value > RATING_MIN:
        return _Verdict((f"{ev.modal_share:.0%} of {ev.n} ratings identical ({ev.modal_value:g}) "
                         f"with minimal listening (median {ev.median_listen:.0%} of the clip, "
                         f"limit {config.low_listen_fraction:.0%})",),
                        ev.median_listen, None, ev.sigma)

    # rule B: a spread of ratings that nothing explains, where a typical honest rater's
    # taste would have been seen
    tested = [p for p in (ev.p_taste, ev.p_group) if p is not None]
    if not tested:
        why = ("all ratings identical" if ev.modal_share >= 1.0 else
               "nothing to test the ratings against (listening that never varies, no clip "
               "shared with raters of a taste)")
        return _Verdict((), ev.median_listen, None, ev.sigma_c if ev.sigma_c is not None
                        else ev.sigma, note=f"not judged: {why}")
    p_min = float(min(tested))
    if p_min < config.qc_alpha:
        return _Verdict((), ev.median_listen, p_min, ev.sigma_c)
    power = _power(ev.expected_r2, ev.df_taste, config.qc_alpha, ev.n_tested)
    if power < config.qc_min_power:
        return _Verdict((), ev.median_listen, p_min, ev.sigma_c,
                        note=f"not judged: too little evidence either way (p={p_min:.2g}, "
                             f"power {power:.2f} < {config.qc_min_power:g})")
    return _Verdict((f"ratings unrelated to the rater's own listening, to raters of the same "
                     f"taste and to the clip groups (p={p_min:.2g} >= {config.qc_alpha:g}, "
                     f"n={ev.n_tested}, {ev.signal_share:.0%} of their spread beyond rating "
                     f"noise, power {power:.2f})",),
                    ev.median_listen, p_min, ev.sigma_c)


def _power(r2: float | None, df: tuple[int, int] | None, alpha: float, n: int) -> float:
    """Power of the F-test for a rater whose true association is the typical rater's R²."""
    if r2 is None or df is None or r2 <= 0:
        return 0.0
    r2 = min(r2, 0.999)
    df_model, df_resid = df
    f_crit = float(special.fdtri(df_model, df_resid, 1.0 - alpha))
    return float(1.0 - special.ncfdtr(df_model, df_resid, r2 / (1 - r2) * n, f_crit))


def _group_dummies(groups: np.ndarray) -> np.ndarray:
    """Indicator columns for groups with at least two rows (the rest is the reference)."""
    labels, counts = np.unique(groups[groups >= 0], return_counts=True)
    keep = labels[counts >= 2]
    if keep.size and np.isin(groups, keep).all():
        keep = keep[1:]  # all rows are in kept groups: one becomes the reference level
    return np.column_stack([(groups == g).astype(float) for g in keep]) if keep.size else \
        np.zeros((groups.shape[0], 0))


@dataclass(frozen=True)
class _FTest:
    p_value: float
    r2: float
    sigma: float
    df_model: int
    df_resid: int


def _f_test(y: np.ndarray, x: np.ndarray) -> _FTest | None:
    """F-test of ``y ~ x`` (x includes the intercept) against ``y ~ 1``.

    None when there are too few degrees of freedom or ``y`` is constant.
    """
    n = y.shape[0]
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    rank = int(rank)
    df_model, df_resid = rank - 1, n - rank
    if df_model < 1 or df_resid < 2:
        return None
    rss = float(np.sum((y - x @ coef) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    if tss <= 0:
        return None
    sigma = float(np.sqrt(rss / df_resid))
    r2 = max(0.0, 1.0 - rss / tss)
    if rss <= 1e-12 * tss:
        return _FTest(0.0, r2, sigma, df_model, df_resid)
    f_stat = ((tss - rss) / df_model) / (rss / df_resid)
    return _FTest(float(special.fdtrc(df_model, df_resid, f_stat)), r2, sigma, df_model,
                  df_resid)
