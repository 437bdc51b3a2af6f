from __future__ import annotations

import functools

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.feedback import FeedbackConfig, RatingSet, assess_raters, fit_rater_model

from .feedback_sim import (
    ADVERSARY_KINDS,
    Campaign,
    Population,
    simulate_campaign,
    simulate_population,
)

ADVERSARIAL = ("max_low_listen", "random")
MINORITY = ("minority_bias", "minority_group")


def _kinds(pop: Population, kinds: tuple[str, ...]) -> list[str]:
    return [r for r, k in pop.kind.items() if k in kinds]


def test_exact_recovery_on_a_noise_free_hand_case() -> None:
    # rater b always rates exactly one star above rater a: biases -0.5 / +0.5 (centred),
    # quality halfway between them.
    a = [2.0, 3.0, 4.0, 2.5]
    data = RatingSet.from_records(
        [("a", c, r, 1.0) for c, r in enumerate(a)] + [("b", c, r + 1, 1.0)
                                                        for c, r in enumerate(a)])
    fit = fit_rater_model(data)
    assert fit.converged
    assert fit.biases() == pytest.approx({"a": -0.5, "b": 0.5}, abs=0.01)
    assert fit.quality == pytest.approx(np.array(a) + 0.5, abs=0.01)
    assert fit.sigma == pytest.approx([0.1, 0.1])  # the floor: no noise at all


def test_rater_model_recovers_planted_biases(population: Population) -> None:
    qc = assess_raters(population.data, clip_groups=population.clip_groups)
    ids = list(population.bias)  # honest and constant-bias minority raters
    planted = np.array([population.bias[r] for r in ids])
    est = np.array([qc[r].bias for r in ids])
    err = (est - est.mean()) - (planted - planted.mean())  # only relative biases are identifiable
    assert np.abs(err).max() <= 0.15
    assert np.abs(err).mean() <= 0.06
    se = np.array([qc.fit.bias_se[qc.fit.rater_ids.index(r)] for r in ids])
    assert np.mean(np.abs(err) <= 1.96 * se) >= 0.85  # standard errors are honest


def test_clip_quality_estimates_track_the_planted_quality(population: Population) -> None:
    qc = assess_raters(population.data, clip_groups=population.clip_groups)
    q = qc.fit.qualities()
    clips = sorted(population.quality)
    planted = np.array([population.quality[c] for c in clips])
    est = np.array([q[c] for c in clips])
    err = (est - est.mean()) - (planted - planted.mean())
    assert np.sqrt(np.mean(err ** 2)) <= 0.15
    lo, hi = qc.fit.quality_ci()
    inside = (planted - planted.mean() >= lo - est.mean()) & (planted - planted.mean()
                                                               <= hi - est.mean())
    assert inside.mean() >= 0.85


def test_flags_planted_adversaries_and_no_minority_taste(population: Population) -> None:
    qc = assess_raters(population.data, clip_groups=population.clip_groups)
    flagged = set(qc.flagged)
    for kind in ADVERSARIAL:
        planted = _kinds(population, (kind,))
        assert len(flagged & set(planted)) >= 0.9 * len(planted), kind
    assert flagged.isdisjoint(_kinds(population, MINORITY))
    assert flagged.isdisjoint(_kinds(population, ("honest",)))
    for rid in flagged:
        assert qc[rid].weight == 0.0 and qc[rid].reasons
    for rid in _kinds(population, MINORITY):
        assert qc[rid].weight >= 0.9 and qc[rid].reasons == ()


def test_detection_rates_over_several_campaigns() -> None:
    """Measured rates (printed with -s); the thresholds are the issue's."""
    counts = {k: [0, 0] for k in ("honest", *MINORITY, *ADVERSARIAL)}
    for seed in range(5):
        pop = simulate_population(seed, n_honest=20, n_minority_group=6, n_random=8,
                                  n_max_low_listen=6, density=0.7)
        qc = assess_raters(pop.data, clip_groups=pop.clip_groups)
        for a in qc.assessments:
            counts[pop.kind[a.rater_id]][0] += a.flagged
            counts[pop.kind[a.rater_id]][1] += 1
    rates = {k: f / n for k, (f, n) in counts.items()}
    print("flag rates:", {k: f"{f}/{n}" for k, (f, n) in counts.items()})
    assert rates["max_low_listen"] >= 0.9 and rates["random"] >= 0.9
    assert rates["minority_bias"] == 0.0 and rates["minority_group"] == 0.0
    assert rates["honest"] <= 0.02


