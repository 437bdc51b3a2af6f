"""The rules of an input song (web upload and ``encore generate`` alike, issue 19): every
refusal names the file the listener chose and gives limits as people read them."""

from __future__ import annotations

import re

import pytest

from encore.errors import AudioTooLong, AudioTooShort, InvalidInput, NotAudio, QuotaExceeded
from encore.services import songs


def _no_raw_bytes(message: str) -> None:
    assert "the upload" not in message and not re.search(r"\d{4,} bytes", message), message


def test_valid_song_gives_its_header_and_audio(settings, song_bytes) -> None:
    info, y = songs.validate_song(settings, "one.wav", song_bytes(1, seconds=2.5))
    assert info.format == "wav" and y.shape == (int(2.5 * songs.VALIDATION_SR),)


@pytest.mark.parametrize(
    "filename, data_of, changes, error, expected",
    [
        ("C:\\music\\tiny.wav", lambda b: b(2, seconds=0.3), {}, AudioTooShort,
         "'tiny.wav' lasts 0.3 s, shorter than the minimum of 1.0 s"),
        ("long.flac", lambda b: b(3, seconds=4.0, fmt="FLAC"), {"max_song_seconds": 3.0},
         AudioTooLong, "'long.flac' lasts 4.0 s, longer than the limit of 3.0 s"),
        ("hour.wav", lambda b: b(3, seconds=2.0), {"max_song_seconds": 1.5}, AudioTooLong,
         "'hour.wav' lasts 2.0 s, longer than the limit of 1.5 s"),
        ("notes.mp3", lambda b: b"just text, not audio\n" * 50, {}, NotAudio, "'notes.mp3'"),
        ("big song.wav", lambda b: b(4, seconds=3.0), {"max_upload_bytes": 100_000},
         InvalidInput, "'big song.wav' is 129.2 kB; the limit is 97.6 kB"),
    ],
)
def test_refusals_name_the_file_in_human_units(settings, song_bytes, filename, data_of, changes,
                                               error, expected) -> None:
    s = settings.model_copy(update=changes)
    with pytest.raises(error) as raised:
        songs.validate_song(s, filename, data_of(song_bytes))
    assert expected in str(raised.value)
    _no_raw_bytes(str(raised.value))


def test_upload_uses_the_same_rules_and_the_quota_speaks_mb(ctx, make_listener, song_bytes) -> None:
    listener = make_listener()
    with pytest.raises(AudioTooShort, match="'short one.wav' lasts 0.5 s"):
        songs.upload_song(ctx, owner=listener, filename="short one.wav",
                          data=song_bytes(5, seconds=0.5))
    ctx.settings.storage_quota_bytes = 150_000
    songs.upload_song(ctx, owner=listener, filename="first.wav", data=song_bytes(6, seconds=2.0))
    with pytest.raises(QuotaExceeded) as raised:
        songs.upload_song(ctx, owner=listener, filename="second.wav",
                          data=song_bytes(7, seconds=2.0))
    assert re.search(r"'second.wav' \(86.1 kB\) does not fit: your songs take 86.1 kB of your "
                     r"146.4 kB", str(raised.value)), str(raised.value)
    _no_raw_bytes(str(raised.value))
