"""Gating a new version against its parent (issue 16, part 4) with real tiny models, a real
database and the real taste model: listeners rate the clips of one model 5 stars and those of
another 1 star; a child made of the liked weights passes its gate and may be activated, a
child identical to its parent does not beat it and stays a draft with the reason shown."""

from __future__ import annotations

import pytest

from encore.errors import Conflict
from encore.services import gating, music, songs, versions
from encore.store import VersionStatus
from tests.services.test_best_of_n import _no_review_or_baseline, _rate


@pytest.fixture
def rated_platform(ctx, make_listener, song_bytes, tmp_path):
    """v0 and an imported model ``liked`` (other seeded weights); three listeners rated
    liked's clips 5 stars and v0's 1 star. Returns (v0, liked)."""
    from encore.web.liveserver import build_tiny_models

    _no_review_or_baseline(ctx)
    ctx.settings.taste_refit_ratings = 0
    ctx.settings.gate_panel_songs = 3
    ctx.settings.gate_panel_seeds = 2
    v0 = versions.ensure_base_version(ctx)
    liked_folder, _ = build_tiny_models(tmp_path / "liked", seed=5)  # other seeded weights
    liked = versions.import_version(ctx, liked_folder)
    listeners = []
    for i in range(3):
        listener = make_listener()
        song = songs.upload_song(ctx, owner=listener, filename="s.wav", data=song_bytes(60 + i))
        listeners.append((listener, song))
    for served, hidden, stars in ((liked, v0, 5.0), (v0, liked, 1.0)):
        versions.activate_version(ctx, version_id=served.id, ab_weight=1.0)
        versions.set_ab_weight(ctx, version_id=hidden.id, ab_weight=0.0)
        for listener, song in listeners:
            for _ in range(2):
                d = music.request_music(ctx, listener=listener, song_ids=[song.id])
                _rate(ctx, listener, d.id, stars)
    return v0, liked


def test_a_failed_gate_keeps_the_draft_and_a_passing_gate_activates(ctx, rated_platform):
    v0, liked = rated_platform
    with ctx.session() as session:
        same = versions.register_version(session, folder=v0.folder, parent_id=v0.id, notes="copy")
        better = versions.register_version(session, folder=liked.folder, parent_id=v0.id)
        same_id, better_id = same.id, better.id

    verdict = gating.gate_version(ctx, same_id)
    assert verdict["passed"] is False
    # identical weights, identical panel: every group's difference is exactly 0
    assert [g["delta"] for g in verdict["groups"]] == [0.0] * len(verdict["groups"])
    assert verdict["diversity"]["ratio"] == pytest.approx(1.0)
    assert verdict["similarity"]["parent"] == verdict["similarity"]["child"]
    assert any(r.startswith("group 0") for r in verdict["reasons"])
    # the gating model is not the serving snapshots' fit: half of each listener's ratings
    assert verdict["taste_model"]["n_ratings"] == 6 and verdict["taste_model"]["of_ratings"] == 12
    row = versions.get_version(ctx, same_id)
    assert row.status is VersionStatus.DRAFT and row.metrics["gate"] == verdict
    assert row.notes.startswith("copy\ngate failed: group 0")
    with pytest.raises(Conflict, match="v[0-9]+ failed its gate against its parent .*group 0"):
        versions.activate_version(ctx, version_id=same_id)
    assert versions.get_version(ctx, same_id).status is VersionStatus.DRAFT

    ctx.settings.gate_diversity_tolerance = 0.9  # other random weights: diversity differs
    verdict = gating.gate_version(ctx, better_id)
    assert verdict["passed"] is True, verdict["reasons"]
    assert all(g["delta"] > 0 and g["passed"] for g in verdict["groups"])
    assert verdict["quality"] == {"measured": False,
                                  "why": "no evaluation against the parent on record"}
    active = versions.activate_version(ctx, version_id=better_id, ab_weight=0.5)
    assert active.status is VersionStatus.ACTIVE and "gate failed" not in (active.notes or "")
    # the operator may force the failed draft explicitly
    forced = versions.activate_version(ctx, version_id=same_id, force=True)
    assert forced.status is VersionStatus.ACTIVE


def test_a_version_that_cannot_be_gated_fails_with_the_reason(ctx):
    v0 = versions.ensure_base_version(ctx)
    with ctx.session() as session:
        child_id = versions.register_version(session, folder=v0.folder, parent_id=v0.id).id
    verdict = gating.gate_version(ctx, child_id)
    assert verdict == {"passed": False, "parent": "v0", "reasons": [
        "could not be gated: no counted rating with analysed audio: there is no taste model "
        "to gate with"]}
    with pytest.raises(Conflict, match="could not be gated"):
        versions.activate_version(ctx, version_id=child_id)
    with pytest.raises(Conflict, match="no parent"):
        gating.gate_version(ctx, v0.id)


def test_a_conditioned_child_is_gated_per_group_with_its_serving_labels(ctx, rated_platform, tmp_path):
    from tests.services.test_conditioning import _conditioned_version, _groups

    v0, _ = rated_platform
    raters = sorted(_raters(ctx))
    groups = _groups({raters[0]: 1, raters[1]: 0, raters[2]: 0})
    folder = _conditioned_version(ctx, tmp_path, groups)
    with ctx.session() as session:
        child = versions.register_version(session, folder=versions.store_folder(ctx, folder),
                                          parent_id=v0.id).id
    verdict = gating.gate_version(ctx, child)
    assert verdict["groups_from"] == "the child's own taste groups (k = 2)"
    rows = verdict["groups"]
    assert [(r["group"], r["listeners"]) for r in rows] == [(0, 2), (1, 1)]
    # each group's panel is the child's rendering for that group; v0 has no labels
    assert [r["labels"] for r in rows] == [{"parent": None, "child": 0}, {"parent": None, "child": 1}]


def _raters(ctx) -> set[int]:
    model, _ = gating.gating_taste_model(ctx)
    return set(model.listeners)
