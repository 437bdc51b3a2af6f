from __future__ import annotations

import pytest

from encore.errors import Conflict, NotAudio, PermissionDenied
from encore.services import songs
from encore.similarity.representation import Representation
from encore.store import SongStatus


def test_upload_stores_the_song_and_embeds_it(ctx, make_listener, song_bytes) -> None:
    listener = make_listener()
    song = songs.upload_song(ctx, owner=listener, filename="../../etc/My Song.wav", data=song_bytes(1))
    assert song.title == "My Song"
    assert "etc" not in song.blob_key and song.blob_key.startswith("songs/")
    assert song.status is SongStatus.READY  # immediate queue: the embedding already ran
    rep = Representation.from_vector(song.representation)
    assert abs(float(rep.histogram.sum()) - 1.0) < 1e-5
    assert ctx.blobs.get(song.blob_key) == song_bytes(1)
    assert song.duration_seconds == pytest.approx(3.0, abs=0.01)


def test_upload_rejects_non_audio_and_keeps_nothing(ctx, make_listener, song_bytes) -> None:
    listener = make_listener()
    with pytest.raises(NotAudio):
        songs.upload_song(ctx, owner=listener, filename="notes.txt", data=b"hello, not audio" * 50)
    assert songs.list_songs(ctx, owner=listener) == []


def test_same_file_twice_is_a_conflict(ctx, make_listener, song_bytes) -> None:
    listener = make_listener()
    songs.upload_song(ctx, owner=listener, filename="a.wav", data=song_bytes(2))
    with pytest.raises(Conflict, match="already uploaded"):
        songs.upload_song(ctx, owner=listener, filename="b.wav", data=song_bytes(2))


def test_listeners_see_only_their_own_songs(ctx, make_listener, song_bytes) -> None:
    alice, bob = make_listener("alice"), make_listener("bob")
    song = songs.upload_song(ctx, owner=alice, filename="a.flac", data=song_bytes(3, fmt="FLAC"))
    assert [s.id for s in songs.list_songs(ctx, owner=bob)] == []
    with pytest.raises(PermissionDenied, match="another listener"):
        songs.get_song(ctx, user=bob, song_id=song.id)
    ref = songs.song_audio(ctx, user=alice, song_id=song.id)
    assert ref.content_type == "audio/flac" and ref.path is not None and ref.path.is_file()