def test_reasons_name_the_evidence(population: Population) -> None:
    qc = assess_raters(population.data, clip_groups=population.clip_groups)
    lazy = _kinds(population, ("max_low_listen",))[0]
    rnd = next(r for r in _kinds(population, ("random",)) if qc[r].flagged)
    assert "at the top of the scale" in qc[lazy].reasons[0]
    assert "minimal listening" in qc[lazy].reasons[0]
    assert "unrelated" in qc[rnd].reasons[0] and "p=" in qc[rnd].reasons[0]


def _genre_fan_population(seed: int) -> tuple[RatingSet, dict[int, int]]:
    """Ten consensus raters plus one who rates by genre only and always listens to the end."""
    rng = np.random.default_rng(seed)
    n = 40
    psi = rng.uniform(2, 4, n)
    genre = np.arange(n) % 4
    rows = []
    for r in range(10):
        u = np.clip(np.round((psi + rng.normal(0, 0.4, n)) * 2) / 2, 1, 5)
        lis = np.clip(0.7 + 0.1 * (u - 3) + rng.normal(0, 0.1, n), 0.5, 1)
        rows += [(f"r{r}", c, u[c], lis[c]) for c in range(n)]
    taste = np.array([4.5, 1.5, 3.0, 2.0])[genre]  # nothing to do with the consensus
    fan = np.clip(np.round((taste + rng.normal(0, 0.3, n)) * 2) / 2, 1, 5)
    rows += [("fan", c, fan[c], 1.0) for c in range(n)]
    return RatingSet.from_records(rows), {c: int(genre[c]) for c in range(n)}


def test_taste_for_a_group_of_clips_is_not_misconduct() -> None:
    data, groups = _genre_fan_population(7)
    qc = assess_raters(data, clip_groups=groups)
    assert not qc["fan"].flagged
    assert qc["fan"].weight == 1.0


def test_saturated_ratings_with_full_listening_are_not_flagged() -> None:
    rng = np.random.default_rng(5)
    psi = rng.uniform(2, 4, 20)
    rows = [(f"r{r}", c, float(np.clip(np.round((psi[c] + rng.normal(0, 0.4)) * 2) / 2, 1, 5)),
             0.8) for r in range(6) for c in range(20)]
    rows += [("fan", c, 5.0, 1.0) for c in range(20)]  # loves everything, listens to all of it
    rows += [("lazy", c, 5.0, 0.52) for c in range(20)]  # loves everything, skips to the button
    qc = assess_raters(RatingSet.from_records(rows))
    assert not qc["fan"].flagged
    assert qc["lazy"].flagged


def test_raters_with_few_ratings_are_not_judged() -> None:
    rows = [("new", c, 5.0, 0.5) for c in range(3)]
    rows += [(f"r{r}", c, 3.0 + (c % 3) * 0.5, 0.9) for r in range(4) for c in range(10)]
    qc = assess_raters(RatingSet.from_records(rows), config=FeedbackConfig(qc_min_ratings=8))
    assert (qc["new"].flagged, qc["new"].weight, qc["new"].consistency_sigma) == (False, 1.0,
                                                                                 None)


def test_zero_weight_raters_do_not_move_clip_estimates() -> None:
    rows = [("a", c, 3.0, 1.0) for c in range(6)] + [("b", c, 3.0, 1.0) for c in range(6)]
    rows += [("x", c, 4.0 if c % 2 else 2.5, 1.0) for c in range(6)]  # mean 3.25
    data = RatingSet.from_records(rows)
    fit = fit_rater_model(data, rater_weights={"x": 0.0})
    assert fit.quality == pytest.approx(np.full(6, 3.0), abs=1e-6)
    # still estimated against the others: +0.25, shrunk by n / (n + sigma^2 / tau^2)
    assert 0.15 < fit.biases()["x"] < 0.25


