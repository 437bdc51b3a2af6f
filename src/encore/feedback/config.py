"""Settings of the loop's logic, with their defaults and the reason for each.

:class:`FeedbackConfig` is a frozen dataclass; the services fill it from
``encore.config.Settings`` (this package never reads the environment): a field and the
setting it comes from share one name (``ENCORE_`` + the name in upper case), so the
services copy them by name. Every function in ``encore.feedback`` also takes the individual
values as keyword arguments, so a caller that needs one knob does not have to build a whole
config.

Defaults and why
----------------

Dispatch (``dispatch.py``)

``baseline_probability = 0.25``
    The paper's §3.1: "a 25 % chance they receive a previously generated song from the
    dataset (d*)". High enough that every dataset clip collects baseline ratings, low
    enough that three requests in four produce new material.
``dispatch_review_share = 0.3``
    The review branch (output agreement for new clips): 30 % of requests are
    served a new clip generated for another listener's request that still has fewer than
    ``curation_min_ratings`` ratings (the nearest to the request's inputs), instead of
    generating. Without it a new clip is rated only by its requester and never reaches
    ``curation_min_ratings``.
    With 45 % of requests generating, 30 % reviewing gives each new clip about 0.67 extra
    ratings on average — the nearest-first choice fills some clips to ``m`` = 3 rather than
    spreading thin — while still generating nearly half the time; both shares together must
    not exceed 1. When nothing awaits review the request generates.

Listening (``listening.py``)

``min_listen_seconds = 5.0`` and ``min_listen_fraction = 0.5``
    A rating counts after ``min(5 s, half the clip)`` of listening. 5 s is Music Arena's
    ``MINIMUM_LISTEN_TIME``; the fraction keeps short clips ratable (the default clip is
    5.9 s, so 5 s would demand 85 % of it, while half a clip is enough to judge it).
``wall_clock_slack_seconds = 1.0``
    Reported listening may exceed the wall time the server saw pass since delivery by this
    much (network latency, clock granularity between the delivery timestamp and the first
    audio frame). Small against the 5 s minimum, so it cannot buy a rating.

Rating function (``rating.py``)

``weight_rating = weight_listen = weight_similarity = 1/3``
    The paper's Eq. (1) is the *unweighted* mean of r̂, l̂ and S.
``confidence_weight_rating = confidence_weight_listen = 0.5``
    The paper defines c as "the weighted mean of the song's rating and listen time" and
    gives no weights; equal weights are the neutral choice.

Rater model (P.913 / SUREAL, ``raters.py``)

``rater_max_iterations = 500``, ``rater_tolerance = 1e-6``
    The alternating updates converge in 5–40 iterations on realistic data; 500 is a
    guard, and 1e-6 stars is far below the 0.5-star resolution of the scale.
``bias_prior_sd = 1.0`` (stars)
    A weak N(0, 1²) prior on each rater's bias (MAP instead of pure ML). It only matters
    for raters with a handful of ratings, whose ML bias would be noise; with n ratings and
    inconsistency σ the bias is shrunk by ``n / (n + σ²)``, i.e. by under 2 % at n = 20.
``sigma_prior_ratings = 2.0``
    Each rater's noise variance is estimated as if they had two extra ratings at the
    pooled variance. Without it a rater with one or two ratings gets σ → 0 and an infinite
    weight in the clip estimates.
``sigma_floor = 0.1`` (stars)
    Lower bound for σ; ratings are quantised to 0.5 stars (rounding noise alone has an SD
    of 0.14), so no rater is more precise than that.

Quality control (``raters.py``)

``qc_min_ratings = 8``
    A rater is judged only after 8 ratings: below that the association test has almost no
    power and a median listen is noise. Unjudged raters keep full weight.
``qc_alpha = 0.01``
    Significance level of rule B's association tests (and of rule A's listening exemption).
    A random rater passes one of the two tests by chance with probability ≤ 2α, so is caught
    with ≥ 98 % where the test is powered; an honest rater whose ratings spread beyond their
    noise is associated with their own listening or their taste cluster far beyond it.
``qc_min_power = 0.9``
    Rule B flags only when the test had at least 90 % power to see the association of a
    typical honest rater whose ratings are as spread as this rater's (the share of that
    spread beyond honest rating noise would be taste, tracked by the witnesses with their
    reliabilities, see :mod:`encore.feedback.raters`). An honest rater who heard clips of
    little varied appeal, or who dislikes most clips, is left "not judged" instead.
``qc_power_sigma_prior = 0.5`` (stars), ``qc_power_sigma_prior_df = 8``
    Each rater's noise level for the power calculation, estimated only from clips that at
    least one other rater of the same taste cluster rated (residuals around that cluster's
    consensus), with 8 pseudo-ratings (one judging threshold's worth) at 0.5 stars. The
    fitted SUREAL σ says nothing where clips are rated once (it sits at its floor, which once
    made every test look powerful: the simulated pilot flagged 14 of 20 raters at 8 ratings
    each), and residuals around raters of another taste are disagreement, not noise.
``qc_honest_noise = 0.75`` (stars), ``qc_noise_quantile = 0.5``
    The rating noise a typical honest rater may have, σ_ref: the larger of 0.75 stars and
    the median of the raters' noise estimates above. The power calculation treats only a
    rater's spread beyond σ²_ref as taste, so noisy honest raters are not judged on noise.
    0.75 is above the simulated populations' noisiest honest listeners (0.6 and 0.7 stars)
    with half-star rounding; a random rater's uniform half stars spread 1.29 stars, so about
    two thirds of their variance is still unexplained "taste". The median (not a higher
    quantile) because before the first round adversaries are still among the raters.
``qc_taste_clusters = 3``, ``qc_cluster_merge = 0.5``
    At most three taste clusters (the shipped population's three groups; two opposed groups
    fit in them), merged while two clusters agree with each other at least half as much as
    within themselves: splitting one taste needlessly halves the raters behind each
    consensus and costs the test degrees of freedom (with one taste, random raters at ~25
    ratings over ~4 raters per clip were caught 38/50 without merging, 47/50 with it; since
    rule B picks the witnesses that maximise its power, 50/50 either way).
``qc_min_reliability = 0.05``
    A cluster's consensus enters a rater's test only where it tracks a typical member's taste
    with reliability ≥ 0.05 on that rater's clips (share covered × V/(V + e²)); columns that
    could not show anything only cost degrees of freedom.
``qc_rounds = 3``
    Rounds of judging; each re-estimates the clusters and consensus without the raters
    flagged so far. The flagged set is usually stable after the second.
``saturation_share = 0.8``
    Rule A's "maximal or always-identical ratings": at least 80 % of a rater's ratings at the
    top of the scale (4.5 or 5: the ``max_min_listen`` adversary gives 4.5 a tenth of the
    time), or at a single value above 1 star.
``low_listen_fraction = 0.6``
    "Minimal listening": the rater's median listened fraction is at most 0.6, i.e. within
    10 points of the point where the rating button unlocks on a default clip. Both
    conditions are needed: a rater who loves everything and listens to it is not flagged,
    nor is one who gives 1 star after skipping (what an honest listener does with a clip it
    dislikes).
``flagged_weight = 0.0``
    A flagged rater's ratings are ignored in clip estimates and aggregates (they are kept
    in the database, and unflagging them later restores their weight).
``reliability_tolerance = 1.5``
    An unflagged rater is down-weighted only when their taste-adjusted residual noise is
    more than 1.5× the median rater's: weight = min(1, (1.5·σ_median/σ)²), the inverse-
    variance weight relative to a tolerant reference. Consistency, not agreement, sets it.

Curation (``curation.py``)

``curation_min_ratings = 3``
    Output agreement needs several listeners; with three, one outlier cannot carry a clip
    in, and the bias-corrected mean of three ratings of σ ≈ 0.5 stars has an SE of about
    0.3 stars (0.07 on the [0, 1] scale of r̂).
``cold_start_top_n = 100``
    The paper's pilot: "the top 100 songs based on users' normalized ratings".
``cold_start_max_share = 0.5``
    ... but at most the better half of the rated candidates (``ceil(0.5 · n)``). With fewer
    rated clips than N the top N was everything, 1-star clips included (the simulated full
    pilot: N = 100, 80 rated clips, all admitted); the half keeps the cold start a selection
    by R whatever the number of clips, and leaves enough clips (and a contrast to their
    rejected neighbours) for the first fine-tune. With ≥ 2N rated clips the top N binds.
``admit_margin = 0.0``
    The paper's strict rule ``R(g) > R(d*)``. A positive margin demands a clear win
    (it is one setting away).

Purge (``purge.py``)

``purge_similarity = 0.95``
    Two dataset clips with S above 0.95 are treated as the same target; only near-identical
    clips are merged, so the dataset keeps its variety. Calibrate against the similarity
    model (clips of the same input song with different seeds should fall below it).
``dataset_max_age_days = 180.0``
    Long enough to span several fine-tune iterations at the pilot's pace (weeks each),
    short enough that targets chosen by a rater pool of half a year ago stop steering the
    model. ``None`` disables the rule.
``dataset_max_size = 1000``
    Ten times the fine-tuning top-N: enough pool for the top 100 to be selective, small
    enough that nearest-neighbour search and the pairwise purge stay cheap.
    ``None`` disables the cap.

Report statistics (issue 6)

``bootstrap_resamples = 2000``, ``confidence_level = 0.95``
    2000 resamples put the Monte-Carlo error of a 95 % percentile bound well below the
    rating resolution.
``bootstrap_cluster = "rater"``
    Resample raters (with all their ratings), not single ratings: ratings of one rater share
    that rater's bias, so they are not independent; treating them as independent understates
    the uncertainty whenever a few raters give many of the ratings (the pilot had 5 users).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from encore.errors import InvalidInput

BootstrapCluster = Literal["rater", "rating"]


@dataclass(frozen=True)
class FeedbackConfig:
    """All settings of ``encore.feedback`` (see the module docstring for why each default)."""

    # dispatch
    baseline_probability: float = 0.25
    dispatch_review_share: float = 0.3
    # listening
    min_listen_seconds: float = 5.0
    min_listen_fraction: float = 0.5
    wall_clock_slack_seconds: float = 1.0
    # rating function
    weight_rating: float = 1.0 / 3.0
    weight_listen: float = 1.0 / 3.0
    weight_similarity: float = 1.0 / 3.0
    confidence_weight_rating: float = 0.5
    confidence_weight_listen: float = 0.5
    # rater model
    rater_max_iterations: int = 500
    rater_tolerance: float = 1e-6
    bias_prior_sd: float = 1.0
    sigma_prior_ratings: float = 2.0
    sigma_floor: float = 0.1
    # quality control
    qc_min_ratings: int = 8
    qc_alpha: float = 0.01
    qc_min_power: float = 0.9
    qc_power_sigma_prior: float = 0.5
    qc_power_sigma_prior_df: float = 8.0
    qc_rounds: int = 3
    qc_taste_clusters: int = 3
    qc_cluster_merge: float = 0.5
    qc_noise_quantile: float = 0.5
    qc_honest_noise: float = 0.75
    qc_min_reliability: float = 0.05
    qc_feature_dims: int = 4
    saturation_share: float = 0.8
    low_listen_fraction: float = 0.6
    flagged_weight: float = 0.0
    reliability_tolerance: float = 1.5
    # curation
    curation_min_ratings: int = 3
    cold_start_top_n: int = 100
    cold_start_max_share: float = 0.5
    admit_margin: float = 0.0
    # purge
    purge_similarity: float = 0.95
    dataset_max_age_days: float | None = 180.0
    dataset_max_size: int | None = 1000
    # report statistics
    bootstrap_resamples: int = 2000
    confidence_level: float = 0.95
    bootstrap_cluster: BootstrapCluster = "rater"

    def __post_init__(self) -> None:
        for name in ("baseline_probability", "dispatch_review_share", "min_listen_fraction", "qc_alpha",
                     "saturation_share", "low_listen_fraction", "flagged_weight", "qc_min_power",
                     "qc_noise_quantile", "qc_min_reliability", "qc_cluster_merge"):
            _check_unit(name, getattr(self, name))
        for name in ("min_listen_seconds", "wall_clock_slack_seconds", "admit_margin",
                     "sigma_prior_ratings"):
            _check_nonnegative(name, getattr(self, name))
        for name in ("rater_tolerance", "bias_prior_sd", "sigma_floor", "reliability_tolerance",
                     "qc_power_sigma_prior", "qc_power_sigma_prior_df", "qc_honest_noise"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise InvalidInput(f"FeedbackConfig.{name}={value!r} must be a positive number")
        for name in ("rater_max_iterations", "qc_min_ratings", "curation_min_ratings",
                     "cold_start_top_n", "bootstrap_resamples", "qc_rounds", "qc_taste_clusters",
                     "qc_feature_dims"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"FeedbackConfig.{name}={value!r} must be an integer >= 1")
        check_weights("rating-function weights",
                      (self.weight_rating, self.weight_listen, self.weight_similarity))
        check_weights("confidence weights",
                      (self.confidence_weight_rating, self.confidence_weight_listen))
        _check_unit("purge_similarity", self.purge_similarity)
        if self.baseline_probability + self.dispatch_review_share > 1.0 + 1e-12:
            raise InvalidInput(f"FeedbackConfig.baseline_probability={self.baseline_probability!r}"
                               f" + dispatch_review_share={self.dispatch_review_share!r} must not "
                               "exceed 1")
        if not _finite(self.cold_start_max_share) or not 0 < self.cold_start_max_share <= 1:
            raise InvalidInput(f"FeedbackConfig.cold_start_max_share={self.cold_start_max_share!r}"
                               " must be in (0, 1]")
        max_age = self.dataset_max_age_days
        if max_age is not None and (not _finite(max_age) or max_age <= 0):
            raise InvalidInput(f"FeedbackConfig.dataset_max_age_days={max_age!r} must be > 0 "
                               "or None")
        max_size = self.dataset_max_size
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise InvalidInput(f"FeedbackConfig.dataset_max_size={max_size!r} must "
                               "be an integer >= 1 or None")
        if not (_finite(self.confidence_level) and 0 < self.confidence_level < 1):
            raise InvalidInput(f"FeedbackConfig.confidence_level={self.confidence_level!r} must "
                               "be in (0, 1)")
        if self.bootstrap_cluster not in ("rater", "rating"):
            raise InvalidInput(f"FeedbackConfig.bootstrap_cluster={self.bootstrap_cluster!r} "
                               "must be 'rater' or 'rating'")

    @property
    def rating_weights(self) -> tuple[float, float, float]:
        """``(w_r, w_l, w_s)`` of the rating function."""
        return (self.weight_rating, self.weight_listen, self.weight_similarity)

    @property
    def confidence_weights(self) -> tuple[float, float]:
        """``(a_r, a_l)`` of the confidence."""
        return (self.confidence_weight_rating, self.confidence_weight_listen)

    def replace(self, **changes: Any) -> FeedbackConfig:
        """A copy with some fields changed (validated again, so a value of the wrong type
        raises :class:`InvalidInput` here rather than being ruled out by its annotation)."""
        return dataclasses.replace(self, **changes)



def _finite(value: object) -> TypeGuard[float]:
    """A real, finite number (``bool`` excluded); narrows ``value`` for the checks after it."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_unit(name: str, value: object) -> None:
    if not _finite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"FeedbackConfig.{name}={value!r} must be in [0, 1]")


def _check_nonnegative(name: str, value: object) -> None:
    if not _finite(value) or value < 0:
        raise InvalidInput(f"FeedbackConfig.{name}={value!r} must be a finite number >= 0")


def check_weights(what: str, weights: tuple[float, ...]) -> tuple[float, ...]:
    """Validate non-negative finite weights with a positive sum; return them normalised.

    Raises
    ------
    InvalidInput
        If a weight is negative or not finite, or all are zero.
    """
    for w in weights:
        if not _finite(w) or w < 0:
            raise InvalidInput(f"{what} {weights!r}: weight {w!r} must be a finite number >= 0")
    total = float(sum(weights))
    if total <= 0:
        raise InvalidInput(f"{what} {weights!r} must not all be zero")
    return tuple(float(w) / total for w in weights)


DEFAULT_CONFIG = FeedbackConfig()
