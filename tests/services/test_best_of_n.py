"""Best-of-n serving, the taste model's snapshots and paired deliveries, through the services
with real generation by a tiny seeded model (immediate jobs)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from encore.errors import Conflict
from encore.services import music, songs, taste, versions
from encore.store import Clip, Delivery, ModelVersion, TasteModel, VersionStatus


@pytest.fixture
def listener_with_song(ctx, make_listener, song_bytes):
    listener = make_listener()
    s1 = songs.upload_song(ctx, owner=listener, filename="one.wav", data=song_bytes(21))
    return listener, s1


def _no_review_or_baseline(ctx) -> None:
    ctx.settings.baseline_probability = 0.0
    ctx.settings.dispatch_review_share = 0.0


def _candidates(session, delivery: Delivery) -> list[Clip]:
    return list(session.scalars(sa.select(Clip).where(Clip.request_id == delivery.request_id)
                                .order_by(Clip.candidate_index)))


def _rate(ctx, listener, delivery_id: int, stars: float) -> None:
    with ctx.session() as session:
        d = session.get(Delivery, delivery_id)
        d.opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    music.record_listen(ctx, listener=listener, delivery_id=delivery_id, ranges=[(0.0, 1.0)])
    music.rate(ctx, listener=listener, delivery_id=delivery_id, stars=stars)


def test_v0_renders_n_candidates_in_one_job_and_serves_a_uniform_pick(ctx, listener_with_song):
    _no_review_or_baseline(ctx)
    listener, song = listener_with_song
    delivery = music.request_music(ctx, listener=listener, song_ids=[song.id])
    view = music.delivery_status(ctx, listener=listener, delivery_id=delivery.id)
    assert view.status == "ready"
    with ctx.reading() as session:
        d = session.get(Delivery, delivery.id)
        cands = _candidates(session, d)
        assert len(cands) == ctx.settings.best_of_n == 4
        assert len({c.seed for c in cands}) == 4 and len({c.job_id for c in cands}) == 1
        # the solver is recorded so that each candidate replays exactly
        assert {c.sampler for c in cands} == {ctx.settings.sampler}
        assert {c.steps for c in cands} == {ctx.settings.inference_steps}
        assert all(c.status.value == "ready" and c.descriptors for c in cands)
        served = [c for c in cands if c.served]
        assert len(served) == 1 and d.clip_id == served[0].id
        # v0 serves without the taste model: a uniform pick, propensity 1/n
        assert d.selection == "explore" and d.propensity == pytest.approx(0.25)
        # the unserved candidates are kept (for preference training) but never reviewed
        unserved = {c.id for c in cands if not c.served}
        ids = music._review_ids(ctx, session, listener, versions.active_weights(session))
        assert not unserved & set(ids)


def test_taste_snapshot_is_fitted_stored_and_used_by_a_selecting_version(
    ctx, listener_with_song
):
    _no_review_or_baseline(ctx)
    listener, song = listener_with_song
    with pytest.raises(Conflict):
        taste.fit_snapshot(ctx)
    for stars in (2.0, 4.0, 3.0, 5.0, 1.5):
        d = music.request_music(ctx, listener=listener, song_ids=[song.id])
        _rate(ctx, listener, d.id, stars)
    row = taste.fit_snapshot(ctx, reason="manual")
    assert row.n_ratings == 5 and row.n_listeners == 1
    model = taste.load_snapshot(ctx, row.id, row.blob_key)
    assert model.listeners[listener.id].n_ratings == 5

    with ctx.session() as session:
        for v in session.scalars(sa.select(ModelVersion)):
            v.taste_selection = True
    ctx.settings.explore_epsilon = 0.0
    d = music.request_music(ctx, listener=listener, song_ids=[song.id])
    with ctx.reading() as session:
        d = session.get(Delivery, d.id)
        cands = _candidates(session, d)
        preds = [c.predicted_stars for c in cands]
        assert all(p is not None for p in preds)
        assert d.selection == "taste" and d.propensity == pytest.approx(1.0)
        assert d.clip_id == cands[int(np.argmax(preds))].id
        assert d.taste_model_id == row.id
        assert d.predicted_stars == pytest.approx(max(preds))


def test_online_refit_after_enough_new_ratings(ctx, listener_with_song):
    _no_review_or_baseline(ctx)
    listener, song = listener_with_song
    ctx.settings.taste_refit_ratings = 2
    d = music.request_music(ctx, listener=listener, song_ids=[song.id])  # nothing to fit yet
    for stars in (2.0, 4.0, 3.0):
        _rate(ctx, listener, d.id, stars)
        # the worker fits a first snapshot as soon as a rating exists, then refits after
        # every 2 new ones
        d = music.request_music(ctx, listener=listener, song_ids=[song.id])
    with ctx.reading() as session:
        rows = list(session.scalars(sa.select(TasteModel).order_by(TasteModel.id)))
    assert [(r.reason, r.n_ratings) for r in rows] == [("online", 1), ("online", 3)]


def test_a_pair_serves_the_same_song_seeds_and_strength_from_the_other_version(
    ctx, listener_with_song, tiny_models
):
    _no_review_or_baseline(ctx)
    ctx.settings.pair_share = 1.0
    listener, song = listener_with_song
    versions.ensure_base_version(ctx)
    with ctx.session() as session:
        v0 = session.scalars(sa.select(ModelVersion)).one()
        v1 = ModelVersion(name="v1", folder=v0.folder, parent_id=v0.id,
                          status=VersionStatus.ACTIVE, ab_weight=1.0)
        session.add(v1)
    first = music.request_music(ctx, listener=listener, song_ids=[song.id], closeness=0.2)
    second = music.request_music(ctx, listener=listener, song_ids=[song.id], closeness=0.9)
    with ctx.reading() as session:
        a, b = session.get(Delivery, first.id), session.get(Delivery, second.id)
        assert a.pair_id and a.pair_id == b.pair_id and not a.pair_open and not b.pair_open
        ca, cb = _candidates(session, a), _candidates(session, b)
        assert [c.seed for c in ca] == [c.seed for c in cb]
        # and the same part of the song per candidate (no start chosen: distinct windows)
        assert [c.inputs[0].offset_seconds for c in ca] == [c.inputs[0].offset_seconds for c in cb]
        # the pair keeps the first request's strength, not the second's closeness
        assert [c.strength for c in cb] == pytest.approx([0.8] * len(cb))
        assert ca[0].model_version_id != cb[0].model_version_id
        assert a.pair_version_id == cb[0].model_version_id


def _candidate_starts(ctx, listener, song, **request) -> list[float]:
    d = music.request_music(ctx, listener=listener, song_ids=[song.id], **request)
    with ctx.reading() as session:
        return [c.inputs[0].offset_seconds for c in _candidates(session, session.get(Delivery, d.id))]


def test_candidates_come_from_distinct_windows_unless_a_start_is_chosen(ctx, listener_with_song):
    _no_review_or_baseline(ctx)
    listener, song = listener_with_song
    assert ctx.settings.candidate_windows == "distinct"
    starts = _candidate_starts(ctx, listener, song)
    assert len(starts) == 4 and None not in starts
    assert len(set(starts)) > 1  # the test song holds more than one disjoint window
    # the first is the window a single variation uses (the loudest)
    ctx.settings.best_of_n = 1
    assert _candidate_starts(ctx, listener, song) == [starts[0]]
    ctx.settings.best_of_n = 4
    # a chosen start applies to every candidate; "same" puts them all at the loudest window
    assert _candidate_starts(ctx, listener, song, start=0.0) == [0.0] * 4
    ctx.settings.candidate_windows = "same"
    assert _candidate_starts(ctx, listener, song) == [starts[0]] * 4


def test_a_blend_is_one_candidate_rendered_with_ddim_at_the_merge_steps(
    ctx, make_listener, song_bytes
):
    _no_review_or_baseline(ctx)
    listener = make_listener()
    a = songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(31))
    b = songs.upload_song(ctx, owner=listener, filename="b.wav", data=song_bytes(32))
    d = music.request_music(ctx, listener=listener, song_ids=[a.id, b.id])
    with ctx.reading() as session:
        d = session.get(Delivery, d.id)
        (clip,) = _candidates(session, d)
        # the mix-inverted blend (encore.diffusion.blend) inverts and decodes with DDIM
        assert clip.sampler == "ddim" and clip.steps == ctx.settings.merge_steps
        assert clip.strength == pytest.approx(ctx.settings.default_strength)
        assert d.selection == "single" and d.propensity == 1.0 and clip.served


def test_no_candidate_is_ready_before_the_served_one_is_chosen(ctx, listener_with_song, monkeypatch):
    """The delivery points at its first candidate until the choice is made: were the candidates
    ready before, a polling listener could play one and have its rating counted for another."""
    from encore.services import generation

    _no_review_or_baseline(ctx)
    listener, song = listener_with_song
    seen: list[tuple[str, list[str]]] = []
    real_choose = generation._choose

    def watching_choose(ctx_, clip_ids, **kwargs):
        with ctx_.reading() as session:
            statuses = [session.get(Clip, c).status.value for c in clip_ids]
            delivery_id = session.scalar(sa.select(Delivery.id).where(
                Delivery.request_id == session.get(Clip, clip_ids[0]).request_id))
        view = music.delivery_status(ctx_, listener=listener, delivery_id=delivery_id)
        seen.append((view.status, statuses))
        real_choose(ctx_, clip_ids, **kwargs)

    monkeypatch.setattr(generation, "_choose", watching_choose)
    delivery = music.request_music(ctx, listener=listener, song_ids=[song.id])
    assert len(seen) == 1
    status_before, candidates_before = seen[0]
    assert status_before != "ready" and "ready" not in candidates_before
    view = music.delivery_status(ctx, listener=listener, delivery_id=delivery.id)
    assert view.status == "ready"
    with ctx.reading() as session:
        d = session.get(Delivery, delivery.id)
        cands = _candidates(session, d)
        assert all(c.status.value == "ready" for c in cands)
        assert d.clip_id == next(c.id for c in cands if c.served)
