from __future__ import annotations

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.feedback import RatingRecords, bootstrap_mean_difference, build_report, rating_table


def _hand_records(weights: list[float] | None = None) -> RatingRecords:
    rows = [  # (rating, song, version, rater, branch)
        (3.0, "s1", "v0", "a", "generate"),
        (4.0, "s1", "v0", "b", "generate"),
        (4.0, "s1", "v1", "a", "generate"),
        (5.0, "s1", "v1", "b", "generate"),
        (4.5, "s1", "v1", "c", "generate"),
        (2.0, "s2", "v0", "a", "baseline"),
        (3.0, "s2", "v1", "b", "baseline"),
    ]
    cols = list(zip(*rows, strict=True))
    return RatingRecords(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]),
                         np.array(cols[3]), np.array(cols[4]),
                         None if weights is None else np.array(weights))


def test_report_numbers_match_a_hand_computed_example() -> None:
    rep = build_report(_hand_records(), rng=np.random.default_rng(0), n_resamples=200)
    t = rep.table
    assert (t.versions, t.songs) == (("v0", "v1"), ("s1", "s2"))
    expected = {("s1", "v0"): (3.5, 2), ("s1", "v1"): (4.5, 3), ("s2", "v0"): (2.0, 1),
                ("s2", "v1"): (3.0, 1), (None, "v0"): (3.0, 3), (None, "v1"): (4.125, 4)}
    for (song, version), (mean, count) in expected.items():
        c = t.cell(song, version)
        assert c is not None and (c.mean, c.count) == (pytest.approx(mean), count)
    (change,) = t.changes
    assert (change.version_id, change.previous_version_id) == ("v1", "v0")
    assert change.difference == pytest.approx(1.125)
    assert (change.n_ratings, change.n_ratings_previous) == (4, 3)
    assert (change.n_raters, change.n_raters_previous) == (3, 2)
    assert {c.song_id: c.difference for c in t.changes_by_song} == pytest.approx(
        {"s1": 1.0, "s2": 1.0})
    gen, base = rep.by_branch["generate"], rep.by_branch["baseline"]
    assert (gen.cell(None, "v0").mean, gen.cell(None, "v1").mean) == (3.5, 4.5)
    assert (base.cell(None, "v0").mean, base.cell(None, "v1").mean) == (2.0, 3.0)
    assert gen.changes[0].difference == pytest.approx(1.0)
    assert base.changes[0].difference == pytest.approx(1.0)


def test_weights_drop_ratings_from_means_and_counts() -> None:
    t = rating_table(_hand_records([1, 1, 1, 0, 1, 1, 1]), rng=np.random.default_rng(0),
                     n_resamples=100)
    assert (t.cell("s1", "v1").mean, t.cell("s1", "v1").count) == (4.25, 2)
    assert t.cell(None, "v1").count == 3


def test_overall_row_is_the_count_weighted_mean_of_the_songs(rng: np.random.Generator) -> None:
    n = 500
    rec = RatingRecords(rng.choice(np.arange(1, 5.5, 0.5), n), rng.choice(["a", "b", "c"], n),
                        rng.choice(["v0", "v1", "v2"], n), rng.integers(0, 20, n))
    t = rating_table(rec, rng=rng, n_resamples=50)
    for v in t.versions:
        cells = [c for c in t.cells if c.version_id == v]
        overall = t.cell(None, v)
        assert overall.count == sum(c.count for c in cells)
        assert overall.mean == pytest.approx(sum(c.mean * c.count for c in cells) / overall.count)
    assert [(c.previous_version_id, c.version_id) for c in t.changes] == [("v0", "v1"),
                                                                          ("v1", "v2")]


def test_version_order_is_respected_and_missing_versions_give_nan() -> None:
    t = rating_table(_hand_records(), rng=np.random.default_rng(0), versions=["v1", "v0", "v2"],
                     n_resamples=100)
    assert t.changes[0].difference == pytest.approx(-1.125)
    assert np.isnan(t.changes[1].difference) and t.changes[1].n_ratings == 0
    with pytest.raises(InvalidInput, match="version 'v1' has ratings but is not in versions"):
        rating_table(_hand_records(), rng=np.random.default_rng(0), versions=["v0"])


