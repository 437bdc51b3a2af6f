"""Taste groups stored with each taste-model snapshot, through the services (real database,
blob store and generation by the tiny seeded model)."""

from __future__ import annotations

from encore import taste as taste_logic
from encore.services import music, songs, taste
from tests.services.test_best_of_n import _no_review_or_baseline, _rate


def six_raters(ctx, make_listener, song_bytes) -> list:
    """Six listeners who each rate two variations of their own song (two ratings each, the
    groups' minimum here), in three rating patterns."""
    _no_review_or_baseline(ctx)
    ctx.settings.taste_refit_ratings = 0
    ctx.settings.taste_group_min_ratings = 2
    raters = []
    for i in range(6):
        listener = make_listener()
        song = songs.upload_song(ctx, owner=listener, filename="s.wav", data=song_bytes(40 + i))
        for stars in (1.5 + (i % 3), 4.5 - (i % 3)):
            d = music.request_music(ctx, listener=listener, song_ids=[song.id])
            _rate(ctx, listener, d.id, stars)
        raters.append(listener)
    return raters


def test_groups_are_stored_with_the_snapshot_and_serve_new_listeners(
    ctx, make_listener, song_bytes
):
    raters = six_raters(ctx, make_listener, song_bytes)
    newcomer = make_listener()
    songs.upload_song(ctx, owner=newcomer, filename="n.wav", data=song_bytes(41))
    nobody = make_listener()

    row = taste.fit_snapshot(ctx, reason="manual", evaluate=False)
    info = row.metrics["groups"]
    assert set(info) == {"blob_key", "k", "structured", "sizes"}
    groups = taste.load_groups(ctx, row)
    assert isinstance(groups, taste_logic.TasteGroups)
    assert groups.k == info["k"] and 2 <= groups.k <= 8 and sum(groups.sizes) == 6
    assert taste.latest_groups(ctx) == (row.id, groups)
    for listener in raters:
        assert taste.group_of_listener(ctx, groups, listener.id) == groups.group_of(listener.id)
        assert groups.sources[listener.id] == "ratings"
    # a listener without ratings: from its songs; without songs either: unconditioned
    assert groups.group_of(newcomer.id) is None
    assert taste.group_of_listener(ctx, groups, newcomer.id) in range(groups.k)
    assert taste.group_of_listener(ctx, groups, nobody.id) is None


def test_too_few_listeners_store_the_reason_and_no_groups(ctx, make_listener, song_bytes):
    _no_review_or_baseline(ctx)
    ctx.settings.taste_refit_ratings = 0
    listener = make_listener()
    song = songs.upload_song(ctx, owner=listener, filename="s.wav", data=song_bytes(3))
    d = music.request_music(ctx, listener=listener, song_ids=[song.id])
    _rate(ctx, listener, d.id, 4.0)
    row = taste.fit_snapshot(ctx, reason="manual", evaluate=False)
    assert "listeners" in row.metrics["groups"]["skipped"]
    assert taste.load_groups(ctx, row) is None and taste.latest_groups(ctx) is None