def test_clip_rated_only_by_ignored_raters_has_no_estimate() -> None:
    rows = [("a", 0, 3.0, 1.0), ("b", 0, 4.0, 1.0), ("x", 1, 5.0, 1.0)]
    fit = fit_rater_model(RatingSet.from_records(rows), rater_weights={"x": 0.0})
    assert np.isnan(fit.qualities()[1]) and np.isfinite(fit.qualities()[0])


def test_rating_set_validates() -> None:
    with pytest.raises(InvalidInput, match="rating=5.3"):
        RatingSet.from_records([("a", 1, 5.3, 1.0)])
    with pytest.raises(InvalidInput, match="listened_fraction=1.5"):
        RatingSet.from_records([("a", 1, 5.0, 1.5)])
    with pytest.raises(InvalidInput, match="differ in length"):
        RatingSet(np.array(["a"]), np.array([1, 2]), np.array([3.0]), np.array([1.0]))
    with pytest.raises(InvalidInput, match="zero ratings"):
        fit_rater_model(RatingSet.from_records([]))
    with pytest.raises(InvalidInput, match="rater weight 2.0 of rater 'a'"):
        fit_rater_model(RatingSet.from_records([("a", 1, 3.0, 1.0)]), rater_weights={"a": 2.0})


def test_without_clip_groups_a_pure_genre_taste_cannot_be_told_from_noise() -> None:
    """Why the services must pass clip groups: the fan's ratings follow genre only and their
    listening never varies, so without groups nothing witnesses their taste."""
    data, groups = _genre_fan_population(7)
    assert assess_raters(data)["fan"].flagged
    assert not assess_raters(data, clip_groups=groups)["fan"].flagged


def test_clips_only_one_rater_rated_say_nothing_about_that_rater() -> None:
    shared = [("a", c, 3.0 + 0.5 * (c % 3), 1.0) for c in range(6)]
    shared += [("b", c, 3.5 + 0.5 * (c % 3), 1.0) for c in range(6)]
    solo = [("a", 100 + c, 5.0, 1.0) for c in range(10)]  # nobody else rated these
    with_solo = fit_rater_model(RatingSet.from_records(shared + solo))
    without = fit_rater_model(RatingSet.from_records(shared))
    assert with_solo.converged
    assert with_solo.biases() == pytest.approx(without.biases(), abs=1e-6)
    assert with_solo.sigma == pytest.approx(without.sigma, abs=1e-6)


def test_raters_who_barely_overlap_with_others_are_not_judged_by_rule_b() -> None:
    # 12 ratings per rater spread over 300 clips: ~2 raters per clip, no power
    pop = simulate_population(3, n_clips=300, n_groups=10, density=12 / 300, n_honest=36)
    qc = assess_raters(pop.data, clip_groups=pop.clip_groups)
    for rid in _kinds(pop, ("honest", *MINORITY, "random")):
        assert not qc[rid].flagged, qc[rid].reasons
    notes = [qc[r].note for r in _kinds(pop, ("random",))]
    assert any("not judged: too little evidence" in n for n in notes)
    # erratic raters still lose weight through their inconsistency
    honest_w = np.median([qc[r].weight for r in _kinds(pop, ("honest",))])
    random_w = np.median([qc[r].weight for r in _kinds(pop, ("random",))])
    assert random_w < 0.8 < honest_w


def test_detection_with_moderate_overlap() -> None:
    """25 ratings per rater over 300 clips (~4 raters per clip): measured rates."""
    counts = {k: [0, 0] for k in ("honest", *MINORITY, *ADVERSARIAL)}
    for seed in range(4):
        pop = simulate_population(100 + seed, n_clips=300, n_groups=10, density=25 / 300,
                                  n_honest=36)
        qc = assess_raters(pop.data, clip_groups=pop.clip_groups)
        for a in qc.assessments:
            counts[pop.kind[a.rater_id]][0] += a.flagged
            counts[pop.kind[a.rater_id]][1] += 1
    print("flag rates, sparse:", {k: f"{f}/{n}" for k, (f, n) in counts.items()})
    rates = {k: f / n for k, (f, n) in counts.items()}
    assert rates["max_low_listen"] >= 0.9 and rates["random"] >= 0.85
    assert rates["honest"] <= 0.03 and rates["minority_bias"] == 0.0
    assert counts["minority_group"][0] <= 1