def _campaign(rng: np.random.Generator, effect: float, n_raters: int = 30
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raters with biases; a few raters give most of the ratings (geometric counts)."""
    bias = rng.normal(0, 0.6, n_raters)
    ratings, new, raters = [], [], []
    for v, mean in ((0, 2.8), (1, 2.8 + effect)):
        counts = rng.geometric(0.08, n_raters)
        for r in range(n_raters):
            q = rng.normal(mean, 0.5, counts[r]) + bias[r] + rng.normal(0, 0.5, counts[r])
            ratings += np.clip(np.round(q * 2) / 2, 1, 5).tolist()
            new += [v == 1] * counts[r]
            raters += [r] * counts[r]
    return np.array(ratings), np.array(new), np.array(raters)


def _true_difference(effect: float) -> float:
    rng = np.random.default_rng(123)
    m = 1_000_000
    b = rng.normal(0, 0.6, m)
    means = [np.mean(np.clip(np.round((rng.normal(mu, 0.5, m) + b + rng.normal(0, 0.5, m)) * 2)
                             / 2, 1, 5)) for mu in (2.8, 2.8 + effect)]
    return float(means[1] - means[0])


def test_rater_bootstrap_ci_covers_the_true_difference() -> None:
    truth = _true_difference(0.4)
    rng = np.random.default_rng(11)
    reps = 150
    covered = {"rater": 0, "rating": 0}
    for _ in range(reps):
        r, new, raters = _campaign(rng, 0.4)
        for cluster in covered:
            _, lo, hi, used = bootstrap_mean_difference(r, new, raters, rng=rng,
                                                        n_resamples=500, cluster=cluster)
            covered[cluster] += lo <= truth <= hi
    rates = {k: v / reps for k, v in covered.items()}
    print(f"95% CI coverage of the true difference {truth:.3f}:", rates)
    assert rates["rater"] >= 0.85
    # resampling single ratings ignores the rater effect and is over-confident
    assert rates["rating"] < rates["rater"] - 0.1


def test_large_effect_excludes_zero_and_no_effect_does_not() -> None:
    rng = np.random.default_rng(5)
    r, new, raters = _campaign(rng, 1.0)
    diff, lo, hi, used = bootstrap_mean_difference(r, new, raters, rng=rng, n_resamples=2000)
    assert lo > 0 and lo < diff < hi and used == 2000
    r, new, raters = _campaign(np.random.default_rng(6), 0.0)
    _, lo, hi, _ = bootstrap_mean_difference(r, new, raters, rng=rng, n_resamples=2000)
    assert lo < 0 < hi


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    r, new, raters = _campaign(np.random.default_rng(1), 0.3)
    a = bootstrap_mean_difference(r, new, raters, rng=np.random.default_rng(9), n_resamples=300)
    b = bootstrap_mean_difference(r, new, raters, rng=np.random.default_rng(9), n_resamples=300)
    assert a == b


def test_records_validate() -> None:
    with pytest.raises(InvalidInput, match="rating=6.0"):
        RatingRecords(np.array([6.0]), np.array(["s"]), np.array(["v"]), np.array(["r"]))
    with pytest.raises(InvalidInput, match="branch='dataset'"):
        RatingRecords(np.array([3.0]), np.array(["s"]), np.array(["v"]), np.array(["r"]),
                      np.array(["dataset"]))
    with pytest.raises(InvalidInput, match="version_ids has 2 entries for 1"):
        RatingRecords(np.array([3.0]), np.array(["s"]), np.array(["v", "w"]), np.array(["r"]))
    with pytest.raises(InvalidInput, match=r"weight=-1.0 \(index 0\)"):
        RatingRecords(np.array([3.0]), np.array(["s"]), np.array(["v"]), np.array(["r"]),
                      weights=np.array([-1.0]))


def test_review_ratings_count_for_the_clip_version_and_the_split_separates_them() -> None:
    rows = [  # (rating, version, rater, branch): reviews are ratings of new clips of v
        (3.0, "v0", "a", "generate"), (4.0, "v0", "b", "review"), (5.0, "v0", "c", "review"),
        (2.0, "v1", "a", "generate"), (3.0, "v1", "b", "review"),
        (1.0, "v0", "c", "baseline"),
    ]
    r, v, who, br = (np.array(c) for c in zip(*rows, strict=True))
    rep = build_report(RatingRecords(r.astype(float), np.array(["s"] * 6), v, who, br),
                       rng=np.random.default_rng(0), n_resamples=100)
    pooled = {c.version_id: (c.mean, c.count) for c in rep.table.overall}
    assert pooled == {"v0": (pytest.approx(13 / 4), 4), "v1": (pytest.approx(2.5), 2)}
    assert set(rep.by_branch) == {"new", "generate", "review", "baseline"}

    def overall(branch: str) -> dict:
        return {c.version_id: (c.mean, c.count) for c in rep.by_branch[branch].overall}

    assert overall("new") == {"v0": (4.0, 3), "v1": (2.5, 2)}  # generate + review
    assert overall("generate") == {"v0": (3.0, 1), "v1": (2.0, 1)}
    assert overall("review") == {"v0": (4.5, 2), "v1": (3.0, 1)}
    assert overall("baseline") == {"v0": (1.0, 1)}


# --- the fair comparison (issue 15) -----------------------------------------------------------

from encore.feedback import (  # noqa: E402
    decompose_gain,
    fair_comparisons,
    off_policy_value,
    paired_comparison,
    two_way_bootstrap,
)


def _paired_campaign(rng: np.random.Generator, effect: float, n_listeners: int = 40,
                     spread: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (B, A, listener): each listener has a bias, a taste per song (shared by both
    halves of a pair) and, with ``spread``, an own gain around ``effect``."""
    gains = effect + rng.normal(0, spread, n_listeners)
    bias = rng.normal(0, 0.5, n_listeners)
    b, a, who = [], [], []
    for k in range(n_listeners):
        m = int(rng.integers(3, 12))
        song = rng.normal(3.2, 0.6, m) + bias[k]
        a += (song + rng.normal(0, 0.4, m)).tolist()
        b += (song + gains[k] + rng.normal(0, 0.4, m)).tolist()
        who += [k] * m
    return np.array(b), np.array(a), np.array(who)


def test_paired_comparison_finds_a_known_effect_and_covers_a_null_one() -> None:
    b, a, who = _paired_campaign(np.random.default_rng(1), 0.3)
    pc = paired_comparison(b, a, who, rng=np.random.default_rng(2), version_id="v1",
                           reference_id="v0")
    assert pc.ci_low > 0 and pc.ci_low < pc.mean_difference < pc.ci_high
    assert abs(pc.mean_difference - 0.3) < 0.15
    assert pc.win_rate > 0.6 and pc.win_rate_ci_low > 0.5
    assert (pc.n_listeners, pc.n_pairs) == (40, b.size) and len(pc.listener_gains) == 40
    assert pc.share_improved > 0.7
    assert pc.gain_quantiles[0] <= pc.gain_quantiles[2] <= pc.gain_quantiles[4]
    covered = 0
    for seed in range(40):
        b, a, who = _paired_campaign(np.random.default_rng(100 + seed), 0.0)
        pc = paired_comparison(b, a, who, rng=np.random.default_rng(seed), n_resamples=500)
        covered += pc.ci_low <= 0 <= pc.ci_high
    assert covered >= 34  # ~95 % of 40


def test_paired_win_rate_counts_ties_half_and_listener_gains() -> None:
    pc = paired_comparison(np.array([4.0, 3.0, 2.0, 5.0]), np.array([3.0, 3.0, 4.0, 5.0]),
                           np.array(["x", "x", "y", "y"]), rng=np.random.default_rng(0),
                           n_resamples=200)
    assert pc.win_rate == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert pc.listener_gains == (-1.0, 0.5)
    assert (pc.share_improved, pc.share_worse) == (0.5, 0.5)
    one = paired_comparison(np.array([4.0]), np.array([3.0]), np.array([1]),
                            rng=np.random.default_rng(0))
    assert one.mean_difference == 1.0 and np.isnan(one.ci_low)  # one listener: no interval


def test_listener_clustering_widens_the_interval_when_listeners_differ() -> None:
    truth, reps = 0.3, 60
    covered = {"listener": 0, "pair": 0}
    widths = {"listener": [], "pair": []}
    for seed in range(reps):
        b, a, who = _paired_campaign(np.random.default_rng(seed), truth, spread=0.5)
        for kind, ids in (("listener", who), ("pair", np.arange(b.size))):
            pc = paired_comparison(b, a, ids, rng=np.random.default_rng(seed), n_resamples=400)
            covered[kind] += pc.ci_low <= truth <= pc.ci_high
            widths[kind].append(pc.ci_high - pc.ci_low)
    assert np.mean(widths["listener"]) > 1.3 * np.mean(widths["pair"])
    assert covered["listener"] / reps >= 0.85
    assert covered["pair"] < covered["listener"]


def _crossed(rng: np.random.Generator, effect: float, n_raters: int = 30, n_clips: int = 40,
             raters_per_clip: int = 4) -> tuple[np.ndarray, ...]:
    """Two versions' clips, each rated by several raters: rater biases and clip qualities."""
    bias = rng.normal(0, 0.4, n_raters)
    ratings, new, raters, clips = [], [], [], []
    for v in (0, 1):
        quality = rng.normal(3.0 + effect * v, 0.6, n_clips)
        for c in range(n_clips):
            who = rng.choice(n_raters, raters_per_clip, replace=False)
            ratings += (quality[c] + bias[who] + rng.normal(0, 0.3, who.size)).tolist()
            new += [v == 1] * who.size
            raters += who.tolist()
            clips += [v * n_clips + c] * who.size
    return np.array(ratings), np.array(new), np.array(raters), np.array(clips)


def test_two_way_bootstrap_covers_when_clips_vary_and_rater_only_does_not() -> None:
    reps, truth = 60, 0.3
    covered = {"two-way": 0, "rater": 0}
    widths = {"two-way": [], "rater": []}
    for seed in range(reps):
        r, new, raters, clips = _crossed(np.random.default_rng(seed), truth)
        rng = np.random.default_rng(seed)
        _, lo, hi, used = two_way_bootstrap(r, raters, clips, rng=rng, is_new=new,
                                            n_resamples=400)
        assert used == 400
        covered["two-way"] += lo <= truth <= hi
        widths["two-way"].append(hi - lo)
        _, lo, hi, _ = bootstrap_mean_difference(r, new, raters, rng=rng, n_resamples=400)
        covered["rater"] += lo <= truth <= hi
        widths["rater"].append(hi - lo)
    assert covered["two-way"] / reps >= 0.85
    assert np.mean(widths["two-way"]) > 1.5 * np.mean(widths["rater"])
    assert covered["rater"] < covered["two-way"]


def test_two_way_bootstrap_mean_and_strata() -> None:
    r = np.array([4.0, 4.0, 2.0, 3.0, 3.0, 1.0])
    new = np.array([True, False, True, False, True, False])
    rounds = np.array([0, 0, 1, 1, 2, 2])
    diff, *_ = two_way_bootstrap(r, np.arange(6), np.arange(6), rng=np.random.default_rng(0),
                                 is_new=new, strata=rounds, n_resamples=100)
    assert diff == pytest.approx((0 - 1 + 2) / 3)
    mean, lo, hi, _ = two_way_bootstrap(r, np.arange(6) % 2, np.arange(6),
                                        rng=np.random.default_rng(0), n_resamples=200)
    assert mean == pytest.approx(17 / 6) and lo < mean < hi
    only_new = two_way_bootstrap(r[:1], [0], [0], rng=np.random.default_rng(0),
                                 is_new=np.array([True]))
    assert np.isnan(only_new[0])


def _explore_log(rng: np.random.Generator, n_requests: int, n_candidates: int = 4
                 ) -> tuple[np.ndarray, ...]:
    """Uniformly served candidates; the taste model's prediction correlates with the truth."""
    listener = rng.integers(0, 30, n_requests)
    value = rng.normal(3.0, 0.7, (n_requests, n_candidates))
    predicted = value + rng.normal(0, 0.5, value.shape)
    served = rng.integers(0, n_candidates, n_requests)
    pick = predicted.argmax(axis=1)
    rows = np.arange(n_requests)
    ratings = value[rows, served] + rng.normal(0, 0.3, n_requests)
    truth_taste = value[rows, pick].mean()
    return (ratings, np.full(n_requests, 1 / n_candidates), (served == pick).astype(float),
            listener, truth_taste, value.mean())


def test_off_policy_value_is_unbiased_on_a_simulated_explore_log() -> None:
    ips, snips, truth, uniform = [], [], [], []
    for seed in range(300):
        r, p, match, who, t, u = _explore_log(np.random.default_rng(seed), 200)
        pv = off_policy_value(r, p, match, who, rng=np.random.default_rng(seed),
                              n_resamples=100)
        ips.append(pv.ips)
        snips.append(pv.snips)
        truth.append(t)
        uniform.append(u)
    err = np.array(ips) - np.array(truth)
    assert abs(err.mean()) < 3 * err.std() / np.sqrt(err.size)  # unbiased
    assert abs(np.mean(snips) - np.mean(truth)) < 0.05
    assert np.mean(truth) - np.mean(uniform) > 0.5  # selection is worth something here
    r, p, match, who, t, u = _explore_log(np.random.default_rng(7), 2000)
    pv = off_policy_value(r, p, match, who, rng=np.random.default_rng(0))
    assert pv.gain_ci_low > 0 and pv.snips_ci_low < t < pv.snips_ci_high
    assert pv.n == 2000 and 0.15 < pv.n_matched / pv.n < 0.35


def _platform(rng: np.random.Generator, *, selection_gain: float, weights_gain: float,
              paired: bool = True, taste_share: float = 0.8) -> RatingRecords:
    """Round 0 serves v0 (explore only); round 1 v0 and v1 (v1 picks by taste
    ``taste_share`` of the time). Baseline and review ratings of v0 are 5 stars and must not move the headline."""
    rows = []  # rating, version, rater, branch, clip, selection, propensity, pick, round, pair
    clip = iter(range(10**6))
    bias = rng.normal(0, 0.3, 40)
    for rnd in (0, 1):
        for listener in range(40):
            for _ in range(6):
                versions = ["v0"] if rnd == 0 else ["v0", "v1"]
                v = versions[int(rng.integers(len(versions)))]
                value = rng.normal(3.0 + (weights_gain if v == "v1" else 0), 0.6, 4)
                predicted = value + rng.normal(0, 0.05, 4)
                pick = int(predicted.argmax())
                taste = v == "v1" and rng.random() < taste_share
                served = pick if taste else int(rng.integers(4))
                # selection_gain is what the top candidate is worth over a random one
                value[pick] += selection_gain
                r = float(np.clip(value[served] + bias[listener] - (0.5 if rnd else 0), 1, 5))
                rows.append((r, v, listener, "generate", next(clip),
                             "taste" if taste else "explore", np.nan if taste else 0.25,
                             float(served == pick), rnd, None))
            rows.append((5.0, "v0", listener, "baseline", next(clip), None, np.nan, np.nan,
                         rnd, None))
            rows.append((5.0, "v0", listener, "review", next(clip), None, np.nan, np.nan,
                         rnd, None))
    if paired:  # round 1: the same listener gets the same request from v0 and v1 (the
        # v0 half: a uniform pick whose rank by the taste model is not recorded)
        for listener in range(40):
            for k in range(3):
                q = rng.normal(3.0, 0.6) + bias[listener] - 0.5
                pid = f"p{listener}-{k}"
                rows.append((float(np.clip(q + rng.normal(0, 0.3), 1, 5)), "v0", listener,
                             "generate", next(clip), "explore", 0.25, np.nan, 1, pid))
                rows.append((float(np.clip(q + weights_gain + selection_gain
                                           + rng.normal(0, 0.3), 1, 5)), "v1", listener,
                             "generate", next(clip), "taste", np.nan, 1.0, 1, pid))
    c = list(zip(*rows, strict=True))
    return RatingRecords(np.round(np.array(c[0]) * 2) / 2, np.array(["s"] * len(rows)),
                         np.array(c[1], dtype=object), np.array(c[2]),
                         np.array(c[3], dtype=object), clip_ids=np.array(c[4]),
                         selections=np.array(c[5], dtype=object),
                         propensities=np.array(c[6], dtype=float),
                         taste_picks=np.array(c[7], dtype=float), rounds=np.array(c[8]),
                         pair_ids=np.array(c[9], dtype=object))


def test_headline_is_paired_and_excludes_baseline_and_review() -> None:
    rec = _platform(np.random.default_rng(3), selection_gain=0.0, weights_gain=0.0,
                    taste_share=0.0)  # no effect at all
    rep = build_report(rec, rng=np.random.default_rng(0), n_resamples=500)
    (head,) = rep.headline
    assert (head.version_id, head.reference_id, head.method) == ("v1", "v0", "paired")
    assert head.n == 120 and head.n_raters == 40 and head.ci_low < 0 < head.ci_high
    # the pooled table counts v0's 5-star baseline/review ratings and round 0: biased
    assert rep.table.changes[0].difference < -0.3
    (same,) = rep.same_round
    assert same.rounds == (1,) and same.ci_low < 0 < same.ci_high
    assert same.n + same.n_reference == int((rec.fresh & (rec.rounds == 1)).sum())
    assert rep.baseline is not None and rep.baseline.mean == 5.0 and rep.baseline.n == 80
    assert [m.label for m in rep.fresh_means] == ["v0", "v1"]
    assert all(m.mean < 4 for m in rep.fresh_means)


def test_headline_without_pairs_uses_the_same_round_fresh_clips() -> None:
    rec = _platform(np.random.default_rng(4), selection_gain=0.0, weights_gain=0.5,
                    paired=False)
    headline, paired, same = fair_comparisons(rec, rng=np.random.default_rng(0),
                                              versions=["v0", "v1"], n_resamples=500)
    assert paired == () and headline == same
    (head,) = headline
    assert head.method == "same-round fresh" and head.rounds == (1,)
    # v1 as served: +0.5 from its weights and, 80 % of the time, the taste pick of 4
    truth = 0.5 + 0.8 * 0.6 * 1.029
    assert head.ci_low > 0 and head.ci_low < truth < head.ci_high


def test_decomposition_separates_selection_and_weights() -> None:
    rec = _platform(np.random.default_rng(5), selection_gain=0.6, weights_gain=0.4,
                    taste_share=0.5)
    d = decompose_gain(rec, "v1", "v0", rng=np.random.default_rng(0), n_resamples=500)
    assert d.selection is not None and d.selection.method == "off-policy"
    # the taste pick is worth +0.6 and the best of 4 candidates (SD 0.6: 0.6 × 1.029) over a
    # uniform pick, which gets the +0.6 a quarter of the time
    truth = 0.6 + 0.6 * 1.029 - 0.6 / 4
    assert d.selection.ci_low < truth < d.selection.ci_high and d.selection.ci_low > 0.5
    assert d.weights is not None and d.weights.method == "same-round fresh"
    assert d.weights.ci_low < 0.4 < d.weights.ci_high
    assert d.both is not None and d.both.method == "paired"
    assert d.both.ci_low < 1.0 < d.both.ci_high
    assert d.remainder == pytest.approx(d.both.difference - d.selection.difference
                                        - d.weights.difference)
