from __future__ import annotations

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.feedback import (
    ClipRating,
    confidence,
    normalized_rating,
    rating_score,
    score_clip,
    validate_rating,
    validate_ratings,
)


@pytest.mark.parametrize("value", [1, 1.5, 3.0, 4.5, 5, np.float32(2.5)])
def test_grid_ratings_are_accepted(value: float) -> None:
    assert validate_rating(value) == float(value)


@pytest.mark.parametrize("value", [5.3, 0.5, 5.5, 0.0, 3.25, float("nan"), float("inf"), True,
                                   "4"])
def test_off_grid_ratings_are_rejected_naming_the_value(value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_rating(value)
    assert str(err.value) == f"rating={value!r} must be 1..5 in steps of 0.5"


def test_exact_message_for_5_3() -> None:
    with pytest.raises(InvalidInput, match=r"^rating=5\.3 must be 1\.\.5 in steps of 0\.5$"):
        validate_rating(5.3)


def test_vectorised_validation_names_value_and_index() -> None:
    assert validate_ratings([1, 2.5, 5]).tolist() == [1.0, 2.5, 5.0]
    with pytest.raises(InvalidInput, match=r"rating=4\.2 \(index 2\)"):
        validate_ratings([1, 2.5, 4.2])


@pytest.mark.parametrize(
    ("rating", "bias", "expected"),
    [(1.0, 0.0, 0.0), (5.0, 0.0, 1.0), (3.0, 0.0, 0.5), (4.0, 0.5, 0.625),
     (2.0, -0.5, 0.375), (5.0, -1.0, 1.0), (1.5, 1.0, 0.0)],
)
def test_normalized_rating_removes_bias_and_clamps(rating: float, bias: float,
                                                   expected: float) -> None:
    assert normalized_rating(rating, bias) == pytest.approx(expected)


def test_rating_score_hand_computed() -> None:
    # (0.75 + 0.5 + 0.2) / 3
    assert rating_score(0.75, 0.5, 0.2) == pytest.approx(1.45 / 3)
    # weights (2, 1, 1) -> (1.5 + 0.5 + 0.2) / 4
    assert rating_score(0.75, 0.5, 0.2, weights=(2, 1, 1)) == pytest.approx(0.55)
    assert rating_score(1.0, 1.0, 1.0) == pytest.approx(1.0)


def test_confidence_hand_computed() -> None:
    assert confidence(0.75, 0.5) == pytest.approx(0.625)
    assert confidence(0.75, 0.5, weights=(1, 3)) == pytest.approx(0.5625)
    assert confidence(0.0, 0.0) == 0.0


@pytest.mark.parametrize("bad", [-0.1, 1.1])
def test_components_outside_unit_interval_are_rejected(bad: float) -> None:
    with pytest.raises(InvalidInput, match=f"similarity={bad!r}"):
        rating_score(0.5, 0.5, bad)
    with pytest.raises(InvalidInput, match=f"l_hat={bad!r}"):
        confidence(0.5, bad)


def test_clip_score_aggregates_over_listeners_by_reliability() -> None:
    ratings = [ClipRating("a", 4.0, 1.0), ClipRating("b", 2.0, 0.6), ClipRating("c", 5.0, 0.5)]
    s = score_clip(ratings, similarity=0.4, biases={"a": 0.5, "b": -0.5},
                   weights={"a": 1.0, "b": 0.5, "c": 0.0})
    # r̂: a (4-0.5-1)/4 = 0.625, b (2+0.5-1)/4 = 0.375; weights 1, 0.5; c is ignored
    r_hat = (0.625 * 1 + 0.375 * 0.5) / 1.5
    l_hat = (1.0 * 1 + 0.6 * 0.5) / 1.5
    assert s is not None
    assert s.r_hat == pytest.approx(r_hat)  # 0.541667
    assert s.l_hat == pytest.approx(l_hat)  # 0.866667
    assert s.R == pytest.approx((r_hat + l_hat + 0.4) / 3)  # 0.602778
    assert s.confidence == pytest.approx((r_hat + l_hat) / 2)  # 0.704167
    assert (s.n_ratings, s.weight_total) == (2, 1.5)


def test_clip_score_equals_weighted_mean_of_listener_scores(rng: np.random.Generator) -> None:
    stars = rng.choice(np.arange(1, 5.5, 0.5), 7)
    listens = rng.uniform(0.5, 1, 7)
    w = rng.uniform(0.1, 1, 7)
    ratings = [ClipRating(i, float(s), float(x)) for i, (s, x) in enumerate(zip(stars, listens, strict=True))]
    agg = score_clip(ratings, similarity=0.3, weights=dict(enumerate(w)))
    each = [rating_score(normalized_rating(s), x, 0.3) for s, x in zip(stars, listens, strict=True)]
    assert agg is not None and agg.R == pytest.approx(np.average(each, weights=w))


def test_clip_without_a_trusted_rating_has_no_score() -> None:
    assert score_clip([], similarity=0.5) is None
    assert score_clip([ClipRating("x", 5.0, 0.5)], similarity=0.5, weights={"x": 0.0}) is None


def test_clip_rating_validates() -> None:
    with pytest.raises(InvalidInput, match="rating=5.3"):
        ClipRating("a", 5.3, 1.0)
    with pytest.raises(InvalidInput, match="listened_fraction=1.2"):
        ClipRating("a", 5.0, 1.2)


def test_score_clips_scores_every_clip_of_a_rating_set() -> None:
    from encore.feedback import RatingSet, score_clips

    data = RatingSet.from_records([("a", "g1", 4.0, 1.0), ("b", "g1", 2.0, 0.6),
                                   ("a", "g2", 5.0, 0.5)])
    scores = score_clips(data, similarity={"g1": 0.4, "g2": 0.9}, biases={"a": 0.5},
                         weights={"b": 0.0})
    assert scores["g1"].r_hat == pytest.approx(0.625) and scores["g1"].n_ratings == 1
    assert scores["g2"].R == pytest.approx((0.875 + 0.5 + 0.9) / 3)
    with pytest.raises(InvalidInput, match="no similarity given for clip 'g2'"):
        score_clips(data, similarity={"g1": 0.4})