def _pilot_like_sparse_campaign(seed: int) -> tuple[RatingSet, dict, str]:
    """The simulated pilot at its second curation: 20 raters with 8 ratings each, six of them
    of clips nobody else rated (their own generated clips), two of 12 shared clips (served
    baselines). Honest raters but one, who gives top marks after a minimal listen."""
    rng = np.random.default_rng(seed)
    shared_quality = rng.uniform(1.9, 4.1, 12)
    rows, groups, next_clip = [], {}, 1000
    for r in range(20):
        rid = f"r{r:02d}"
        delta, sd = rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.5)
        clips = [(int(c), shared_quality[c]) for c in rng.choice(12, 2, replace=False)]
        for _ in range(6):
            clips.append((next_clip, rng.uniform(1.9, 4.1)))
            next_clip += 1
        for clip, quality in clips:
            groups[clip] = clip % 5
            if r == 0:  # the adversary
                rows.append((rid, clip, 5.0, float(rng.uniform(0.5, 0.55))))
                continue
            opinion = quality + delta + rng.normal(0, sd)
            listen = float(np.clip(0.68 + 0.12 * (opinion - 3) + rng.normal(0, 0.12), 0.5, 1))
            rows.append((rid, clip, float(np.clip(np.round(opinion * 2) / 2, 1, 5)), listen))
    return RatingSet.from_records(rows), groups, "r00"


def test_sparse_single_rated_clips_do_not_flag_honest_raters() -> None:
    """Regression (pilot finding): with most clips rated once, σ is unidentified and sat at
    its floor, so rule B's power gate passed and most honest raters were flagged."""
    for seed in range(6):
        data, groups, adversary = _pilot_like_sparse_campaign(seed)
        _, per_clip = np.unique(data.clip_ids, return_counts=True)
        assert np.mean(per_clip == 1) > 0.8  # the regime: most clips single-rated
        qc = assess_raters(data, clip_groups=groups)
        assert set(qc.flagged) == {adversary}, (seed, [(a.rater_id, a.reasons)
                                                       for a in qc.assessments if a.flagged])
        assert "top of the scale" in qc[adversary].reasons[0]  # rule A needs no overlap
        honest_notes = [a.note for a in qc.assessments if a.rater_id != adversary]
        assert all(n == "" or "not judged" in n for n in honest_notes)



# --------------------------------------------------------------------------------------
# issue 15: platform-like campaigns (tests/feedback/feedback_sim.py::simulate_campaign)

CAMPAIGN_VARIANTS = {
    # 45 honest (3 of them dislike most clips) + 5 adversaries, 30 ratings each, clips with
    # 1-3 raters each
    "sparse": {},
    # the same after a cold-start round of dataset clips (many raters each) and a quarter of
    # the later requests served from the dataset (the baseline branch)
    "cold start": {"cold_start_rounds": 1, "baseline_share": 0.25},
}
CAMPAIGN_SEEDS = (0, 1, 2)


@functools.cache
def _campaign(scenario: str, variant: str, seed: int) -> tuple[Campaign, dict]:
    camp = simulate_campaign(seed, scenario, **CAMPAIGN_VARIANTS[variant])
    qc = assess_raters(camp.data, clip_groups=camp.clip_groups)
    return camp, {a.rater_id: a for a in qc.assessments}


def _flag_table(scenario: str) -> tuple[dict, str]:
    """Flagged / total per kind over all variants and seeds, and a per-campaign table."""
    totals: dict[str, list[int]] = {}
    lines = [f"flag rates, scenario {scenario!r} (flagged/total per kind):"]
    for variant in CAMPAIGN_VARIANTS:
        for seed in CAMPAIGN_SEEDS:
            camp, verdicts = _campaign(scenario, variant, seed)
            line: dict[str, list[int]] = {}
            for rid, kind in camp.kind.items():
                for table in (totals, line):
                    cell = table.setdefault(kind, [0, 0])
                    cell[0] += verdicts[rid].flagged
                    cell[1] += 1
            lines.append(f"  {variant:>10} seed {seed}: "
                         + ", ".join(f"{k} {f}/{n}" for k, (f, n) in sorted(line.items())))
    lines.append("  total: " + ", ".join(f"{k} {f}/{n}" for k, (f, n) in sorted(totals.items())))
    return totals, "\n".join(lines)


