"""Requesting music, listening and rating through the services, with real generation by a
tiny seeded model (immediate jobs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from encore.errors import Conflict, InvalidInput, PermissionDenied
from encore.services import music, songs
from encore.store import (
    Clip,
    ClipStatus,
    DatasetEntry,
    Delivery,
    DispatchBranch,
    ModelVersion,
    Rating,
    VersionStatus,
)


@pytest.fixture
def listener_with_songs(ctx, make_listener, song_bytes):
    listener = make_listener()
    s1 = songs.upload_song(ctx, owner=listener, filename="one.wav", data=song_bytes(11))
    s2 = songs.upload_song(ctx, owner=listener, filename="two.wav", data=song_bytes(12))
    return listener, [s1, s2]


def _backdate_open(ctx, delivery_id: int, seconds: float) -> None:
    """Pretend the player opened the clip ``seconds`` ago (the wall-clock clamp)."""
    with ctx.session() as session:
        d = session.get(Delivery, delivery_id)
        d.opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


@pytest.fixture
def opened_delivery(ctx, listener_with_songs):
    """(listener, delivery): a variation of the listener's first song, opened a minute ago
    (listening up to a minute is within the wall clock)."""
    listener, (s1, _) = listener_with_songs
    delivery = music.request_music(ctx, listener=listener, song_ids=[s1.id])
    _backdate_open(ctx, delivery.id, 60)
    return listener, delivery


def test_variation_is_generated_and_playable(ctx, listener_with_songs) -> None:
    listener, (s1, _) = listener_with_songs
    delivery = music.request_music(ctx, listener=listener, song_ids=[s1.id], closeness=0.4)
    view = music.delivery_status(ctx, listener=listener, delivery_id=delivery.id)
    assert view.status == "ready" and view.progress == 1.0
    assert view.clip_seconds == pytest.approx(ctx.settings.clip_seconds, abs=0.1)
    assert view.input_titles == ("one",)
    with ctx.reading() as session:
        clip = session.get(Clip, session.get(Delivery, delivery.id).clip_id)
        assert clip.strength == pytest.approx(0.6)
        assert clip.model_version_id is not None and clip.seed is not None
        assert 0.0 <= clip.similarity <= 1.0
    audio = music.clip_media(ctx, listener=listener, delivery_id=delivery.id, kind="audio")
    png = music.clip_media(ctx, listener=listener, delivery_id=delivery.id, kind="spectrogram")
    assert audio.path.read_bytes()[:4] == b"OggS"
    assert png.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_blend_of_two_songs_records_both_inputs(ctx, listener_with_songs) -> None:
    listener, (s1, s2) = listener_with_songs
    delivery = music.request_music(ctx, listener=listener, song_ids=[s2.id, s1.id])
    with ctx.reading() as session:
        clip = session.get(Clip, session.get(Delivery, delivery.id).clip_id)
        assert clip.status is ClipStatus.READY
        assert [i.song_id for i in clip.inputs] == [s2.id, s1.id]
        assert [i.weight for i in clip.inputs] == [0.5, 0.5]


def test_rating_needs_the_minimum_listen_and_counts_once(ctx, opened_delivery) -> None:
    listener, delivery = opened_delivery
    with pytest.raises(InvalidInput, match="listen to at least 0.5 s"):
        music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=4)
    state = music.record_listen(ctx, listener=listener, delivery_id=delivery.id, ranges=[(0.0, 0.3)])
    assert not state.rating_allowed and state.listened_seconds == pytest.approx(0.3)
    # Overlapping and repeated ranges count once; past the clip's end is clamped.
    state = music.record_listen(
        ctx, listener=listener, delivery_id=delivery.id, ranges=[(0.2, 0.6), (0.1, 0.3), (0.9, 9.0)]
    )
    assert state.rating_allowed
    assert state.listened_seconds == pytest.approx(0.6 + (1.0 - 0.9), abs=0.02)
    with pytest.raises(InvalidInput, match="5.3"):
        music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=5.3)
    rating = music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=4.5)
    assert rating.stars == 4.5
    assert rating.listened_fraction == pytest.approx(state.fraction)
    with pytest.raises(Conflict, match="already rated"):
        music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=3)


def test_listening_cannot_outrun_the_clock(ctx, listener_with_songs) -> None:
    listener, (s1, _) = listener_with_songs
    delivery = music.request_music(ctx, listener=listener, song_ids=[s1.id])
    music.clip_media(ctx, listener=listener, delivery_id=delivery.id, kind="audio")  # opens it now
    state = music.record_listen(ctx, listener=listener, delivery_id=delivery.id, ranges=[(0.0, 1.0)])
    # One second of audio reported a moment after opening: only the elapsed wall time
    # (plus the configured slack) counts.
    assert state.listened_seconds <= ctx.feedback_config().wall_clock_slack_seconds + 0.5


def test_listeners_cannot_touch_each_others_deliveries(ctx, listener_with_songs, make_listener) -> None:
    listener, (s1, _) = listener_with_songs
    other = make_listener("other")
    delivery = music.request_music(ctx, listener=listener, song_ids=[s1.id])
    with pytest.raises(PermissionDenied):
        music.delivery_status(ctx, listener=other, delivery_id=delivery.id)
    with pytest.raises(PermissionDenied):
        music.request_music(ctx, listener=other, song_ids=[s1.id])


@pytest.mark.parametrize(
    ("song_ids", "closeness", "message"),
    [([], None, "at least one song"), ([1, 1], None, "duplicates"), ([1], 1.5, "closeness=1.5")],
)
def test_request_validation(ctx, listener_with_songs, song_ids, closeness, message) -> None:
    listener, _ = listener_with_songs
    with pytest.raises(InvalidInput, match=message):
        music.request_music(ctx, listener=listener, song_ids=song_ids, closeness=closeness)


def test_baseline_branch_serves_the_nearest_unrated_dataset_clip(
    ctx, listener_with_songs, make_listener, song_bytes
) -> None:
    listener, (s1, s2) = listener_with_songs
    made = [music.request_music(ctx, listener=listener, song_ids=[s.id]) for s in (s1, s2, s1)]
    with ctx.session() as session:
        clip_ids = [session.get(Delivery, d.id).clip_id for d in made]
        for cid in clip_ids:
            session.add(DatasetEntry(clip_id=cid, rating_score=0.5, confidence=0.5))
    ctx.settings.baseline_probability = 1.0
    ctx.settings.dispatch_review_share = 0.0
    other = make_listener()
    theirs = songs.upload_song(ctx, owner=other, filename="x.wav", data=song_bytes(99))
    served = []
    for _ in range(3):
        d = music.request_music(ctx, listener=other, song_ids=[theirs.id])
        with ctx.reading() as session:
            row = session.get(Delivery, d.id)
            served.append((row.branch, row.clip_id))
        _backdate_open(ctx, d.id, 60)
        music.record_listen(ctx, listener=other, delivery_id=d.id, ranges=[(0, 1)])
        music.rate(ctx, listener=other, delivery_id=d.id, stars=3)
    # Each request served a different dataset clip (never one already rated), all baselines.
    assert [b for b, _ in served] == [DispatchBranch.BASELINE] * 3
    assert sorted(c for _, c in served) == sorted(clip_ids)
    # With every dataset clip rated, dispatch falls back to generating.
    d = music.request_music(ctx, listener=other, song_ids=[theirs.id])
    with ctx.reading() as session:
        assert session.get(Delivery, d.id).branch is DispatchBranch.GENERATE
        assert session.scalar(sa.select(sa.func.count()).select_from(Rating)) == 3



def _listen_and_rate(ctx, listener, delivery_id: int, stars: float) -> None:
    _backdate_open(ctx, delivery_id, 60)
    music.record_listen(ctx, listener=listener, delivery_id=delivery_id, ranges=[(0, 1)])
    music.rate(ctx, listener=listener, delivery_id=delivery_id, stars=stars)


def test_review_branch_serves_a_new_clip_to_other_listeners_until_it_has_m_ratings(
    ctx, listener_with_songs, make_listener, song_bytes
) -> None:
    owner, (s1, _) = listener_with_songs
    ctx.settings.baseline_probability = 0.0
    ctx.settings.dispatch_review_share = 1.0  # every request tries the review branch
    first = music.request_music(ctx, listener=owner, song_ids=[s1.id])  # nothing to review yet
    with ctx.reading() as session:
        row = session.get(Delivery, first.id)
        assert row.branch is DispatchBranch.GENERATE
        new_clip = row.clip_id
    _listen_and_rate(ctx, owner, first.id, 4.0)

    others = [make_listener(f"r{k}") for k in range(3)]
    served = []
    for k, other in enumerate(others):
        song = songs.upload_song(ctx, owner=other, filename=f"{k}.wav", data=song_bytes(40 + k))
        d = music.request_music(ctx, listener=other, song_ids=[song.id])
        with ctx.reading() as session:
            row = session.get(Delivery, d.id)
            served.append((row.branch, row.clip_id))
        view = music.delivery_status(ctx, listener=other, delivery_id=d.id)
        # the same page as any clip: ready, the listener's own song as the input
        assert view.status == "ready" and view.input_song_ids == (song.id,)
        assert view.input_titles == (song.title,)
    # 1 rating + 2 deliveries awaiting a rating = m = 3: the third listener gets a new clip
    assert served[:2] == [(DispatchBranch.REVIEW, new_clip)] * 2
    assert served[2][0] is DispatchBranch.GENERATE and served[2][1] != new_clip
    # the reviewers rate it like any clip; the clip now has its m ratings
    with ctx.reading() as session:
        review_ids = [d.id for d in session.scalars(
            sa.select(Delivery).where(Delivery.branch == DispatchBranch.REVIEW))]
    for other, did in zip(others[:2], review_ids, strict=True):
        _listen_and_rate(ctx, other, did, 3.0)
    with ctx.reading() as session:
        assert session.scalar(
            sa.select(sa.func.count()).select_from(Rating).where(Rating.clip_id == new_clip)) == 3
    # the owner is never served their own clip for review (nor anyone a clip twice)
    again = music.request_music(ctx, listener=owner, song_ids=[s1.id])
    with ctx.reading() as session:
        row = session.get(Delivery, again.id)
        assert row.clip_id != new_clip
        assert row.branch is DispatchBranch.REVIEW  # the third listener's new clip is pending
        assert row.clip_id == served[2][1]


def test_review_branch_skips_clips_of_versions_no_longer_served(
    ctx, listener_with_songs, make_listener, song_bytes
) -> None:
    owner, (s1, _) = listener_with_songs
    ctx.settings.baseline_probability = 0.0
    ctx.settings.dispatch_review_share = 1.0
    first = music.request_music(ctx, listener=owner, song_ids=[s1.id])
    with ctx.session() as session:
        clip = session.get(Delivery, first.id).clip
        old_version = clip.model_version_id
        session.get(ModelVersion, old_version).ab_weight = 0.0  # unserved from now on
        session.add(ModelVersion(name="v1", status=VersionStatus.ACTIVE, ab_weight=1.0,
                                 folder=session.get(ModelVersion, old_version).folder))
    other = make_listener("other")
    song = songs.upload_song(ctx, owner=other, filename="o.wav", data=song_bytes(77))
    d = music.request_music(ctx, listener=other, song_ids=[song.id])
    with ctx.reading() as session:
        row = session.get(Delivery, d.id)
        assert row.branch is DispatchBranch.GENERATE and row.clip.model_version_id != old_version


def test_branch_shares_must_leave_room_for_each_other(tmp_path) -> None:
    from pydantic import ValidationError

    from encore.config import Settings

    with pytest.raises(ValidationError, match=r"baseline_probability=0.8 \+ dispatch_review_share=0.3"):
        Settings(data_dir=tmp_path, baseline_probability=0.8)
    assert Settings(data_dir=tmp_path, baseline_probability=0.7).dispatch_review_share == 0.3


def _race_after_first_read(monkeypatch, other_request: Callable[[Any, int], object]) -> list[bool]:
    """Make ``other_request(listener, delivery_id)`` run once, between the next read of a
    delivery's listening state (``music._heard``) and the write that follows it; the list
    returned is non-empty once it has run."""
    real_heard = music._heard
    raced: list[bool] = []

    def heard_then_race(session, who, delivery_id):
        seen = real_heard(session, who, delivery_id)
        if not raced:
            raced.append(True)
            other_request(who, delivery_id)
        return seen

    monkeypatch.setattr(music, "_heard", heard_then_race)
    return raced


def test_a_heartbeat_that_lands_between_read_and_write_still_counts(
    ctx, opened_delivery, monkeypatch
) -> None:
    """Concurrent heartbeats of one delivery: the union includes both, whichever wins."""
    listener, delivery = opened_delivery
    # another request reports [0.5, 0.9] after our read, before our write
    raced = _race_after_first_read(monkeypatch, lambda who, delivery_id: music.record_listen(
        ctx, listener=who, delivery_id=delivery_id, ranges=[(0.5, 0.9)]))
    state = music.record_listen(ctx, listener=listener, delivery_id=delivery.id, ranges=[(0.0, 0.3)])
    assert raced
    assert state.listened_seconds == pytest.approx(0.3 + 0.4)
    with ctx.reading() as session:
        assert session.get(Delivery, delivery.id).listened_seconds == pytest.approx(0.7)


def test_a_rating_that_lands_between_read_and_write_is_refused(
    ctx, opened_delivery, monkeypatch
) -> None:
    listener, delivery = opened_delivery
    music.record_listen(ctx, listener=listener, delivery_id=delivery.id, ranges=[(0.0, 1.0)])
    _race_after_first_read(monkeypatch, lambda who, delivery_id: music.rate(
        ctx, listener=who, delivery_id=delivery_id, stars=2))
    with pytest.raises(Conflict, match="already rated"):
        music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=5)
    with ctx.reading() as session:
        assert [r.half_stars for r in session.scalars(sa.select(Rating))] == [4]
