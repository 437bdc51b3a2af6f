"""Slice choice: from the body of the song, loud, disjoint, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from encore.audio.slices import choose_slices, frame_db, loudest_slices, song_body
from encore.audio.synth import demo_music
from encore.errors import InvalidInput

SR = 22050
SLICE = 256 * 512 - 1  # the 256 format's slice, 5.94 s


def _song(intro_s: float, body_s: float, outro_s: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hiss = 1e-3 * rng.normal(size=int(intro_s * SR))  # -60 dB: quiet, not digital silence
    return np.concatenate(
        [hiss, demo_music(body_s, SR, seed=seed), np.zeros(int(outro_s * SR))]
    ).astype(np.float32)


def test_a_silent_intro_and_outro_are_skipped():
    y = _song(intro_s=12.0, body_s=20.0, outro_s=8.0)
    start, stop = song_body(y)
    assert start == pytest.approx(12.0 * SR, abs=2048)
    assert stop == pytest.approx(32.0 * SR, abs=2048)
    starts = choose_slices(y, sr=SR, slice_samples=SLICE, count=3)
    assert len(starts) == 3
    for s in starts:
        assert s >= 12.0 * SR - 2048 and s + SLICE <= 32.0 * SR + 2048
    assert all(b - a >= SLICE for a, b in zip(starts, starts[1:], strict=False))


def test_the_loudest_section_is_preferred():
    quiet = 0.1 * demo_music(10.0, SR, seed=1)
    loud = demo_music(10.0, SR, seed=2)
    y = np.concatenate([quiet, loud, quiet])
    (start,) = choose_slices(y, sr=SR, slice_samples=SLICE, count=1)
    assert 10.0 * SR - 2048 <= start and start + SLICE <= 20.0 * SR + 2048


def test_a_gap_of_silence_inside_a_window_is_avoided():
    music = demo_music(30.0, SR, seed=3)
    music[int(4 * SR) : int(7 * SR)] = 0.0  # a 3 s break early in the song
    (start,) = choose_slices(music, sr=SR, slice_samples=SLICE, count=1)
    assert start >= 7 * SR - 2048 or start + SLICE <= 4 * SR


def test_deterministic_and_sorted():
    y = _song(3.0, 40.0, 2.0, seed=4)
    first = choose_slices(y, sr=SR, slice_samples=SLICE, count=4)
    assert first == choose_slices(y.copy(), sr=SR, slice_samples=SLICE, count=4)
    assert first == sorted(first) and len(first) == 4


def test_no_more_slices_than_fit():
    y = _song(0.0, 14.0, 0.0, seed=5)  # 14 s holds two disjoint 5.94 s slices
    assert len(choose_slices(y, sr=SR, slice_samples=SLICE, count=5)) == 2


def test_loudest_slices_rank_disjoint_windows_from_the_loudest():
    quiet = 0.1 * demo_music(10.0, SR, seed=1)
    loud = demo_music(10.0, SR, seed=2)
    y = np.concatenate([quiet, loud, 0.3 * demo_music(10.0, SR, seed=3)])
    starts = loudest_slices(y, sr=SR, slice_samples=SLICE, count=4)
    # the first is choose_slices' one loudest window; the next ones overlap no earlier one
    assert starts[0] == choose_slices(y, sr=SR, slice_samples=SLICE, count=1)[0]
    assert 10.0 * SR - 2048 <= starts[0] and starts[0] + SLICE <= 20.0 * SR + 2048
    assert len(starts) == 4
    assert all(abs(a - b) >= SLICE for i, a in enumerate(starts) for b in starts[:i])
    # ranked: each window is at least as loud as the next (mean frame dB)
    db = frame_db(y)
    loudness = [float(np.mean(db[s // 512 : (s + SLICE) // 512])) for s in starts]
    assert all(a >= b - 0.5 for a, b in zip(loudness, loudness[1:], strict=False))
    assert loudest_slices(y, sr=SR, slice_samples=SLICE, count=4) == starts
    assert loudest_slices(y, sr=SR, slice_samples=SLICE, count=1) == starts[:1]
    # a 14 s song holds two disjoint slices; a song shorter than a slice gives [0]
    assert len(loudest_slices(_song(0.0, 14.0, 0.0, seed=5), sr=SR, slice_samples=SLICE,
                              count=5)) == 2
    assert loudest_slices(demo_music(3.0, SR), sr=SR, slice_samples=SLICE, count=2) == [0]
    with pytest.raises(InvalidInput):
        loudest_slices(y, sr=SR, slice_samples=SLICE, count=0)


def test_short_songs():
    assert choose_slices(demo_music(3.0, SR), sr=SR, slice_samples=SLICE, count=2) == [0]
    # Body (4 s) shorter than a slice inside a longer file: one slice centred on the body.
    y = np.concatenate([np.zeros(10 * SR), demo_music(4.0, SR), np.zeros(10 * SR)])
    (start,) = choose_slices(y, sr=SR, slice_samples=SLICE, count=3)
    assert start == pytest.approx(12.0 * SR - SLICE // 2, abs=2048)


def test_frame_db_is_relative_to_the_loudest_frame():
    db = frame_db(np.concatenate([np.full(4096, 0.5), np.full(4096, 0.05)]))
    assert db.max() == 0.0
    np.testing.assert_allclose(db[8:13], -20.0, atol=0.01)  # frames inside the quiet half
    assert not np.any(frame_db(np.zeros(5000)))


def test_bad_arguments():
    with pytest.raises(InvalidInput, match=r"count=0"):
        choose_slices(np.zeros(10), sr=SR, slice_samples=SLICE, count=0)
    with pytest.raises(InvalidInput, match=r"mono"):
        choose_slices(np.zeros((10, 2)), sr=SR, slice_samples=SLICE)