def _rate(totals: dict, *kinds: str) -> float:
    flagged = sum(totals.get(k, [0, 0])[0] for k in kinds)
    return flagged / max(sum(totals.get(k, [0, 0])[1] for k in kinds), 1)


@pytest.mark.parametrize("scenario", ["pilot", "opposed"])
def test_platform_campaigns_flag_misconduct_and_not_taste(scenario: str) -> None:
    """The issue's targets: >= 90 % of adversaries flagged, <= 5 % of honest listeners, on
    (a) three taste groups around their own songs (bias SD 0.4, noise 0.2-0.6) and (b) two
    opposed taste groups (bias SD 0.6, noise 0.3-0.7). The table is in the message."""
    totals, table = _flag_table(scenario)
    assert _rate(totals, *ADVERSARY_KINDS) >= 0.9, table
    assert _rate(totals, "max_min_listen") >= 0.9, table
    assert _rate(totals, "honest", "disliker") <= 0.05, table
    assert _rate(totals, "disliker") <= 0.05, table  # disliking most clips is not misconduct


def test_platform_campaigns_flag_the_random_kind() -> None:
    """Random raters (uniform half stars, random listening) are flagged, not only down-weighted:
    pooled over both scenarios (2 per campaign, 24 in all)."""
    tables, flagged, total = [], 0, 0
    for scenario in ("pilot", "opposed"):
        totals, table = _flag_table(scenario)
        tables.append(table)
        flagged += totals["random"][0]
        total += totals["random"][1]
    assert flagged / total >= 0.9, "\n".join(tables)


def test_flagged_random_raters_say_why_and_lose_their_weight() -> None:
    camp, verdicts = _campaign("opposed", "sparse", 0)
    for rid in camp.raters_of("random"):
        v = verdicts[rid]
        if v.flagged:
            assert v.weight == 0.0
            assert "unrelated to the rater's own listening" in v.reasons[0]
            assert "power" in v.reasons[0] and "p=" in v.reasons[0]
    honest = [verdicts[r] for r in camp.raters_of("honest", "disliker")]
    assert np.median([v.weight for v in honest]) == 1.0
    assert all(v.weight > 0 for v in honest if not v.flagged)


def test_honest_raters_of_opposed_tastes_keep_their_weight() -> None:
    """Two groups that rank the clips in opposite orders: neither is treated as noise."""
    camp, verdicts = _campaign("opposed", "cold start", 1)
    for group in (0, 1):
        members = [r for r, g in camp.taste_group.items()
                   if g == group and camp.kind[r] == "honest"]
        weights = np.array([verdicts[r].weight for r in members])
        assert np.median(weights) == 1.0 and np.mean(weights >= 0.5) >= 0.95, (group, weights)


def test_a_random_rater_is_judged_by_its_own_listening_when_nobody_shares_its_clips() -> None:
    """Every clip rated once: no consensus exists, yet a rater whose ratings do not follow its
    own listening (which varies widely) is flagged; honest raters' ratings follow theirs."""
    flagged_random = total_random = flagged_honest = total_honest = 0
    for seed in (0, 1):
        camp = simulate_campaign(seed, "opposed", new_clip_share=1.0,
                                 adversaries=("random",) * 4)
        _, per_clip = np.unique(camp.data.clip_ids, return_counts=True)
        assert per_clip.max() == 1
        qc = assess_raters(camp.data, clip_groups=camp.clip_groups)
        for a in qc.assessments:
            if camp.kind[a.rater_id] == "random":
                flagged_random += a.flagged
                total_random += 1
            else:
                flagged_honest += a.flagged
                total_honest += 1
    assert flagged_random >= 0.75 * total_random, (flagged_random, total_random)
    assert flagged_honest <= 0.05 * total_honest, (flagged_honest, total_honest)


