"""The served clips' guards (encore.feedback.guards): eval's diversity and its bootstrap, the
median S, the verdicts against the reference and when there is no verdict."""

from __future__ import annotations

import numpy as np
import pytest

from encore.diffusion.evaluate import mean_pairwise_distance
from encore.feedback.guards import (
    ServedClips,
    _counts,
    _diversity_draws,
    _median_draws,
    served_guards,
)


def _clips(x: np.ndarray, s: np.ndarray, modes: list[str | None] | None = None) -> ServedClips:
    return ServedClips(x, s, np.array(modes or ["explore"] * len(x), dtype=object))


def test_each_draw_is_the_mean_distance_between_different_resampled_clips() -> None:
    x = np.random.default_rng(1).normal(size=(15, 4))
    counts = _counts(np.random.default_rng(3), 15, 6)
    point, draws = _diversity_draws(x, mean_pairwise_distance, counts)
    assert point == mean_pairwise_distance(x)
    s = np.linspace(0, 1, 15)
    med, med_draws = _median_draws(s, counts)
    for d, m, c in zip(draws, med_draws, counts, strict=True):
        idx = np.repeat(np.arange(15), c)
        pairs = [np.linalg.norm(x[i] - x[j]) for a, i in enumerate(idx) for j in idx[a + 1:]
                 if i != j]  # a clip drawn twice is not a pair of different clips
        assert d == pytest.approx(np.mean(pairs))
        assert m == pytest.approx(np.median(s[idx]))


def test_paired_deliveries_compare_like_with_like() -> None:
    """v1 varies the same 12 requests as v0 (its halves: v0's clips shrunk 5 %) and serves 30
    other clips far apart: all served, v1 looks 3× as diverse; its paired halves 0.95×."""
    r = np.random.default_rng(6)
    x0 = r.normal(size=(12, 3))
    pairs = np.array([f"p{i}" for i in range(12)] + [None] * 30, dtype=object)
    v0 = ServedClips(np.vstack([x0, r.normal(size=(30, 3))]), np.full(42, 0.5),
                     np.array(["explore"] * 42, dtype=object), pairs)
    v1 = ServedClips(np.vstack([0.95 * x0[::-1], r.normal(scale=5.0, size=(30, 3))]),
                     np.concatenate([np.full(12, 0.52), np.full(30, 0.4)]),
                     np.array(["taste"] * 42, dtype=object), pairs[[*range(11, -1, -1), *range(12, 42)]])
    _, (g,) = served_guards({"v0": v0, "v1": v1}, diversity=mean_pairwise_distance,
                            versions=["v0", "v1"], reference="v0", rng=r, n_resamples=100)
    assert g.diversity_ratio > 2 and g.diversity_ok is False
    assert g.n_pairs == 12 and g.paired_ratio == pytest.approx(0.95)
    # the halves are resampled together: every draw sees the same requests in both versions
    assert g.paired_ratio_ci_low == pytest.approx(0.95) and g.paired_ratio_ci_high == pytest.approx(0.95)
    assert g.paired_difference == pytest.approx(0.02)
    _, (few,) = served_guards({"v0": v0, "v1": ServedClips(v1.features[3:], v1.similarity[3:],
                                                          v1.selections[3:], v1.pair_ids[3:])},
                              diversity=mean_pairwise_distance, versions=["v0", "v1"],
                              reference="v0", rng=r, n_resamples=50)
    assert few.n_pairs == 9 and np.isnan(few.paired_ratio)


def test_verdicts_at_the_tolerance_and_the_margin() -> None:
    x = np.random.default_rng(2).normal(size=(10, 3))
    s = np.linspace(0.3, 0.5, 10)  # median 0.40
    served = {"v0": _clips(x, s), "v1": _clips(1.09 * x, s + 0.049),  # inside both
              "v2": _clips(1.12 * x, s - 0.2),  # too diverse; less similar is no failure
              "v3": _clips(0.85 * x, s + 0.06)}  # too uniform and too close to the input
    sets, guards = served_guards(served, diversity=mean_pairwise_distance,
                                 versions=["v0", "v1", "v2", "v3"], reference="v0",
                                 rng=np.random.default_rng(0), n_resamples=100)
    by = {g.version_id: g for g in guards}
    assert [g.version_id for g in guards] == ["v1", "v2", "v3"]
    assert by["v1"].diversity_ratio == pytest.approx(1.09)
    assert (by["v1"].diversity_ok, by["v1"].similarity_ok) == (True, True)
    assert (by["v2"].diversity_ok, by["v2"].similarity_ok) == (False, True)
    assert (by["v3"].diversity_ok, by["v3"].similarity_ok) == (False, False)
    assert by["v3"].similarity_difference == pytest.approx(0.06)
    assert sets[0].median_similarity == pytest.approx(0.40)
    for g in guards:  # the versions' clips are resampled independently (different clips)
        assert g.ratio_ci_low < g.diversity_ratio < g.ratio_ci_high
        assert g.difference_ci_low < g.similarity_difference < g.difference_ci_high


def test_selection_split_only_where_both_kinds_were_served() -> None:
    r = np.random.default_rng(4)
    modes = ["taste", "explore", "taste", "single", "taste", "explore"]
    served = {"v0": _clips(r.normal(size=(6, 2)), np.full(6, 0.5)),
              "v1": _clips(r.normal(size=(6, 2)), np.full(6, 0.5), modes)}
    sets, _ = served_guards(served, diversity=mean_pairwise_distance, versions=["v0", "v1"],
                            reference="v0", rng=r, n_resamples=50)
    assert [(s.label, s.n_clips) for s in sets] == [("v0", 6), ("v1", 6), ("v1 taste", 3),
                                                    ("v1 explore", 2)]


def test_too_few_clips_or_no_reference_give_no_verdict() -> None:
    r = np.random.default_rng(5)
    x = r.normal(size=(5, 2))
    one = _clips(x[:1], np.array([np.nan]))
    nan_rows = _clips(np.vstack([x, np.full((1, 2), np.nan)]), np.full(6, 0.5))
    sets, (g,) = served_guards({"v0": nan_rows, "v1": one}, diversity=mean_pairwise_distance,
                               versions=["v0", "v1"], reference="v0", rng=r, n_resamples=50)
    assert sets[0].diversity == pytest.approx(mean_pairwise_distance(x))  # NaN row left out
    assert sets[0].n_clips == 6
    assert np.isnan(sets[1].diversity) and np.isnan(sets[1].median_similarity)
    assert g.diversity_ok is None and g.similarity_ok is None
    _, guards = served_guards({"v1": nan_rows}, diversity=mean_pairwise_distance,
                              versions=["v0", "v1"], reference="v0", rng=r, n_resamples=50)
    assert guards == ()
