"""The report's fair comparison on real rows (issue 15): paired deliveries, best-of-n candidates
with taste predictions, rounds from the versions' activation times, and baseline and review
ratings that must stay out of the version comparison."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import numpy as np
import pytest

from encore.services import report, versions
from encore.store import (
    Clip,
    ClipKind,
    ClipStatus,
    Delivery,
    DispatchBranch,
    ModelVersion,
    Rating,
    VersionStatus,
    utcnow,
)
from encore.web import views

# (listener, v0 stars, v1 stars) of each pair, all in round 1
PAIRS = [(k, 3.0 + (k % 3) * 0.5, 3.0 + (k % 3) * 0.5 + d)
         for k in range(6) for d in (0.5, 1.0 if k < 4 else -0.5)]


def _candidates(session, version_id: int, request: str, predicted: list[float], served: int
                ) -> Clip:
    """The request's candidates (one served); returns the served clip."""
    clips = []
    for i, p in enumerate(predicted):
        clip = Clip(kind=ClipKind.GENERATED, status=ClipStatus.READY, model_version_id=version_id,
                    seed=100 + i, steps=3, eta=0.0, seconds=5.0, ready_at=utcnow(),
                    request_id=request, candidate_index=i, served=i == served,
                    predicted_stars=p)
        session.add(clip)
        clips.append(clip)
    session.flush()
    return clips[served]


def _deliver(session, clip: Clip, listener, stars: float, when: dt.datetime, *,
             branch: DispatchBranch = DispatchBranch.GENERATE, selection: str | None = None,
             propensity: float | None = None, pair_id: str | None = None) -> Delivery:
    d = Delivery(clip_id=clip.id, listener_id=listener.id, branch=branch, input_song_ids=[],
                 listened_seconds=5.0, delivered_at=when, selection=selection,
                 propensity=propensity, pair_id=pair_id,
                 predicted_stars=clip.predicted_stars)
    session.add(d)
    session.flush()
    session.add(Rating(delivery=d, half_stars=int(stars * 2), listened_fraction=1.0,
                       created_at=when + dt.timedelta(seconds=30)))
    return d


@pytest.fixture
def paired_platform(ctx, make_listener):
    """v0 alone in round 0; v0 and v1 (taste selection) in round 1 with 12 pairs; 5-star
    baseline and review ratings of v0 clips in both rounds."""
    v0 = versions.ensure_base_version(ctx)
    start = utcnow()
    listeners = [make_listener() for _ in range(6)]
    with ctx.session() as session:
        base = session.get(ModelVersion, v0.id)
        base.activated_at = start
        v1 = ModelVersion(name="v1", folder=base.folder, parent_id=v0.id, taste_selection=True,
                          status=VersionStatus.ACTIVE, activated_at=start + dt.timedelta(hours=1))
        session.add(v1)
        session.flush()
        r0, r1 = start + dt.timedelta(minutes=5), start + dt.timedelta(hours=1, minutes=5)
        # round 0: v0 explore deliveries, one served the taste pick (candidate 2)
        for k, who in enumerate(listeners):
            clip = _candidates(session, v0.id, f"r0-{k}", [3.0, 3.5, 4.0, 2.0],
                               served=2 if k == 0 else 1)
            _deliver(session, clip, who, 4.5 if k == 0 else 3.5, r0, selection="explore",
                     propensity=0.25)
        # round 1: pairs — v0 serves a uniform pick, v1 the taste pick, same listener
        for n, (k, a, b) in enumerate(PAIRS):
            clip_a = _candidates(session, v0.id, f"pa-{n}", [3.0, 3.2, 3.1, 3.3], served=0)
            clip_b = _candidates(session, v1.id, f"pb-{n}", [3.0, 3.2, 3.1, 3.3], served=3)
            _deliver(session, clip_a, listeners[k], a, r1, selection="explore",
                     propensity=0.25, pair_id=f"pair-{n}")
            _deliver(session, clip_b, listeners[k], b, r1 + dt.timedelta(minutes=10),
                     selection="taste", propensity=0.85, pair_id=f"pair-{n}")
        # baseline (dataset clip of v0) and review ratings: 5 stars, never in the comparison
        old = _candidates(session, v0.id, "old", [4.0], served=0)
        for who in listeners:
            _deliver(session, old, who, 5.0, r1, branch=DispatchBranch.BASELINE)
        reviewed = _candidates(session, v0.id, "rev", [4.0], served=0)
        _deliver(session, reviewed, listeners[0], 3.0, r0, selection="single")
        for who in listeners[1:]:
            _deliver(session, reviewed, who, 5.0, r1, branch=DispatchBranch.REVIEW)
    return listeners


