"""Curation and purge through the services on real rows: rater reputations are stored,
R and c land on the clips, the update rule admits only clips that beat their baseline,
and the purge keeps the better of two near-duplicates with the reason recorded."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from encore.services import curation, report, versions
from encore.services.similarity import similarity_model, to_stored
from encore.store import (
    Clip,
    ClipKind,
    ClipStatus,
    DatasetEntry,
    Delivery,
    DispatchBranch,
    RaterReputation,
    Rating,
    RemovalReason,
    utcnow,
)


def _rep(ctx, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(2, 16, 32)).astype(np.uint8)
    return to_stored(similarity_model(ctx).represent(images))


def _clip(session, version_id: int, rep: list[float], similarity: float = 0.7) -> Clip:
    clip = Clip(
        kind=ClipKind.GENERATED, status=ClipStatus.READY, model_version_id=version_id,
        seed=1, steps=3, eta=0.0, seconds=5.0, representation=rep, similarity=similarity,
        ready_at=utcnow(),
    )
    session.add(clip)
    session.flush()
    return clip


def _rate(session, clip: Clip, listener, stars: float, fraction: float = 1.0,
          branch: DispatchBranch = DispatchBranch.GENERATE) -> None:
    d = Delivery(clip_id=clip.id, listener_id=listener.id, branch=branch,
                 input_song_ids=[], listened_seconds=5.0 * fraction)
    session.add(d)
    session.flush()
    session.add(Rating(delivery=d, half_stars=int(stars * 2), listened_fraction=fraction))


def test_cold_start_then_update_rule(ctx, make_listener) -> None:
    ctx.settings.curation_rule = "paper"  # the paper's rule: R = mean(r, l, S) vs baseline
    v0 = versions.ensure_base_version(ctx)
    raters = [make_listener() for _ in range(3)]
    with ctx.session() as session:
        good = _clip(session, v0.id, _rep(ctx, 1))
        bad = _clip(session, v0.id, _rep(ctx, 2))
        few = _clip(session, v0.id, _rep(ctx, 3))
        for r in raters:
            _rate(session, good, r, 5.0)
            _rate(session, bad, r, 1.0, fraction=0.6)
        _rate(session, few, raters[0], 5.0)
        ids = good.id, bad.id, few.id
    ctx.settings.cold_start_top_n = 1
    first = curation.curate(ctx)
    assert first.cold_start and first.admitted == (ids[0],)  # top-1 by R with ≥ 3 ratings
    assert first.pending == 1  # the clip with one rating waits
    with ctx.reading() as session:
        g, b = session.get(Clip, ids[0]), session.get(Clip, ids[1])
        assert g.rating_score > b.rating_score and 0 <= b.confidence < g.confidence <= 1
        assert session.scalar(sa.select(sa.func.count()).select_from(RaterReputation)) == 3

    # A new clip joins only when its R beats that of its nearest dataset clip.
    with ctx.session() as session:
        better = _clip(session, v0.id, _rep(ctx, 4), similarity=0.9)
        worse = _clip(session, v0.id, _rep(ctx, 5), similarity=0.1)
        for r in raters:
            _rate(session, better, r, 5.0)
            _rate(session, worse, r, 2.0)
        better_id, worse_id = better.id, worse.id
    second = curation.curate(ctx)
    assert not second.cold_start
    assert better_id in second.admitted and worse_id not in second.admitted
    rows = curation.list_dataset(ctx, include_removed=False)
    assert {r.clip_id for r in rows} == {ids[0], better_id}


def test_purge_keeps_the_better_near_duplicate_and_says_why(ctx, make_listener) -> None:
    v0 = versions.ensure_base_version(ctx)
    rep = _rep(ctx, 7)
    with ctx.session() as session:
        a = _clip(session, v0.id, rep)
        b = _clip(session, v0.id, list(rep))  # identical representation: S = 1
        c = _clip(session, v0.id, _rep(ctx, 8))
        old = utcnow() - dt.timedelta(days=400)
        session.add_all([
            DatasetEntry(clip_id=a.id, rating_score=0.8, confidence=0.9),
            DatasetEntry(clip_id=b.id, rating_score=0.6, confidence=0.9),
            DatasetEntry(clip_id=c.id, rating_score=0.7, confidence=0.9, added_at=old),
        ])
        a_id, b_id, c_id = a.id, b.id, c.id
    result = curation.purge(ctx)
    removed = {cid: reason for cid, reason, _ in result.removed}
    assert removed == {b_id: RemovalReason.DUPLICATE.value, c_id: RemovalReason.TOO_OLD.value}
    with ctx.reading() as session:
        entry_b = session.scalar(sa.select(DatasetEntry).where(DatasetEntry.clip_id == b_id))
        entry_a = session.scalar(sa.select(DatasetEntry).where(DatasetEntry.clip_id == a_id))
        assert entry_b.removed_at is not None and entry_b.replaced_by_id == entry_a.id
        assert entry_b.removal_detail
        assert entry_a.removed_at is None


def test_report_counts_match_ratings_and_csv_has_every_rating(ctx, make_listener) -> None:
    v0 = versions.ensure_base_version(ctx)
    raters = [make_listener() for _ in range(4)]
    stars = [[3.0, 3.5, 2.5, 4.0], [2.0, 3.0, 3.0, 2.5]]
    with ctx.session() as session:
        for k, row in enumerate(stars):
            clip = _clip(session, v0.id, _rep(ctx, 20 + k))
            for r, s in zip(raters, row, strict=True):
                _rate(session, clip, r, s)
    result = report.build_report(ctx, n_resamples=200)
    overall = {c.version_id: c for c in result.table.overall}
    assert overall["v0"].count == 8
    assert overall["v0"].mean == pytest.approx(np.mean(stars))
    csv_text = report.ratings_csv(ctx)
    lines = csv_text.strip().splitlines()
    assert lines[0].split(",")[:4] == ["rating_id", "created_at", "rater", "stars"]
    assert len(lines) == 9
    assert all(r.email not in csv_text for r in raters)  # pseudonymous


def test_review_ratings_count_for_the_clip_version_and_show_in_the_split(
    ctx, make_listener
) -> None:
    v0 = versions.ensure_base_version(ctx)
    owner, *reviewers = [make_listener() for _ in range(3)]
    with ctx.session() as session:
        clip = _clip(session, v0.id, _rep(ctx, 30))
        _rate(session, clip, owner, 2.0)
        for r in reviewers:
            _rate(session, clip, r, 4.0, branch=DispatchBranch.REVIEW)
    result = report.build_report(ctx, n_resamples=200)
    assert {(c.version_id, c.count) for c in result.table.overall} == {("v0", 3)}
    assert result.by_branch["new"].overall[0].count == 3
    assert result.by_branch["review"].overall[0].mean == pytest.approx(4.0)
    assert result.by_branch["generate"].overall[0].mean == pytest.approx(2.0)
    assert "baseline" not in result.by_branch
    text = report.format_table(result)
    assert "branch review: v0 4.00 (n=2)" in text


def test_report_intervals_do_not_depend_on_the_raters_pseudonyms(ctx, make_listener) -> None:
    """Pseudonyms are random per account: the bootstrap must not resample in their order,
    or the same ratings give other intervals on another installation."""
    from encore.store import ModelVersion, User

    v0 = versions.ensure_base_version(ctx)
    with ctx.session() as session:
        v1 = ModelVersion(name="v1", folder=v0.folder)
        session.add(v1)
        session.flush()
        v1_id = v1.id
    raters = [make_listener() for _ in range(8)]
    rng = np.random.default_rng(5)
    with ctx.session() as session:
        for k, vid in enumerate([v0.id] * 4 + [v1_id] * 4):
            clip = _clip(session, vid, _rep(ctx, 40 + k))
            for r in raters:
                _rate(session, clip, r, float(rng.integers(2, 11)) / 2)

    def intervals() -> list[tuple[float, float, float]]:
        rep = report.build_report(ctx, n_resamples=300)
        return [(c.difference, c.ci_low, c.ci_high) for c in rep.table.changes]

    before = intervals()
    with ctx.session() as session:  # another installation: other pseudonyms, in other order
        users = session.scalars(sa.select(User).where(User.id.in_([r.id for r in raters]))).all()
        for k, u in enumerate(sorted(users, key=lambda u: u.id)):
            u.rater_id = f"{(7 * k + 3) % 8:02d}-other"  # sorted order unlike the ids'
    assert intervals() == before
    assert np.isfinite(before[0][1])


def test_centred_rule_judges_a_clip_against_its_songs_usual_not_its_closeness(
    ctx, make_listener, song_bytes
) -> None:
    from encore.services import songs
    from encore.store import ClipInput

    ctx.settings.curation_rule = "centred"
    v0 = versions.ensure_base_version(ctx)
    raters = [make_listener() for _ in range(3)]
    song = songs.upload_song(ctx, owner=raters[0], filename="s.wav", data=song_bytes(3))
    with ctx.session() as session:
        clips = []
        for k, sim in enumerate((0.99, 0.3, 0.3, 0.3, 0.3)):
            c = _clip(session, v0.id, _rep(ctx, 10 + k), similarity=sim)
            c.inputs = [ClipInput(position=0, song_id=song.id, weight=1.0)]
            clips.append(c)
        copy, liked, usual_a, usual_b, disliked = clips
        # every clip of this song usually gets ~3.5; "liked" gets 5, "disliked" 2; the
        # near-copy of the song gets the usual rating: closeness earns it nothing
        for r in raters:
            _rate(session, copy, r, 3.5)
            _rate(session, liked, r, 5.0)
            _rate(session, usual_a, r, 3.5)
            _rate(session, usual_b, r, 3.5)
            _rate(session, disliked, r, 2.0)
        ids = [c.id for c in clips]
    result = curation.curate(ctx)
    assert result.admitted == (ids[1],)
    assert result.rejected == 4


def test_feedback_config_takes_each_setting_by_its_name(ctx) -> None:
    s = ctx.settings
    s.dispatch_review_share, s.curation_min_ratings, s.purge_similarity = 0.2, 5, 0.9
    s.dataset_max_size, s.dataset_max_age_days = 50, 0.0  # 0: no age rule
    cfg = ctx.feedback_config()
    assert (cfg.dispatch_review_share, cfg.curation_min_ratings, cfg.purge_similarity,
            cfg.dataset_max_size, cfg.min_listen_seconds) == (0.2, 5, 0.9, 50, 0.5)
    assert cfg.dataset_max_age_days is None
    s.dataset_max_age_days = 30.0
    assert ctx.feedback_config().dataset_max_age_days == 30.0
