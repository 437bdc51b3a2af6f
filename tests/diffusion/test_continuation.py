"""Pieces longer than the canvas: layout, inpainting, the audio join, loops (tiny seeded model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.diffusion import continuation
from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import inpaint, vary
from encore.errors import InvalidInput

SR = 22050
HOP = 512


def _engine(tiny_model_dir: Path) -> Engine:
    engine = Engine(tiny_model_dir, device="cpu", precision="fp32")
    engine.window_seconds = 1.0  # 44 frames -> a 44-frame canvas (a multiple of 4)
    engine.overlap_seconds = 0.3  # 13 frames
    engine.crossfade_seconds = 0.05
    return engine


def _song(seconds: float = 12.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.2 * t)))
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    return y.astype(np.float32)


def test_layout_covers_the_piece_with_overlapping_windows() -> None:
    lay = continuation.layout(100, 40, 10)
    assert lay.starts == (0, 30, 60)  # the last one ends at the end
    assert lay.timeline == 100
    assert lay.known_frames(1) == (10, 0) and lay.known_frames(2) == (10, 0)
    lay = continuation.layout(95, 40, 10)
    assert lay.starts == (0, 28, 55)  # spread evenly: each shares at least 10 frames
    assert lay.known_frames(1) == (12, 0) and lay.known_frames(2) == (13, 0)
    loop = continuation.layout(100, 40, 10, loop=True)
    assert loop.timeline == 110 and loop.starts[-1] + 40 == 110
    assert loop.known_frames(loop.windows - 1)[1] == 10
    mask = continuation.window_mask(loop, loop.windows - 1)
    head, tail = loop.known_frames(loop.windows - 1)
    r = continuation.ramp_frames(loop)
    assert r == 2
    assert (mask[: head - r] == 1).all() and (mask[-tail + r :] == 1).all()
    assert not mask[head:-tail].any()
    # a linear fall from the fixed frames into the free ones
    assert np.all(np.diff(mask[head - r - 1 : head + 1]) < 0)
    assert np.all(np.diff(mask[-tail - 1 : -tail + r + 1]) > 0)
    with pytest.raises(InvalidInput):
        continuation.layout(100, 40, 40)
    with pytest.raises(InvalidInput, match="too short"):
        continuation.layout(30, 40, 10, loop=True)
    with pytest.raises(InvalidInput, match="too short"):
        continuation.layout(45, 40, 10, loop=True)


def test_window_seeds_start_with_the_seed_and_differ() -> None:
    seeds = [continuation.window_seed(7, k) for k in range(5)]
    assert seeds[0] == 7 and len(set(seeds)) == 5
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "unipc"])
def test_inpaint_keeps_the_known_frames_and_moves_the_rest(
    tiny_model: LoadedModel, sampler: str
) -> None:
    g = torch.Generator().manual_seed(0)
    known = torch.rand(2, 1, 16, 32, generator=g) * 2 - 1
    start = torch.rand(2, 1, 16, 32, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 1, 32)
    mask[..., :10] = 1
    out = inpaint(tiny_model, known, mask, images=start, strength=0.7, seed=[1, 2], steps=8,
                  sampler=sampler).images
    assert out.shape == (2, 1, 16, 32)
    assert torch.equal(out[..., :10], known[..., :10])
    free = vary(tiny_model, start, strength=0.7, seed=[1, 2], steps=8, sampler=sampler).images
    # the free frames are sampled (not copied from the start image), and the fixed frames
    # change what the model makes next to them
    assert not torch.allclose(out[..., 10:], start[..., 10:], atol=1e-2)
    assert not torch.allclose(out[..., 10:12], free[..., 10:12], atol=1e-4)
    again = inpaint(tiny_model, known, mask, images=start, strength=0.7, seed=[1, 2], steps=8,
                    sampler=sampler).images
    assert torch.equal(out, again)
    from_noise = inpaint(tiny_model, known, mask, seed=[1, 2], steps=8, sampler=sampler).images
    assert torch.equal(from_noise[..., :10], known[..., :10])
    with pytest.raises(InvalidInput):
        inpaint(tiny_model, known, mask, seed=1, steps=8, strength=0.5)
    with pytest.raises(InvalidInput):
        inpaint(tiny_model, known, torch.zeros(1, 1, 1, 31), seed=[1, 2], steps=8)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp"])
def test_a_piece_continues_each_window_from_the_previous_one(
    tiny_model_dir: Path, sampler: str
) -> None:
    engine = _engine(tiny_model_dir)
    song = _song()
    seconds = 3.0
    clips = engine.piece_batch(song, seconds, seeds=[3, 4], steps=6, strength=0.7,
                               offset=1.0, sampler=sampler)
    assert len(clips) == 2
    lay = engine.piece_layout(seconds)
    assert lay is not None and lay.windows >= 3
    for clip in clips:
        assert clip.audio.shape == (round(seconds * SR),)
        assert clip.image.shape == (16, lay.frames)
        assert clip.params["windows"] == list(lay.starts)
        assert clip.params["offsets"] == [pytest.approx(1.0)]
        assert len(clip.params["seams"]) == lay.windows - 1
        assert clip.params["window_seeds"][0] == clip.params["seed"]
        assert np.isfinite(clip.audio).all()
    # window 0 is exactly what vary_batch makes at the canvas length from the same stretch,
    # until window 1's fixed head ends (at a calm frame of the overlap's second half)
    r = continuation.ramp_frames(lay)
    cuts = clips[0].params["cuts"]
    assert len(cuts) == lay.windows - 1
    for k, cut in enumerate(cuts, start=1):
        head = lay.known_frames(k)[0]
        assert lay.starts[k] + (head + 1) // 2 <= cut <= lay.starts[k] + head
    first = engine.vary_batch(song, 0.7, [3, 4], 6, seconds=engine.window_seconds,
                              offset=1.0, sampler=sampler)
    upto = cuts[0] - r
    assert np.array_equal(clips[0].image[:, :upto], first[0].image[:, :upto])
    # the overlap each window inpainted is the previous window's content (before the audio
    # crossfade): made again window by window, window k's first frames are window k-1's last
    one = engine.piece_batch(song, seconds, seeds=[3, 4], steps=6, strength=0.7,
                             offset=1.0, sampler=sampler, max_windows=1)
    two = engine.piece_batch(song, seconds, seeds=[3, 4], steps=6, strength=0.7,
                             offset=1.0, sampler=sampler, max_windows=2)
    w, s1 = lay.window, lay.starts[1]
    head = two[0].params["cuts"][0] - s1
    assert head >= lay.overlap // 2 and two[0].params["cuts"] == cuts[:1]
    fixed = head - r  # then the mask falls to 0 over the ramp
    window0 = one[0].image
    assert window0.shape == (16, w)
    window1 = two[0].image[:, s1 : s1 + w]
    assert np.array_equal(window1[:, :fixed], window0[:, s1 : s1 + fixed])
    assert np.array_equal(two[0].image[:, :s1], window0[:, :s1])
    # the whole piece has the same frames until window 2's ramp (window 2 rewrites its own)
    upto2 = cuts[1] - r
    assert np.array_equal(two[0].image[:, :upto2], clips[0].image[:, :upto2])
    # the ramp blends into frames of its own, and what follows is new
    assert not np.array_equal(window1[:, fixed:head], window0[:, s1 + fixed : s1 + head])
    # the same seeds give the same piece; another seed another one
    again = engine.piece_batch(song, seconds, seeds=[3], steps=6, strength=0.7, offset=1.0,
                               sampler=sampler)
    assert np.allclose(again[0].audio, clips[0].audio, atol=1e-4)
    assert not np.allclose(clips[0].audio, clips[1].audio, atol=1e-3)


def test_continuing_a_chosen_first_window_gives_the_same_piece(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    song = _song()
    firsts = engine.piece_batch(song, 3.0, seeds=[5, 6], steps=6, offset=0.5, max_windows=1)
    lay = engine.piece_layout(3.0)
    assert firsts[1].image.shape == (16, lay.window)
    assert firsts[1].seconds == pytest.approx((lay.window - 1) * HOP / SR)
    whole = engine.piece_batch(song, 3.0, seeds=[6], steps=6, offset=0.5,
                               first_windows=firsts[1].image[None])
    direct = engine.piece_batch(song, 3.0, seeds=[6], steps=6, offset=0.5)
    # the piece is the chosen first window until window 1's ramp, where window 1 takes over
    upto = whole[0].params["cuts"][0] - continuation.ramp_frames(lay)
    assert np.array_equal(whole[0].image[:, :upto], firsts[1].image[:, :upto])
    # continuing from the stored (8-bit) first window or making it afresh agree closely
    assert np.abs(whole[0].image.astype(int) - direct[0].image.astype(int)).mean() < 2.0


def test_a_loop_ends_where_it_begins(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    song = _song()
    seconds = 3.0
    clip = engine.piece_batch(song, seconds, seeds=[9], steps=6, offset=2.0, loop=True,
                              sampler="dpmpp")[0]
    lay = engine.piece_layout(seconds, loop=True)
    assert lay.loop and lay.timeline == lay.frames + lay.overlap
    assert clip.params["loop"] is True
    n = lay.frames * HOP
    assert clip.audio.shape == (n,)
    assert clip.seconds == pytest.approx(seconds, abs=HOP / SR)
    # the last window's tail (fixed to the first window's head) equals it: mel frames
    # [frames, frames + overlap) of the timeline repeat frames [0, overlap) (after the ramp)
    made = engine.piece_batch(song, seconds, seeds=[9], steps=6, offset=2.0, loop=True,
                              sampler="dpmpp", max_windows=lay.windows)[0].image
    assert made.shape[1] == lay.timeline
    r = continuation.ramp_frames(lay)
    assert np.array_equal(made[:, lay.frames + r :], made[:, r : lay.overlap])
    assert np.array_equal(made[:, : lay.frames], clip.image)
    # and the frames just before the loop's end lead into it: not the song's nor a copy
    assert not np.array_equal(made[:, lay.frames - 4 : lay.frames], made[:, -4:])
    # audio: played in a loop, the join end -> start is as smooth as a join inside
    wrap = np.concatenate([clip.audio[-4096:], clip.audio[:4096]])
    inner = clip.audio[n // 2 - 4096 : n // 2 + 4096]
    jump = abs(float(wrap[4096] - wrap[4095]))
    assert jump < 4 * np.abs(np.diff(inner)).max() + 1e-6


def test_the_loops_tail_frames_are_the_first_windows_head(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    lay = engine.piece_layout(3.0, loop=True)
    timeline = np.zeros((1, 16, lay.timeline), dtype=np.float32)
    timeline[..., : lay.window] = np.linspace(-1, 1, lay.window)
    k = lay.windows - 1
    known = continuation.known_image(lay, k, timeline)
    _, tail = lay.known_frames(k)
    assert np.array_equal(known[..., -tail:], timeline[..., :tail])
    # made by the engine: the generated piece's timeline tail equals its head
    clip = engine.piece_batch(None, 3.0, seeds=[2], steps=5, loop=True)[0]
    assert clip.params["kind"] == "generate" and clip.params["loop"]
    assert clip.audio.shape == (lay.frames * HOP,)


def test_join_crossfades_only_in_the_overlaps() -> None:
    lay = continuation.layout(100, 40, 10)
    n = 39 * HOP
    audio = np.stack([np.full(n, float(k + 1), dtype=np.float32) for k in range(lay.windows)])
    joined, seams = continuation.join_windows(lay, audio, HOP, 256)
    assert joined.shape == (99 * HOP,)
    assert len(seams) == 2
    for k, centre in enumerate(seams, start=1):
        assert lay.starts[k] * HOP < centre < (lay.starts[k - 1] + 39) * HOP
        assert np.all(joined[centre - 200 : centre - 130] == k)
        assert np.all(joined[centre + 130 : centre + 200] == k + 1)
        mid = joined[centre - 128 : centre + 128]
        assert (mid > min(k, k + 1) - 1e-6).all()
    # outside the crossfades the audio is each window's own, untouched (no fade inside)
    assert np.all(joined[:1000] == 1.0)
    assert np.all(joined[-1000:] == 3.0)


def test_piece_that_fits_one_canvas_is_one_window(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    assert engine.piece_layout(1.1) is None
    clip = engine.piece_batch(_song(), 1.1, seeds=[1], steps=4, offset=0.0)[0]
    assert clip.audio.shape == (round(1.1 * SR),) and clip.params["windows"] == [0]


def test_seam_flux_finds_a_click() -> None:
    t = np.arange(SR * 4) / SR
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    smooth_at, inside = continuation.seam_flux(y, [SR * 2], span=2048)
    y[SR * 2] += 0.9  # a click: a seam anyone would hear
    click_at, _ = continuation.seam_flux(y, [SR * 2], span=2048)
    assert smooth_at[0] <= np.percentile(inside, 99)
    assert click_at[0] > np.percentile(inside, 95)


def test_fine_tuning_crops_a_long_piece_at_the_models_width() -> None:
    """A long piece's mel (here 11 windows' worth of frames) trains as crops of the model's
    native width, taken from all over the piece, as a one-canvas clip does."""
    from encore.diffusion.finetune_data import ClipSampler

    piece = torch.linspace(-1, 1, 2100).repeat(1, 16, 1)  # (1, H, frames): frame i -> value
    short = torch.zeros(1, 16, 256)
    sampler = ClipSampler([piece, short], [1.0, 0.5], width=128, seed=0)
    crops, weights = sampler.next_batch(40)
    assert crops.shape == (40, 1, 16, 128)
    firsts = sorted({round(float(c[0, 0, 0]), 3) for c, w in zip(crops, weights, strict=True)
                     if w == 1.0})
    # crops start all over the piece, not only in its first canvas
    assert firsts[0] < -0.5 and firsts[-1] > 0.5


def _song_b(seconds: float = 12.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(7)
    y = 0.2 * np.sign(np.sin(2 * np.pi * 330 * t)) + 0.05 * rng.standard_normal(t.shape[0])
    return y.astype(np.float32)


@pytest.mark.parametrize("method", ["mix-inverted", "mix"])
def test_a_long_blend_is_made_window_by_window(tiny_model_dir: Path, method: str) -> None:
    engine = _engine(tiny_model_dir)
    songs = [_song(), _song_b()]
    seconds = 3.0
    lay = engine.piece_layout(seconds)
    assert lay is not None and lay.windows >= 3
    clip = engine.merge(songs, [0.6, 0.4], seed=4, steps=6, seconds=seconds, strength=0.6,
                        method=method, offsets=[1.0, 2.0])
    assert clip.audio.shape == (round(seconds * SR),) and np.isfinite(clip.audio).all()
    assert clip.image.shape == (16, lay.frames)
    assert clip.params["kind"] == "merge" and clip.params["method"] == method
    assert clip.params["windows"] == list(lay.starts)
    assert clip.params["offsets"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert len(clip.params["seams"]) == lay.windows - 1
    assert clip.params["weights"] == [pytest.approx(0.6), pytest.approx(0.4)]
    # window 0 is the blend of the songs' windows at the canvas length, and it stays the
    # piece until window 1's ramp: window 1 continued it (inpainting), it did not replace it
    short = engine.merge(songs, [0.6, 0.4], seed=4, steps=6, seconds=engine.window_seconds,
                         strength=0.6, method=method, offsets=[1.0, 2.0])
    upto = min(short.image.shape[1], clip.params["cuts"][0] - continuation.ramp_frames(lay))
    assert np.array_equal(clip.image[:, :upto], short.image[:, :upto])
    # and later windows are not copies of the first: the blend goes on with the songs
    s2 = lay.starts[2]
    assert not np.array_equal(clip.image[:, s2 : s2 + 8], clip.image[:, :8])
    # another weight makes another piece
    other = engine.merge(songs, [0.1, 0.9], seed=4, steps=6, seconds=seconds, strength=0.6,
                         method=method, offsets=[1.0, 2.0])
    assert not np.array_equal(other.image, clip.image)


def test_a_blend_can_loop_and_slerp_cannot(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    songs = [_song(), _song_b()]
    lay = engine.piece_layout(3.0, loop=True)
    clip = engine.merge(songs, seed=1, steps=6, seconds=3.0, strength=0.7, loop=True)
    assert clip.params["loop"] is True and clip.params["method"] == "mix-inverted"
    assert clip.audio.shape == (lay.frames * HOP,)
    with pytest.raises(InvalidInput, match="cannot loop"):
        engine.merge(songs, seed=1, steps=6, seconds=3.0, loop=True)
    # a slerp merge is still one canvas of the length asked for
    wide = engine.merge(songs, seed=1, steps=3, seconds=3.0)
    assert wide.params["method"] is None or wide.params["method"] == "slerp"
    assert "windows" not in wide.params and wide.audio.shape == (round(3.0 * SR),)


def _onsets(frames: int, every: int, first: int, height: int = 16) -> np.ndarray:
    """A spectrogram image (the model's [-1, 1] scale) of notes attacking every ``every``
    frames from ``first`` and decaying, ``(height, frames)``."""
    t = np.arange(frames)
    since = (t - first) % every
    level = np.where(t >= first, 200.0 * np.exp(-since / 3.0), 0.0)
    return np.repeat(level[None], height, axis=0) / 127.5 - 1.0


def test_calmest_finds_the_quiet_stretch_between_attacks() -> None:
    flux = continuation.frame_flux(_onsets(60, 12, 2))
    assert flux.shape == (60,) and flux[0] == 0
    attacks = [t for t in range(1, 60) if flux[t] > 0]
    assert attacks == [2, 14, 26, 38, 50]  # only a rise counts
    # a rise near the floor counts for less than the same rise in dB near the top
    low = continuation.frame_flux(np.array([[-1.0, -0.5]]))[1]
    high = continuation.frame_flux(np.array([[0.5, 1.0]]))[1]
    assert 0 < low < high / 10
    t = continuation.calmest(flux, 20, 40, 5)
    assert 20 <= t <= 40 and all(abs(t - a) > 2 for a in attacks)
    assert continuation.calmest(flux, 30, 30, 5) == 30
    with pytest.raises(InvalidInput):
        continuation.frame_flux(np.zeros(5))


def test_the_cut_moves_off_an_attack_in_the_made_frames_and_in_the_song() -> None:
    lay = continuation.layout(200, 80, 24)
    k, width = 1, 4
    head = lay.known_frames(k)[0]
    s, prev_end = lay.starts[k], lay.starts[k] + head
    r = continuation.ramp_frames(lay)
    # made frames: an attack right where the fixed head would end by default
    made = continuation.frame_flux(_onsets(prev_end, 10, prev_end - 2 - 30))
    cut = continuation.choose_cut(lay, k, made, width)
    assert (head + 1) // 2 <= cut <= head
    def quiet(flux: np.ndarray, t: int) -> bool:  # no attack in the width averaged at t
        return not flux[t - width // 2 : t - width // 2 + width].any()

    assert made[prev_end - 2] > 0 and quiet(made, s + cut)
    flat = np.ones(prev_end)
    # a song whose attacks fall every 10 frames: the cut avoids them as well
    guide = continuation.frame_flux(_onsets(lay.window, 10, 5))
    cut = continuation.choose_cut(lay, k, flat, width, guide)
    assert quiet(guide, cut) and guide[cut - 8 : cut + 8].any()
    # the crossfade's centre lies where both windows hold the same frames (before the ramp),
    # at a calm frame, clear of the window's first frames
    line = continuation.frame_flux(_onsets(lay.timeline, 10, 5))
    c = continuation.crossfade_centre(lay, k, cut, line, width)
    assert s + lay.overlap // 4 <= c <= s + cut - r - (width + 1) // 2
    assert quiet(line, c)
    # the mask fixes exactly the chosen head (falling over the ramp), nothing after it
    mask = continuation.window_mask(lay, k, cut)
    assert (mask[: cut - r] == 1).all() and not mask[cut:].any()
    with pytest.raises(InvalidInput):
        continuation.window_mask(lay, k, head + 1)


def test_join_crossfades_at_the_given_centres() -> None:
    lay = continuation.layout(100, 40, 10)
    n = 39 * HOP
    audio = np.stack([np.full(n, float(k + 1), dtype=np.float32) for k in range(lay.windows)])
    centres = [lay.starts[1] * HOP + 1000, (lay.starts[2] + 8) * HOP]
    joined, seams = continuation.join_windows(lay, audio, HOP, 256, centres)
    assert seams == centres
    for k, centre in enumerate(centres, start=1):
        assert np.all(joined[centre - 200 : centre - 130] == k)
        assert np.all(joined[centre + 130 : centre + 200] == k + 1)
    # the first centre is 1000 samples into the overlap: the crossfade is shortened to fit
    assert np.all(joined[: lay.starts[1] * HOP] == 1.0)
    with pytest.raises(InvalidInput, match="outside"):
        continuation.join_windows(lay, audio, HOP, 256, [0, centres[1]])
    with pytest.raises(InvalidInput, match="centres"):
        continuation.join_windows(lay, audio, HOP, 256, centres[:1])
