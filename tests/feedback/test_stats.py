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