def test_report_headline_is_the_paired_comparison(ctx, paired_platform) -> None:
    rep = report.build_report(ctx, n_resamples=500)
    assert rep is not None
    (head,) = rep.headline
    diffs = np.array([b - a for _, a, b in PAIRS])
    assert (head.version_id, head.reference_id, head.method) == ("v1", "v0", "paired")
    assert head.difference == pytest.approx(diffs.mean())
    assert (head.n, head.n_raters) == (12, 6) and head.rounds == (1,)
    (pc,) = rep.paired
    assert pc.win_rate == pytest.approx(np.mean(diffs > 0))
    per_listener = sorted(np.mean([b - a for k2, a, b in PAIRS if k2 == k]) for k in range(6))
    assert pc.listener_gains == pytest.approx(per_listener)
    assert pc.share_improved == pytest.approx(np.mean(np.array(per_listener) > 0))
    assert pc.ci_low < head.difference < pc.ci_high

    # baseline and review ratings (5 stars) are apart; the pooled Table 1 still counts them
    assert rep.baseline is not None and (rep.baseline.n, rep.baseline.mean) == (6, 5.0)
    fresh_v0 = {m.label: m for m in rep.fresh_means}["v0"]
    assert fresh_v0.n == 6 + 12 + 1  # round 0, the pairs' v0 halves, the reviewed clip's own
    pooled_v0 = rep.table.cell(None, "v0")
    assert pooled_v0.count == fresh_v0.n + 6 + 5
    (same,) = rep.same_round
    assert same.rounds == (1,) and (same.n, same.n_reference) == (12, 12)
    assert same.difference == pytest.approx(diffs.mean())

    # selection alone: v0's explore deliveries with candidates' predictions (IPS)
    (d,) = rep.decomposition
    assert d.selection is not None and d.selection.method == "off-policy"
    assert d.selection.policy.n == 6 + 12 and d.selection.policy.n_matched == 1
    assert np.isnan(d.selection.ci_low)  # one taste pick among 18: no interval
    assert d.both is not None and d.both.method == "paired"
    assert d.weights is None  # v1 never served a uniform pick

    text = report.format_report(rep)
    assert f"v1 vs v0: {diffs.mean():+.2f} stars" in text
    data = json.loads(json.dumps(views.report_json(rep), allow_nan=False))  # the operator API
    assert data["headline"][0]["method"] == "paired" and data["text"] == text
    assert data["paired"][0]["n_pairs"] == 12 and data["baseline"]["n"] == 6
    assert "paired: 12 pairs, 6 listeners" in text
    assert "Dataset clips served as baselines (counted for no version): 5.00" in text
    assert "Table 1, pooled" in text


def test_csv_has_selection_pairs_and_rounds(ctx, paired_platform) -> None:
    rows = list(csv.DictReader(io.StringIO(report.ratings_csv(ctx))))
    assert list(rows[0])[:4] == ["rating_id", "created_at", "rater", "stars"]
    assert set(report.CSV_COLUMNS) <= set(rows[0])
    by_pair = {}
    for r in rows:
        if r["pair_id"]:
            by_pair.setdefault(r["pair_id"], []).append(r)
    assert len(by_pair) == 12 and all(len(v) == 2 for v in by_pair.values())
    first = by_pair["pair-0"]
    assert {r["selection"] for r in first} == {"explore", "taste"}
    assert {r["round"] for r in first} == {"1"} and {r["fresh"] for r in first} == {"True"}
    taste = next(r for r in first if r["selection"] == "taste")
    assert (taste["taste_pick"], taste["n_candidates"], taste["candidate_index"]) == (
        "True", "4", "3")
    explore = next(r for r in first if r["selection"] == "explore")
    assert explore["taste_pick"] == "False" and float(explore["propensity"]) == 0.25
    round0 = [r for r in rows if r["round"] == "0"]
    assert len(round0) == 7
    explored = [r for r in round0 if r["selection"] == "explore"]
    assert len(explored) == 6 and sum(r["taste_pick"] == "True" for r in explored) == 1
    single = next(r for r in round0 if r["selection"] == "single")
    assert (single["n_candidates"], single["taste_pick"]) == ("1", "True")
    base = [r for r in rows if r["branch"] == "baseline"]
    assert base and all(r["fresh"] == "False" and r["taste_pick"] == "" for r in base)


def test_report_page_and_plots_show_the_fair_comparison(ctx, paired_platform, tmp_path) -> None:
    from encore.web.templating import make_templates

    rep = report.build_report(ctx, n_resamples=200)
    paths = report.report_plots(ctx, tmp_path / "plots", report=rep)
    assert sorted(p.name for p in paths) == ["rating_distributions.png", "ratings_per_version.png",
                                             "version_gains.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    html = make_templates().env.get_template("operator/report.html").render(
        report=rep, plots=[], user=None, csrf_token=None)
    assert "Versions compared fairly" in html and "Paired deliveries" in html
    assert "Where the gain comes from" in html and "Table 1, pooled" in html
    assert "paired: 12 pairs, 6 listeners" in html
