from __future__ import annotations

import math

import numpy as np
import pytest

from encore.errors import Conflict, InvalidInput
from encore.feedback import (
    DispatchDecision,
    ReviewCandidate,
    choose_version,
    dispatch,
    nearest_unrated,
    review_eligible,
)

N_DRAWS = 10_000


def _binomial_bound(n: int, p: float, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(n * p * (1 - p))


def test_branch_frequency_is_p_within_a_binomial_bound(rng: np.random.Generator) -> None:
    ids = list(range(50))
    sims = rng.uniform(0, 1, 50)
    baseline = sum(
        dispatch(dataset_ids=ids, similarity=sims, rated_clip_ids=(), versions={"v0": 1.0},
                 rng=rng).branch == "baseline"
        for _ in range(N_DRAWS))
    assert abs(baseline - 0.25 * N_DRAWS) <= _binomial_bound(N_DRAWS, 0.25)


@pytest.mark.parametrize("p", [0.0, 0.6, 1.0])
def test_branch_frequency_follows_the_setting(p: float, rng: np.random.Generator) -> None:
    n = 4000
    baseline = sum(
        dispatch(dataset_ids=[1, 2], similarity=[0.5, 0.4], rated_clip_ids=(),
                 versions={"v0": 1.0}, rng=rng, baseline_probability=p,
                 review_probability=min(0.3, 1 - p)).branch == "baseline"
        for _ in range(n))
    assert abs(baseline - p * n) <= _binomial_bound(n, p) + 1e-9


def test_empty_dataset_always_generates(rng: np.random.Generator) -> None:
    decisions = [dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(),
                          versions={"v0": 1.0}, rng=rng, baseline_probability=1.0,
                          review_probability=0.0)
                 for _ in range(500)]
    assert {d.branch for d in decisions} == {"generate"}
    assert all(d.clip_id is None and d.version_id == "v0" for d in decisions)
    assert all("dataset is empty" in d.reason for d in decisions)


def test_baseline_is_the_nearest_clip_the_listener_has_not_rated() -> None:
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c", "d"]
    sims = [0.2, 0.9, 0.7, 0.8]
    d = dispatch(dataset_ids=ids, similarity=sims, rated_clip_ids={"b"}, versions={"v0": 1},
                 rng=rng, baseline_probability=1.0, review_probability=0.0)
    assert (d.branch, d.clip_id, d.version_id, d.similarity) == ("baseline", "d", None, 0.8)


def test_never_serves_a_clip_the_listener_already_rated(rng: np.random.Generator) -> None:
    ids = list(range(30))
    sims = rng.uniform(0, 1, 30)
    rated: set[int] = set()
    served = []
    for _ in range(400):  # the listener rates every baseline they get
        d = dispatch(dataset_ids=ids, similarity=sims, rated_clip_ids=rated,
                     versions={"v0": 1.0}, rng=rng, baseline_probability=0.5)
        if d.branch == "baseline":
            assert d.clip_id not in rated
            served.append(d.clip_id)
            rated.add(d.clip_id)
    assert sorted(served) == ids  # each clip exactly once, nearest first
    assert served == sorted(ids, key=lambda i: -sims[i])
    d = dispatch(dataset_ids=ids, similarity=sims, rated_clip_ids=rated, versions={"v0": 1.0},
                 rng=rng, baseline_probability=1.0, review_probability=0.0)
    assert d.branch == "generate" and "rated every dataset clip" in d.reason


def test_similarity_callable_is_asked_only_on_the_baseline_branch_for_unrated_clips() -> None:
    calls: list[list[int]] = []

    def sim(clip_ids: list[int]) -> list[float]:
        calls.append(list(clip_ids))
        return [1.0 / (1 + c) for c in clip_ids]

    rng = np.random.default_rng(3)
    d = dispatch(dataset_ids=[0, 1, 2], similarity=sim, rated_clip_ids={0}, versions={"v": 1},
                 rng=rng, baseline_probability=0.0)
    assert d.branch == "generate" and calls == []
    d = dispatch(dataset_ids=[0, 1, 2], similarity=sim, rated_clip_ids={0}, versions={"v": 1},
                 rng=rng, baseline_probability=1.0, review_probability=0.0)
    assert calls == [[1, 2]] and d.clip_id == 1


