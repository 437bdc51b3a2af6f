from __future__ import annotations

import math

import numpy as np
import pytest

from encore.errors import Conflict, InvalidInput
from encore.feedback import DispatchDecision, choose_version, dispatch, nearest_unrated

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
                 versions={"v0": 1.0}, rng=rng, baseline_probability=p).branch == "baseline"
        for _ in range(n))
    assert abs(baseline - p * n) <= _binomial_bound(n, p) + 1e-9


def test_empty_dataset_always_generates(rng: np.random.Generator) -> None:
    decisions = [dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(),
                          versions={"v0": 1.0}, rng=rng, baseline_probability=1.0)
                 for _ in range(500)]
    assert {d.branch for d in decisions} == {"generate"}
    assert all(d.clip_id is None and d.version_id == "v0" for d in decisions)
    assert all("dataset is empty" in d.reason for d in decisions)


def test_baseline_is_the_nearest_clip_the_listener_has_not_rated() -> None:
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c", "d"]
    sims = [0.2, 0.9, 0.7, 0.8]
    d = dispatch(dataset_ids=ids, similarity=sims, rated_clip_ids={"b"}, versions={"v0": 1},
                 rng=rng, baseline_probability=1.0)
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
                 rng=rng, baseline_probability=1.0)
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
                 rng=rng, baseline_probability=1.0)
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
                 versions={"v": 1}, rng=rng, baseline_probability=1.0)
    with pytest.raises(InvalidInput, match="similarity has 1 values for 2"):
        dispatch(dataset_ids=[1, 2], similarity=[0.5], rated_clip_ids=(),
                 versions={"v": 1}, rng=rng, baseline_probability=1.0)
    with pytest.raises(InvalidInput, match="baseline_probability=1.2"):
        dispatch(dataset_ids=[], similarity=[], rated_clip_ids=(), versions={"v": 1}, rng=rng,
                 baseline_probability=1.2)


def test_decision_must_be_consistent() -> None:
    with pytest.raises(InvalidInput, match="baseline decision needs clip_id"):
        DispatchDecision("baseline", None, "v0")
    with pytest.raises(InvalidInput, match="generate decision needs version_id"):
        DispatchDecision("generate", 3, "v0")
