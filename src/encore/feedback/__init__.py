"""The loop's pure logic (DESIGN §2–§3): dispatch, listening, rating function, rater model and
quality control, dataset curation and purge, report statistics.

Pure functions over numpy arrays and frozen dataclasses; no database, web, queue or torch
(a test keeps it so). The services fill :class:`FeedbackConfig` from the settings and store
what these functions decide.
"""

from __future__ import annotations

from encore.feedback.config import DEFAULT_CONFIG, FeedbackConfig
from encore.feedback.curation import Candidate, CurationDecision, DatasetClip, curate
from encore.feedback.dispatch import (
    DispatchDecision,
    ReviewCandidate,
    choose_version,
    dispatch,
    nearest_unrated,
    review_eligible,
    validate_ab_weights,
)
from encore.feedback.listening import (
    ListenSummary,
    minimum_listen_seconds,
    rating_allowed,
    summarize_listen,
    union_seconds,
)
from encore.feedback.purge import PurgeRemoval, PurgeResult, purge
from encore.feedback.raters import (
    QualityControlResult,
    RaterAssessment,
    RaterModelFit,
    RatingSet,
    assess_raters,
    fit_rater_model,
)
from encore.feedback.rating import (
    ClipRating,
    ClipScore,
    confidence,
    normalized_rating,
    rating_score,
    score_clip,
    score_clips,
    validate_rating,
    validate_ratings,
)
from encore.feedback.stats import (
    Cell,
    Comparison,
    GainDecomposition,
    IterationChange,
    MeanEstimate,
    PairedComparison,
    PolicyValue,
    RatingRecords,
    RatingTable,
    Report,
    bootstrap_mean_difference,
    build_report,
    decompose_gain,
    fair_comparisons,
    mean_estimate,
    off_policy_value,
    paired_comparison,
    rating_table,
    same_round_comparison,
    two_way_bootstrap,
)

__all__ = [
    "DEFAULT_CONFIG",
    "Candidate",
    "Cell",
    "ClipRating",
    "ClipScore",
    "Comparison",
    "CurationDecision",
    "DatasetClip",
    "DispatchDecision",
    "FeedbackConfig",
    "GainDecomposition",
    "IterationChange",
    "ListenSummary",
    "MeanEstimate",
    "PairedComparison",
    "PolicyValue",
    "PurgeRemoval",
    "PurgeResult",
    "QualityControlResult",
    "RaterAssessment",
    "RaterModelFit",
    "RatingRecords",
    "RatingSet",
    "RatingTable",
    "Report",
    "ReviewCandidate",
    "assess_raters",
    "bootstrap_mean_difference",
    "build_report",
    "choose_version",
    "confidence",
    "curate",
    "decompose_gain",
    "dispatch",
    "fair_comparisons",
    "fit_rater_model",
    "mean_estimate",
    "minimum_listen_seconds",
    "nearest_unrated",
    "normalized_rating",
    "off_policy_value",
    "paired_comparison",
    "purge",
    "rating_allowed",
    "rating_score",
    "rating_table",
    "review_eligible",
    "same_round_comparison",
    "score_clip",
    "score_clips",
    "summarize_listen",
    "two_way_bootstrap",
    "union_seconds",
    "validate_ab_weights",
    "validate_rating",
    "validate_ratings",
]
