"""Longer pieces and the part of the song they start from, through the services (real
generation by a tiny seeded model, immediate jobs, SQLite and real blobs)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
import sqlalchemy as sa

from encore.audio.decode import load_audio
from encore.errors import InvalidInput
from encore.services import music, songs
from encore.store import Clip, ClipInput, Delivery


@pytest.fixture
def piece_ctx(ctx):
    ctx.settings.baseline_probability = 0.0
    ctx.settings.dispatch_review_share = 0.0
    ctx.settings.clip_seconds = 3.0  # 3 s windows: a 6 s piece takes three
    ctx.settings.piece_overlap_seconds = 0.5
    ctx.settings.piece_crossfade_seconds = 0.05
    return ctx


@pytest.fixture
def listener_song(piece_ctx, make_listener, song_bytes):
    listener = make_listener()
    song = songs.upload_song(piece_ctx, owner=listener, filename="tune.wav",
                             data=song_bytes(3, seconds=4.0))
    return listener, song


def _candidates(session, delivery_id: int) -> tuple[Delivery, list[Clip]]:
    d = session.get(Delivery, delivery_id)
    clips = list(session.scalars(sa.select(Clip).where(Clip.request_id == d.request_id)
                                 .order_by(Clip.candidate_index)))
    return d, clips


def test_a_six_second_piece_from_a_marked_start(piece_ctx, listener_song) -> None:
    ctx = piece_ctx
    listener, song = listener_song
    delivery = music.request_music(ctx, listener=listener, song_ids=[song.id], seconds=6,
                                   start=2.5)
    view = music.delivery_status(ctx, listener=listener, delivery_id=delivery.id)
    assert view.status == "ready"
    assert view.clip_seconds == pytest.approx(6.0, abs=0.01)
    with ctx.reading() as session:
        d, cands = _candidates(session, delivery.id)
        assert (d.piece_seconds, d.start_seconds, d.loop) == (6.0, 2.5, False)
        assert len(cands) == ctx.settings.best_of_n
        served = [c for c in cands if c.served]
        assert len(served) == 1 and d.clip_id == served[0].id
        piece = served[0]
        assert piece.seconds == pytest.approx(6.0, abs=0.01)
        # the start the listener marked is where the piece began
        inp = session.scalars(sa.select(ClipInput).where(ClipInput.clip_id == piece.id)).one()
        assert inp.offset_seconds == pytest.approx(2.5, abs=1e-3)
        # the other candidates are what was made of them: the first window each
        for c in cands:
            if not c.served:
                assert c.seconds < 3.1 and c.status.value == "ready" and c.mel_key
        assert piece.similarity is not None and piece.descriptors and piece.representation
        audio_key, mel_key = piece.audio_key, piece.mel_key
    audio = load_audio(ctx.blobs.get(audio_key), sr=22050, max_seconds=None)
    assert audio.shape[0] / 22050 == pytest.approx(6.0, abs=0.05)
    mel = np.load(io.BytesIO(ctx.blobs.get(mel_key)))
    assert mel.shape[1] > 6.0 * 22050 / 512  # the whole piece's spectrogram, for training crops
    # listening and rating work over the whole piece
    with ctx.session() as session:
        session.get(Delivery, delivery.id).opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(
            seconds=60)
    state = music.record_listen(ctx, listener=listener, delivery_id=delivery.id,
                                ranges=[(0.0, 6.0)])
    assert state.fraction == pytest.approx(1.0, abs=0.01)
    rating = music.rate(ctx, listener=listener, delivery_id=delivery.id, stars=4.0)
    assert rating.listened_fraction == pytest.approx(1.0, abs=0.01)


def test_a_loop_and_the_default_length(piece_ctx, listener_song) -> None:
    ctx = piece_ctx
    listener, song = listener_song
    ctx.settings.best_of_n = 1
    delivery = music.request_music(ctx, listener=listener, song_ids=[song.id], seconds=12,
                                   loop=True)
    with ctx.reading() as session:
        d, cands = _candidates(session, delivery.id)
        assert d.loop and cands[0].loop and d.start_seconds is None
        assert cands[0].seconds == pytest.approx(12.0, abs=0.05)
        # the automatic start was recorded where the piece really began
        inp = session.scalars(sa.select(ClipInput).where(ClipInput.clip_id == cands[0].id)).one()
        assert inp.offset_seconds is not None and 0 <= inp.offset_seconds < 4.0
    plain = music.request_music(ctx, listener=listener, song_ids=[song.id])
    with ctx.reading() as session:
        d = session.get(Delivery, plain.id)
        assert d.piece_seconds == ctx.settings.default_piece_seconds and not d.loop


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": 7}, "can be 6, 12, 24 seconds long, not 7"),
        ({"seconds": 48}, "6, 12, 24 seconds long, not 48"),
        ({"seconds": float("nan")}, "must be a number"),
        ({"start": -1.0}, "number of seconds from 0"),
        ({"start": 4.5}, "past the end of 'tune'"),
        ({"seconds": 6, "loop": True}, "loop must be at least 12"),
    ],
)
def test_bad_lengths_and_starts_are_refused_with_the_reason(
    piece_ctx, listener_song, kwargs, message
) -> None:
    ctx = piece_ctx
    ctx.settings.max_piece_seconds = 24
    listener, song = listener_song
    with pytest.raises(InvalidInput, match=message):
        music.request_music(ctx, listener=listener, song_ids=[song.id], **kwargs)
    with ctx.reading() as session:  # nothing was stored
        assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0


def test_a_blend_is_a_piece_of_the_length_asked_for(piece_ctx, listener_song, song_bytes) -> None:
    ctx = piece_ctx
    listener, song = listener_song
    other = songs.upload_song(ctx, owner=listener, filename="b.wav",
                              data=song_bytes(4, seconds=5.0))
    ids = [song.id, other.id]
    # a start is a place in one song: refused for a blend, nothing stored
    with pytest.raises(InvalidInput, match="blend"):
        music.request_music(ctx, listener=listener, song_ids=ids, start=1.0)
    with pytest.raises(InvalidInput, match="6, 12"):
        music.request_music(ctx, listener=listener, song_ids=ids, seconds=7)
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
    delivery = music.request_music(ctx, listener=listener, song_ids=ids, seconds=6,
                                   weights=[0.7, 0.3])
    view = music.delivery_status(ctx, listener=listener, delivery_id=delivery.id)
    assert view.status == "ready"
    assert view.clip_seconds == pytest.approx(6.0, abs=0.01)  # two 3 s windows would not do
    with ctx.reading() as session:
        d, cands = _candidates(session, delivery.id)
        assert d.piece_seconds == 6.0 and not d.loop
        (clip,) = cands
        assert clip.seconds == pytest.approx(6.0, abs=0.01)
        # each song's stretch is recorded where it really started
        offsets = [i.offset_seconds for i in sorted(clip.inputs, key=lambda i: i.position)]
        assert all(o is not None and o >= 0 for o in offsets)
        assert [i.weight for i in sorted(clip.inputs, key=lambda i: i.position)] == \
            [pytest.approx(0.7), pytest.approx(0.3)]
        audio_key = clip.audio_key
    y = load_audio(ctx.blobs.get(audio_key), sr=22050, max_seconds=None)
    assert len(y) / 22050 == pytest.approx(6.0, abs=0.05)
    # a blend can loop, as a piece from one song can
    looped = music.request_music(ctx, listener=listener, song_ids=ids, seconds=12, loop=True)
    view = music.delivery_status(ctx, listener=listener, delivery_id=looped.id)
    assert view.status == "ready" and view.loop
    assert view.clip_seconds == pytest.approx(12.0, abs=0.05)


def test_the_song_spectrogram_is_made_once_and_deleted_with_the_song(
    piece_ctx, listener_song, make_listener
) -> None:
    from PIL import Image

    ctx = piece_ctx
    listener, song = listener_song
    songs.song_spectrogram(ctx, user=listener, song_id=song.id)
    key = songs.get_song(ctx, user=listener, song_id=song.id).spectrogram_key
    assert key
    picture = Image.open(io.BytesIO(ctx.blobs.get(key)))
    assert picture.size == (songs.SPECTROGRAM_WIDTH, songs.SPECTROGRAM_HEIGHT)
    assert np.asarray(picture).std() > 5  # not blank
    songs.song_spectrogram(ctx, user=listener, song_id=song.id)
    assert songs.get_song(ctx, user=listener, song_id=song.id).spectrogram_key == key
    stranger = make_listener()
    with pytest.raises(Exception, match="another listener"):
        songs.song_spectrogram(ctx, user=stranger, song_id=song.id)
    songs.delete_song(ctx, user=listener, song_id=song.id)
    assert not ctx.blobs.exists(key)