def test_an_honest_disliker_is_not_flagged_but_a_constant_top_rater_is() -> None:
    """Rule A is about ratings that minimal listening contradicts: 1 star after skipping is
    what an honest listener who dislikes a clip does; 5 stars after skipping is not."""
    rng = np.random.default_rng(11)
    psi = rng.uniform(2, 4, 30)
    rows = [(f"r{r}", c, float(np.clip(np.round((psi[c] + rng.normal(0, 0.4)) * 2) / 2, 1, 5)),
             float(np.clip(0.6 + 0.1 * (psi[c] - 3) + rng.normal(0, 0.1), 0.53, 1)))
            for r in range(8) for c in range(30)]
    # dislikes nearly everything, skips it: mostly 1 star, 1.5-2 for the least bad clips
    rows += [("disliker", c, 1.0 if psi[c] < 3.4 else 2.0, 0.53) for c in range(30)]
    rows += [("lazy", c, 5.0, 0.53) for c in range(30)]
    rows += [("fixed", c, 3.5, 0.53) for c in range(30)]
    qc = assess_raters(RatingSet.from_records(rows))
    assert not qc["disliker"].flagged and qc["disliker"].weight > 0
    assert qc["lazy"].flagged and "top of the scale" in qc["lazy"].reasons[0]
    assert qc["fixed"].flagged and "identical (3.5)" in qc["fixed"].reasons[0]


def test_quality_control_settings_are_validated() -> None:
    c = FeedbackConfig()
    assert (c.qc_taste_clusters, c.qc_cluster_merge, c.qc_min_reliability) == (3, 0.5, 0.05)
    assert (c.qc_honest_noise, c.qc_noise_quantile) == (0.75, 0.5)
    for name, value in (("qc_taste_clusters", 0), ("qc_cluster_merge", 1.5),
                        ("qc_min_reliability", -0.1), ("qc_honest_noise", 0.0),
                        ("qc_noise_quantile", 2.0)):
        with pytest.raises(InvalidInput, match=f"{name}="):
            c.replace(**{name: value})


def test_clip_features_let_random_raters_who_never_listen_be_judged() -> None:
    """A rater giving random stars after minimal listens hides from the listening witness; on
    clips with 1-3 raters the clusters' consensus alone has no power, so they are "not
    judged". Given the clips' features, each taste cluster's model of its raters' ratings
    predicts every clip, and such raters are flagged; honest ones still are not."""
    flagged = total = honest_flagged = honest_total = 0
    for seed in (0, 1):
        camp = simulate_campaign(seed, "pilot", adversaries=("random_skip",) * 5)
        without = assess_raters(camp.data, clip_groups=camp.clip_groups)
        qc = assess_raters(camp.data, clip_groups=camp.clip_groups,
                           clip_features=camp.clip_features)
        for rid in camp.raters_of("random_skip"):
            assert not without[rid].flagged and "not judged" in without[rid].note
            flagged += qc[rid].flagged
            total += 1
        for rid in camp.raters_of("honest", "disliker"):
            honest_flagged += qc[rid].flagged
            honest_total += 1
    assert flagged >= 0.8 * total, (flagged, total)
    assert honest_flagged <= 0.05 * honest_total, (honest_flagged, honest_total)


def test_clip_features_are_validated() -> None:
    rows = [(f"r{r}", c, 3.0 + 0.5 * ((c + r) % 3), 0.8) for r in range(3) for c in range(10)]
    features = {c: [float(c), 1.0] for c in range(10)}
    features[3] = [1.0, 2.0, 3.0]
    with pytest.raises(InvalidInput, match="clip_features of clip 3"):
        assess_raters(RatingSet.from_records(rows), clip_features=features)


def test_a_clip_rated_twice_by_one_rater_is_a_retest() -> None:
    """Test-retest: every clip served twice to each rater and nobody shares clips. Honest
    raters agree with themselves; random raters do not, and are flagged."""
    rng = np.random.default_rng(3)
    rows = []
    for r in range(30):
        kind = "random" if r < 4 else "honest"
        for c in range(15):
            clip = r * 100 + c
            appeal = rng.uniform(1.5, 4.5)
            for _ in range(2):
                if kind == "random":
                    rows.append((f"{kind}{r}", clip, float(rng.integers(2, 11)) / 2, 0.53))
                else:
                    u = float(np.clip(np.round((appeal + rng.normal(0, 0.5)) * 2) / 2, 1, 5))
                    rows.append((f"{kind}{r}", clip, u, 0.53))  # listening says nothing
    qc = assess_raters(RatingSet.from_records(rows))
    assert {r for r in qc.flagged} == {f"random{r}" for r in range(4)}
