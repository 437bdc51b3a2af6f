"""The report's guards on real rows (issue 15): each version's served clips — their diversity
as ``encore eval`` measures it and their median similarity to the input — and the verdicts
against v0. A version that serves near-copies of one sound fails the diversity guard; one
whose clips sit closer to their input fails the S guard; baseline re-serves of dataset
clips and unserved candidates never count."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import numpy as np
import pytest

from encore.audio.descriptors import DESCRIPTOR_NAMES
from encore.diffusion.evaluate import Standardiser, mean_pairwise_distance
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

N = 12  # served clips per version


def _clip(session, version_id: int, vector: np.ndarray, similarity: float, *,
          kind: ClipKind = ClipKind.GENERATED, served: bool = True) -> Clip:
    clip = Clip(kind=kind, status=ClipStatus.READY, model_version_id=version_id, seed=1, steps=3,
                eta=0.0, seconds=5.0, ready_at=utcnow(), served=served, similarity=similarity,
                descriptors=dict(zip(DESCRIPTOR_NAMES, map(float, vector), strict=True)))
    session.add(clip)
    session.flush()
    return clip


def _deliver(session, clip: Clip, listener, when: dt.datetime, *,
             branch: DispatchBranch = DispatchBranch.GENERATE,
             selection: str | None = "explore", pair_id: str | None = None) -> None:
    d = Delivery(clip_id=clip.id, listener_id=listener.id, branch=branch, input_song_ids=[],
                 listened_seconds=5.0, delivered_at=when, pair_id=pair_id,
                 selection=selection if branch is DispatchBranch.GENERATE else None)
    session.add(d)
    session.flush()
    session.add(Rating(delivery=d, half_stars=7, listened_fraction=1.0,
                       created_at=when + dt.timedelta(seconds=30)))


@pytest.fixture
def guarded(ctx, make_listener):
    """v0 serves varied clips (S 0.40–0.51); v1 near-copies of one sound (S 0.60…); v2 varied
    5 % more than v0 (S within +0.05), half taste picks. Extra rows that must not count: baseline
    deliveries of wild dataset clips and of v0 clips, unserved candidates, v0 review
    deliveries of clips already served (each clip counts once)."""
    rng = np.random.default_rng(7)
    d = len(DESCRIPTOR_NAMES)
    vectors = {
        "v0": rng.normal(0.0, 1.0, size=(N, d)),
        "v1": 0.5 + rng.normal(0.0, 0.01, size=(N, d)),
    }
    vectors["v2"] = -1.05 * vectors["v0"][::-1]  # other clips, 5 % more spread: ratio 1.05
    sims = {"v0": 0.40 + 0.01 * np.arange(N), "v1": 0.60 + 0.01 * np.arange(N),
            "v2": 0.42 + 0.01 * np.arange(N)}
    v0 = versions.ensure_base_version(ctx)
    listener, other = make_listener(), make_listener()
    now = utcnow()
    with ctx.session() as session:
        base = session.get(ModelVersion, v0.id)
        ids = {"v0": v0.id}
        for name in ("v1", "v2"):
            v = ModelVersion(name=name, folder=base.folder, parent_id=v0.id, taste_selection=True,
                             status=VersionStatus.ACTIVE, activated_at=now)
            session.add(v)
            session.flush()
            ids[name] = v.id
        served = {}
        for name, vecs in vectors.items():
            served[name] = []
            for i, vec in enumerate(vecs):
                clip = _clip(session, ids[name], vec, float(sims[name][i]))
                selection = "taste" if name == "v2" and i % 2 else "explore"
                # v0's clip i and v2's clip N-1-i answer the same request (a pair)
                pair = {"v0": f"pair-{i}", "v2": f"pair-{N - 1 - i}"}.get(name)
                _deliver(session, clip, listener, now, selection=selection, pair_id=pair)
                served[name].append(clip)
                # an unserved candidate of the same request: never delivered, never counted
                _clip(session, ids[name], rng.normal(0.0, 50.0, size=d), 0.99, served=False)
        for clip in served["v0"][:4]:
            _deliver(session, clip, other, now, branch=DispatchBranch.REVIEW)
        for _ in range(3):
            wild = _clip(session, v0.id, rng.normal(0.0, 50.0, size=d), 0.99,
                         kind=ClipKind.DATASET)
            _deliver(session, wild, listener, now, branch=DispatchBranch.BASELINE)
        # a generated v0 clip served only as a baseline: not a served clip of v0 either
        _deliver(session, _clip(session, v0.id, rng.normal(0.0, 50.0, size=d), 0.99), listener,
                 now, branch=DispatchBranch.BASELINE)
    return vectors, sims


def test_near_copies_fail_the_diversity_guard(ctx, guarded) -> None:
    vectors, sims = guarded
    rep = report.build_report(ctx, n_resamples=200)
    assert rep is not None
    sets = {s.label: s for s in rep.served}
    assert set(sets) == {"v0", "v1", "v2", "v2 taste", "v2 explore"}
    assert [sets[v].n_clips for v in ("v0", "v1", "v2")] == [N, N, N]
    assert (sets["v2 taste"].n_clips, sets["v2 explore"].n_clips) == (N // 2, N // 2)

    # the same numbers as encore eval's function on the same (standardised) descriptors
    pooled = np.concatenate([vectors[v] for v in ("v0", "v1", "v2")])
    std = Standardiser.fit(pooled)
    for v in ("v0", "v1", "v2"):
        assert sets[v].diversity == pytest.approx(mean_pairwise_distance(std(vectors[v])))
        assert sets[v].median_similarity == pytest.approx(np.median(sims[v]))
        assert sets[v].diversity_ci_low < sets[v].diversity < sets[v].diversity_ci_high
    taste_rows = std(vectors["v2"][1::2])
    assert sets["v2 taste"].diversity == pytest.approx(mean_pairwise_distance(taste_rows))

    guards = {g.version_id: g for g in rep.guards}
    assert set(guards) == {"v1", "v2"} and {g.reference_id for g in rep.guards} == {"v0"}
    g1, g2 = guards["v1"], guards["v2"]
    assert g1.diversity_ratio == pytest.approx(sets["v1"].diversity / sets["v0"].diversity)
    assert g1.diversity_ratio < 0.1 and g1.diversity_ok is False
    assert g1.similarity_difference == pytest.approx(0.20) and g1.similarity_ok is False
    assert g1.ratio_ci_high < 0.9
    assert g2.diversity_ratio == pytest.approx(1.05) and g2.diversity_ok is True
    assert g2.similarity_difference == pytest.approx(0.02) and g2.similarity_ok is True
    # like for like on the 12 pairs: v2's halves are v0's, 5 % more spread, in every draw
    assert g2.n_pairs == N and g1.n_pairs == 0 and np.isnan(g1.paired_ratio)
    assert g2.paired_ratio == pytest.approx(1.05)
    assert (g2.paired_ratio_ci_low, g2.paired_ratio_ci_high) == pytest.approx((1.05, 1.05))
    assert g2.paired_difference == pytest.approx(0.02)

    text = report.format_report(rep)
    assert "Guards (served clips" in text
    assert "guard v1 vs v0: diversity" in text and "FAILED (allowed 0.90–1.10)" in text
    line2 = next(x for x in text.splitlines() if x.strip().startswith("guard v2 vs v0"))
    assert "FAILED" not in line2 and line2.count("passed") == 2
    assert "like for like, 12 paired deliveries (same listener, songs, seeds): diversity 1.05×" in text
    data = json.loads(json.dumps(views.report_json(rep), allow_nan=False))  # the operator API
    assert {g["version_id"]: g["diversity_ok"] for g in data["guards"]} == {"v1": False, "v2": True}
    assert data["text"] == text


def test_served_csv_recomputes_the_guards(ctx, guarded) -> None:
    vectors, _ = guarded
    rows = list(csv.DictReader(io.StringIO(report.served_csv(ctx))))
    assert list(rows[0]) == list(report.SERVED_CSV_COLUMNS)
    assert len(rows) == 3 * N and {r["version"] for r in rows} == {"v0", "v1", "v2"}
    x = np.array([[float(r[n]) for n in DESCRIPTOR_NAMES] for r in rows])
    names = np.array([r["version"] for r in rows])
    assert np.allclose(x[names == "v1"], vectors["v1"])
    z = Standardiser.fit(x)(x)
    rep = report.build_report(ctx, n_resamples=200)
    sets = {s.label: s.diversity for s in rep.served}
    for v in ("v0", "v1", "v2"):
        assert sets[v] == pytest.approx(mean_pairwise_distance(z[names == v]))
    assert sum(r["pair_id"] != "" for r in rows) == 2 * N


def test_report_page_shows_the_guards(ctx, guarded) -> None:
    from encore.web.templating import make_templates

    rep = report.build_report(ctx, n_resamples=200)
    html = make_templates().env.get_template("operator/report.html").render(
        report=rep, plots=[], user=None, csrf_token=None)
    assert "Guards" in html and "v2 taste" in html and "like for like, 12 paired deliveries" in html
    assert html.count("FAILED") == 2  # v1: diversity and S


def test_eval_features_of_the_served_audio(ctx, make_listener) -> None:
    """``encore report --eval-features``: the guards' diversity over ``encore eval``'s own
    features of each served clip's stored audio — v1's six identical tones fail against v0's
    six different tones and noises; a clip whose audio is gone is left out of the diversity."""
    from encore.audio.encode import encode_audio
    from encore.diffusion.features import features_for_clips

    sr = 22050
    t = np.arange(sr) / sr
    noise = np.random.default_rng(0).normal(size=sr)
    audio = {"v0": [np.sin(2 * np.pi * f * t) * (0.2 + 0.1 * k) + 0.05 * k * noise
                    for k, f in enumerate((110, 220, 440, 880, 1760, 3520))],
             "v1": [np.sin(2 * np.pi * 440 * t) * 0.5 for _ in range(6)]}
    v0 = versions.ensure_base_version(ctx)
    listener = make_listener()
    now = utcnow()
    with ctx.session() as session:
        base = session.get(ModelVersion, v0.id)
        v1 = ModelVersion(name="v1", folder=base.folder, parent_id=v0.id,
                          status=VersionStatus.ACTIVE, activated_at=now)
        session.add(v1)
        session.flush()
        for name, vid in (("v0", v0.id), ("v1", v1.id)):
            for y in audio[name]:
                clip = _clip(session, vid, np.zeros(len(DESCRIPTOR_NAMES)), 0.5)
                clip.audio_key = ctx.blobs.put(ctx.blobs.new_key("clips", ".ogg"),
                                               encode_audio(y, sr=sr, format="ogg"))
                _deliver(session, clip, listener, now)
        gone = _clip(session, v1.id, np.zeros(len(DESCRIPTOR_NAMES)), 0.5)
        gone.audio_key = "clips/missing.ogg"
        _deliver(session, gone, listener, now)

    rep = report.build_report(ctx, n_resamples=100, guard_space="eval")
    sets = {s.label: s for s in rep.served}
    assert sets["v1"].n_clips == 7 and sets["v0"].space == "eval"
    feats = {}
    for name in ("v0", "v1"):  # the same features from the decoded OGG, as the report reads it
        rows = [r for r in report.served_rows(ctx) if r.version == name and r.audio_key != "clips/missing.ogg"]
        feats[name] = report.eval_features(ctx, rows)
    pooled = np.concatenate([feats["v0"], feats["v1"]])
    std = Standardiser.fit(pooled)
    for name in ("v0", "v1"):
        assert sets[name].diversity == pytest.approx(mean_pairwise_distance(std(feats[name])))
    (g,) = rep.guards
    assert g.diversity_ok is False and g.diversity_ratio < 0.5
    raw = features_for_clips([audio["v0"][0]], sr)[0]  # before the codec: close, not equal
    assert np.corrcoef(raw, feats["v0"][0])[0, 1] > 0.9
    assert "over encore eval's features of the served audio" in report.format_report(rep)
    # the default stays the stored descriptors (all zero here: no diversity to speak of)
    assert report.build_report(ctx, n_resamples=100).served[0].space == "descriptors"