def test_ties_go_to_the_smallest_clip_id() -> None:
    assert nearest_unrated([7, 3, 5], [0.5, 0.5, 0.4], ()) == (3, 0.5)


def test_ab_weights_mix_within_a_binomial_bound(rng: np.random.Generator) -> None:
    versions = {"v0": 1.0, "v1": 3.0, "v2": 0.0}
    picks = [choose_version(versions, rng) for _ in range(N_DRAWS)]
    n_v1 = picks.count("v1")
    assert abs(n_v1 - 0.75 * N_DRAWS) <= _binomial_bound(N_DRAWS, 0.75)
    assert picks.count("v2") == 0
    assert picks.count("v0") + n_v1 == N_DRAWS


def test_generated_versions_follow_ab_weights_through_dispatch(rng: np.random.Generator) -> None:
    decisions = [dispatch(dataset_ids=[1], similarity=[0.3], rated_clip_ids=(),
                          versions={"v1": 1.0, "v2": 1.0}, rng=rng) for _ in range(N_DRAWS)]
    gen = [d.version_id for d in decisions if d.branch == "generate"]
    assert abs(gen.count("v2") - 0.5 * len(gen)) <= _binomial_bound(len(gen), 0.5)


def test_same_seed_same_decisions_whatever_the_mapping_order() -> None:
    def run(versions: dict[str, float]) -> list[tuple]:
        rng = np.random.default_rng(99)
        return [tuple(vars(dispatch(dataset_ids=[1, 2, 3], similarity=[0.1, 0.2, 0.3],
                                    rated_clip_ids=(), versions=versions, rng=rng)).values())
                for _ in range(50)]

    assert run({"a": 1.0, "b": 2.0}) == run({"b": 2.0, "a": 1.0})


@pytest.mark.parametrize(
    ("versions", "error", "match"),
    [
        ({}, Conflict, "no active model version"),
        ({"v0": -1.0}, InvalidInput, "A/B weight -1.0 of version 'v0'"),
        ({"v0": float("nan")}, InvalidInput, "A/B weight nan"),
        ({"v0": 0.0, "v1": 0.0}, InvalidInput, "are all zero"),
    ],
)
def test_bad_ab_weights_are_rejected(versions: dict, error: type, match: str,
                                     rng: np.random.Generator) -> None:
    with pytest.raises(error, match=match):
        dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions=versions, rng=rng)


def test_bad_similarities_and_probability_are_rejected(rng: np.random.Generator) -> None:
    with pytest.raises(InvalidInput, match="similarity=1.5 of clip 2"):
        dispatch(dataset_ids=[1, 2], similarity=[0.5, 1.5], rated_clip_ids=(),
                 versions={"v": 1}, rng=rng, baseline_probability=1.0, review_probability=0.0)
    with pytest.raises(InvalidInput, match="similarity has 1 values for 2"):
        dispatch(dataset_ids=[1, 2], similarity=[0.5], rated_clip_ids=(),
                 versions={"v": 1}, rng=rng, baseline_probability=1.0, review_probability=0.0)
    with pytest.raises(InvalidInput, match="baseline_probability=1.2"):
        dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v": 1}, rng=rng,
                 baseline_probability=1.2)


def test_decision_must_be_consistent() -> None:
    with pytest.raises(InvalidInput, match="baseline decision needs clip_id"):
        DispatchDecision("baseline", None, "v0")
    with pytest.raises(InvalidInput, match="generate decision needs version_id"):
        DispatchDecision("generate", 3, "v0")


def test_three_branches_follow_their_probabilities(rng: np.random.Generator) -> None:
    counts = {"baseline": 0, "review": 0, "generate": 0}
    for _ in range(N_DRAWS):
        d = dispatch(dataset_ids=[1, 2], similarity=[0.5, 0.4], rated_clip_ids=(),
                     versions={"v0": 1.0}, rng=rng, baseline_probability=0.25,
                     review_ids=[10, 11], review_similarity=[0.2, 0.9], review_probability=0.3)
        counts[d.branch] += 1
    for branch, p in (("baseline", 0.25), ("review", 0.3), ("generate", 0.45)):
        assert abs(counts[branch] - p * N_DRAWS) <= _binomial_bound(N_DRAWS, p), counts


