"""Blends through the services: each song's share (weights), the strength, the checks
(issue 19), with real generation by a tiny seeded model (immediate jobs)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from encore.errors import InvalidInput
from encore.services import music, songs
from encore.store import Clip, Delivery


@pytest.fixture
def two_songs(ctx, make_listener, song_bytes):
    ctx.settings.baseline_probability = 0.0  # every request makes a new clip
    ctx.settings.dispatch_review_share = 0.0
    listener = make_listener()
    a = songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(41))
    b = songs.upload_song(ctx, owner=listener, filename="b.wav", data=song_bytes(42))
    return listener, a, b


def _clip(ctx, delivery_id: int) -> tuple[Clip, list[float]]:
    with ctx.reading() as session:
        clip = session.get(Clip, session.get(Delivery, delivery_id).clip_id)
        weights = [i.weight for i in clip.inputs]
        session.expunge(clip)
    return clip, weights


def test_a_blend_keeps_the_listener_s_weights_and_closeness(ctx, two_songs) -> None:
    listener, a, b = two_songs
    d = music.request_music(ctx, listener=listener, song_ids=[a.id, b.id], weights=[3, 1],
                            closeness=0.4)
    clip, weights = _clip(ctx, d.id)
    assert weights == pytest.approx([0.75, 0.25])
    assert clip.strength == pytest.approx(0.6)
    assert clip.sampler == "ddim" and clip.steps == ctx.settings.merge_steps  # mix-inverted
    assert clip.similarity is not None
    # equal shares when none are given
    d = music.request_music(ctx, listener=listener, song_ids=[b.id, a.id])
    assert _clip(ctx, d.id)[1] == [0.5, 0.5]


@pytest.mark.parametrize(
    ("ids", "weights", "needle"),
    [
        (2, [1.0], "got 1 weights for 2 songs"),
        (2, [1.0, -0.5], "-0.5"),
        (2, [1.0, float("nan")], "nan"),
        (2, [1.0, float("inf")], "inf"),
        (2, [0.0, 0.0], "at least one weight must be above 0"),
        (1, [1.0], "blend of several songs"),
    ],
)
def test_bad_weights_are_refused_and_nothing_is_made(
    ctx, two_songs, ids: int, weights: list[float], needle: str
) -> None:
    listener, a, b = two_songs
    with ctx.reading() as session:
        before = session.scalar(sa.select(sa.func.count()).select_from(Delivery))
    with pytest.raises(InvalidInput, match=needle):
        music.request_music(ctx, listener=listener, song_ids=[a.id, b.id][:ids], weights=weights)
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == before
