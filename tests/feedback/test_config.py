from __future__ import annotations

import pytest

from encore.errors import InvalidInput
from encore.feedback import DEFAULT_CONFIG, FeedbackConfig


def test_defaults_are_the_documented_ones() -> None:
    c = DEFAULT_CONFIG
    assert (c.baseline_probability, c.dispatch_review_share) == (0.25, 0.3)
    assert (c.min_listen_seconds, c.min_listen_fraction) == (5.0, 0.5)
    assert c.rating_weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert c.confidence_weights == (0.5, 0.5)
    assert (c.curation_min_ratings, c.cold_start_top_n, c.cold_start_max_share) == (3, 100, 0.5)
    assert (c.qc_power_sigma_prior, c.qc_power_sigma_prior_df) == (0.5, 8.0)
    assert c.bootstrap_cluster == "rater"


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("baseline_probability", 1.5, "baseline_probability=1.5"),
        ("min_listen_seconds", -1.0, "min_listen_seconds=-1.0"),
        ("weight_rating", -0.1, "weight -0.1"),
        ("curation_min_ratings", 0, "curation_min_ratings=0"),
        ("dataset_max_size", 0, "dataset_max_size=0"),
        ("bootstrap_cluster", "song", "bootstrap_cluster='song'"),
        ("confidence_level", 1.0, "confidence_level=1.0"),
        ("cold_start_max_share", 0.0, "cold_start_max_share=0.0"),
        ("dispatch_review_share", 0.8,
         r"baseline_probability=0.25 \+ dispatch_review_share=0.8"),
        ("qc_power_sigma_prior", 0.0, "qc_power_sigma_prior=0.0"),
    ],
)
def test_invalid_settings_name_the_value(field: str, value: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        FeedbackConfig(**{field: value})


def test_all_zero_rating_weights_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="must not all be zero"):
        FeedbackConfig(weight_rating=0.0, weight_listen=0.0, weight_similarity=0.0)


def test_replace_validates_again() -> None:
    assert DEFAULT_CONFIG.replace(curation_min_ratings=5).curation_min_ratings == 5
    with pytest.raises(InvalidInput, match="qc_alpha=2"):
        DEFAULT_CONFIG.replace(qc_alpha=2)


def test_function_defaults_agree_with_the_config_defaults() -> None:
    import inspect
    from datetime import timedelta

    from encore.feedback import curate, dispatch, purge, rating_allowed, summarize_listen
    from encore.feedback.stats import build_report

    def default(func: object, name: str) -> object:
        return inspect.signature(func).parameters[name].default

    c = DEFAULT_CONFIG
    assert default(dispatch, "baseline_probability") == c.baseline_probability
    assert default(dispatch, "review_probability") == c.dispatch_review_share
    assert default(rating_allowed, "min_seconds") == c.min_listen_seconds
    assert default(rating_allowed, "min_fraction") == c.min_listen_fraction
    assert default(summarize_listen, "slack_seconds") == c.wall_clock_slack_seconds
    assert default(curate, "min_ratings") == c.curation_min_ratings
    assert default(curate, "cold_start_top_n") == c.cold_start_top_n
    assert default(curate, "cold_start_max_share") == c.cold_start_max_share
    assert default(curate, "margin") == c.admit_margin
    assert default(purge, "near_duplicate_similarity") == c.purge_similarity
    assert default(purge, "max_age") == timedelta(days=c.dataset_max_age_days)
    assert default(purge, "max_size") == c.dataset_max_size
    assert default(build_report, "n_resamples") == c.bootstrap_resamples
    assert default(build_report, "level") == c.confidence_level
    assert default(build_report, "cluster") == c.bootstrap_cluster