def test_review_serves_the_nearest_pending_clip_the_listener_has_not_rated() -> None:
    d = dispatch(dataset_ids=[], similarity=[], rated_clip_ids={11}, versions={"v0": 1},
                 rng=np.random.default_rng(0), baseline_probability=0.0,
                 review_ids=[10, 11, 12], review_similarity=[0.2, 0.9, 0.5],
                 review_probability=1.0)
    assert (d.branch, d.clip_id, d.version_id, d.similarity) == ("review", 12, None, 0.5)
    assert "pending new clip" in d.reason


def test_review_falls_back_to_generation_when_nothing_awaits_review() -> None:
    rng = np.random.default_rng(0)
    d = dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v0": 1},
                 rng=rng, baseline_probability=0.0, review_probability=1.0)
    assert (d.branch, d.version_id) == ("generate", "v0")
    assert "no new clip awaits" in d.reason
    d = dispatch(dataset_ids=[], similarity=[], rated_clip_ids={5}, versions={"v0": 1},
                 rng=rng, baseline_probability=0.0, review_ids=[5], review_similarity=[0.3],
                 review_probability=1.0)
    assert d.branch == "generate" and "rated every pending new clip" in d.reason


def test_one_draw_decides_the_branch_whether_or_not_clips_await_review() -> None:
    """The review branch consumes no extra draw: with the same seed, the requests that do not
    land in the review band get the same decisions with or without pending clips."""
    def run(review_ids: list[int]) -> list[DispatchDecision]:
        rng = np.random.default_rng(7)
        return [dispatch(dataset_ids=[1, 2], similarity=[0.5, 0.4], rated_clip_ids=(),
                         versions={"a": 1.0, "b": 1.0}, rng=rng, review_ids=review_ids,
                         review_similarity=[0.5] * len(review_ids)) for _ in range(200)]

    empty, pending = run([]), run([9])
    reviews = [k for k, d in enumerate(pending) if d.branch == "review"]
    assert 30 < len(reviews) < 90
    for k, (a, b) in enumerate(zip(empty, pending, strict=True)):
        if k not in reviews:
            assert a == b
        else:  # generated instead, with a version draw: the streams diverge from here on
            assert a.branch == "generate"
            break
    assert run([9]) == pending  # reproducible


def test_review_eligibility() -> None:
    cands = [
        ReviewCandidate(1, "v1", n_ratings=1),            # eligible
        ReviewCandidate(2, "v1", n_ratings=3),            # already has m ratings
        ReviewCandidate(3, "v0-retired", n_ratings=0),    # version no longer active
        ReviewCandidate(4, "v1", n_ratings=1, n_open=2),  # enough deliveries in flight
        ReviewCandidate(5, "v1", n_ratings=0, n_open=1),  # the listener's own request
        ReviewCandidate(6, "v2", n_ratings=2),            # eligible
    ]
    got = review_eligible(cands, seen_clip_ids={5}, active_versions={"v1", "v2"}, min_ratings=3)
    assert got == [1, 6]
    assert review_eligible(cands, seen_clip_ids=(), active_versions={"v1"}, min_ratings=1) == []
    with pytest.raises(InvalidInput, match="n_open=-1 of clip 7"):
        ReviewCandidate(7, "v1", 0, n_open=-1)
    with pytest.raises(InvalidInput, match="min_ratings=0"):
        review_eligible(cands, seen_clip_ids=(), active_versions={"v1"}, min_ratings=0)


def test_branch_probabilities_must_not_exceed_one(rng: np.random.Generator) -> None:
    with pytest.raises(InvalidInput, match=r"baseline_probability=0.8 \+ review_probability=0.3"):
        dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v": 1}, rng=rng,
                 baseline_probability=0.8)
    with pytest.raises(InvalidInput, match="review_probability=-0.1"):
        dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v": 1}, rng=rng,
                 review_probability=-0.1)
    with pytest.raises(InvalidInput, match="review decision needs clip_id"):
        DispatchDecision("review", None, "v0")
