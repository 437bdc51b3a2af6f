"""Speed work on the request path (issue 14): each change keeps the numbers it replaces.

* the multistep solvers' thresholding at ``sample_max_value`` 1 is a clamp (no quantile);
* the engine vocodes clip by clip, which the batched vocoder allows because an image's audio
  does not depend on its batch;
* merges and mix-inverted blends reuse earlier inversions
  (:class:`~encore.diffusion.sampling.InversionCache`): a cached inversion is the fresh one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.diffusion import sampling
from encore.diffusion.blend import blend, merge_mix_inverted
from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import InversionCache, generate, invert, merge, vary
from encore.errors import InvalidInput

from ..songs import tone_file
from .test_engine_sampling import _images


@pytest.mark.parametrize("sampler", ["dpmpp", "unipc"])
def test_the_clamp_is_diffusers_thresholding(tiny_model: LoadedModel, sampler: str) -> None:
    sched = sampling.make_scheduler(tiny_model, 8, sampler)
    x = 3 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sched._threshold_sample(x), type(sched)._threshold_sample(sched, x))
    assert float(sched._threshold_sample(x).abs().max()) == 1.0
    # without clipping, or with another range, diffusers' own thresholding is kept
    assert "_threshold_sample" not in vars(sampling.make_scheduler(tiny_model, 8, sampler,
                                                                   clip_sample=False))


@pytest.mark.parametrize("sampler", ["dpmpp", "unipc"])
def test_samples_are_bit_identical_to_diffusers_thresholding(
    tiny_model: LoadedModel, sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_gen = generate(tiny_model, batch=2, seed=[3, 4], steps=6, sampler=sampler).images
    fast_vary = vary(tiny_model, _images(1, batch=2), strength=0.7, seed=5, steps=6,
                     sampler=sampler).images
    make = sampling.make_scheduler

    def diffusers_thresholding(*args, **kwargs):  # type: ignore[no-untyped-def]
        sched = make(*args, **kwargs)
        vars(sched).pop("_threshold_sample", None)
        return sched

    monkeypatch.setattr(sampling, "make_scheduler", diffusers_thresholding)
    slow_gen = generate(tiny_model, batch=2, seed=[3, 4], steps=6, sampler=sampler).images
    slow_vary = vary(tiny_model, _images(1, batch=2), strength=0.7, seed=5, steps=6,
                     sampler=sampler).images
    assert torch.equal(fast_gen, slow_gen) and torch.equal(fast_vary, slow_vary)


def _song(path: Path, freq: float, seconds: float = 2.0) -> Path:
    return tone_file(path, freq, seconds, tremolo_hz=None)


def test_the_vocoder_gives_each_image_its_own_audio_in_any_batch(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, engine.mel.y_res, 24), dtype=np.uint8)
    batched = engine.vocoder().images_to_audio(images)
    alone = np.stack([engine.vocoder().images_to_audio(images[i]) for i in range(3)])
    # the vocoder run on a batch agrees with its items to float32 rounding; on some CPUs
    # (AVX512 here, 2026-12-06) not bit for bit: its kernels round by batch position
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)
    # the engine vocodes each image alone (side by side): a clip's audio never depends on
    # the batch it was made in
    assert np.array_equal(engine.to_audio(images), alone)
    assert not np.array_equal(alone[0], alone[1])
    assert engine.to_audio(images, seconds=0.1).shape == (3, round(0.1 * engine.sample_rate))


def test_a_cached_inversion_is_the_fresh_one(tiny_model: LoadedModel) -> None:
    a, b, c = _images(1), _images(2), _images(3)
    cache = InversionCache()
    fresh = merge(tiny_model, [a, b], weights=[0.6, 0.4], steps=6)
    first = merge(tiny_model, [a, b], weights=[0.6, 0.4], steps=6, inversions=cache)
    assert (cache.misses, cache.hits, len(cache)) == (2, 0, 2)
    again = merge(tiny_model, [a, b], weights=[0.6, 0.4], steps=6, inversions=cache)
    assert cache.hits == 2
    assert torch.equal(fresh.images, first.images) and torch.equal(first.images, again.images)
    # the entries are the songs' inversions, one per image, as the batch made them
    batch = invert(tiny_model, torch.cat([a, b]), steps=6).images
    for i, x in enumerate((a, b)):
        entry = cache.get(InversionCache.key(tiny_model, sampling.as_model_images(tiny_model, x),
                                             6, 6, None))
        assert entry is not None and torch.equal(entry, batch[i : i + 1])
    merge(tiny_model, [a, c], steps=6, inversions=cache)
    assert cache.hits == 5 and len(cache) == 3  # a again (4 hits before: 2 + the 2 gets); c new
    # another step count is another inversion
    merge(tiny_model, [a, b], steps=5, inversions=cache)
    assert cache.hits == 5 and len(cache) == 5


def test_mix_inverted_blends_reuse_partial_inversions(tiny_model: LoadedModel) -> None:
    a, b = _images(4, batch=2), _images(5, batch=2)
    cache = InversionCache()
    common = {"weights": [0.3, 0.7], "strength": 0.6, "steps": 10}
    fresh = merge_mix_inverted(tiny_model, [a, b], **common)
    cached = [blend(tiny_model, [a, b], method="mix-inverted", inversions=cache, **common)
              for _ in range(2)]
    assert (cache.misses, cache.hits) == (4, 4)  # 2 songs x batch 2, then all four reused
    assert all(torch.equal(fresh.images, r.images) for r in cached)
    # a closeness with another number of inversion steps does not reuse them
    blend(tiny_model, [a, b], method="mix-inverted", inversions=cache,
          **{**common, "strength": 0.3})
    assert cache.hits == 4


def test_progress_counts_the_calls_made(tiny_model: LoadedModel) -> None:
    a, b, c = _images(1), _images(2), _images(3)
    cache = InversionCache()
    totals = []
    for songs in ([a, b], [a, b], [a, c]):
        seen: list[tuple[int, int]] = []
        merge(tiny_model, songs, steps=4, inversions=cache,
              callback=lambda d, t: seen.append((d, t)))  # noqa: B023
        done = [d for d, _ in seen]
        assert len({t for _, t in seen}) == 1 and done[-1] == seen[0][1]
        assert done == list(range(1, done[-1] + 1))
        totals.append(seen[0][1])
    # one batched inversion (4 calls) + 4 decoding calls; none to invert the second time;
    # one new song: the batch of the songs not cached
    assert totals == [8, 4, 8]


def test_the_cache_forgets_the_least_recently_used(tiny_model: LoadedModel) -> None:
    cache = InversionCache(max_items=2)
    a, b, c = _images(1), _images(2), _images(3)
    merge(tiny_model, [a, b], steps=3, inversions=cache)
    merge(tiny_model, [a, c], steps=3, inversions=cache)  # a used again, b dropped for c
    hits = cache.hits
    merge(tiny_model, [a, c], steps=3, inversions=cache)
    assert cache.hits == hits + 2 and len(cache) == 2
    merge(tiny_model, [b, c], steps=3, inversions=cache)
    assert cache.misses == 4  # a, b, c, then b again
    with pytest.raises(InvalidInput, match="max_items"):
        InversionCache(0)


def test_the_engine_reuses_a_song_s_inversion(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    a, b, c = (_song(tmp_path / f"{n}.wav", f) for n, f in (("a", 220), ("b", 1760), ("c", 660)))
    common = {"seconds": 0.8, "steps": 6, "strength": 0.5}
    first = engine.merge([a, b], [0.5, 0.5], **common)
    assert engine.inversions.hits == 0 and len(engine.inversions) == 2
    other = engine.merge([a, c], [0.5, 0.5], **common)
    assert engine.inversions.hits == 1
    # a cold engine inverts a and c in one batch, this one c alone: the same at one torch
    # thread (this folder's tests run on one), equal to rounding on more
    cold = Engine(tiny_model_dir, device="cpu")
    assert np.array_equal(other.audio, cold.merge([a, c], [0.5, 0.5], **common).audio)
    assert not np.array_equal(first.audio, other.audio)


def test_configure_threads_limits_numpy_s_blas_too() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from encore.diffusion.device import configure_threads

    def blas() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    if not blas():
        pytest.skip("numpy has no BLAS pool threadpoolctl can see")
    torch_before = torch.get_num_threads()
    with threadpool_limits(2, user_api="blas"):  # restores the pool afterwards
        assert blas() == {2}
        configure_threads(1)
        assert blas() == {1} and torch.get_num_threads() == 1
        configure_threads(0)  # 0 keeps what there is
        assert blas() == {1}
    torch.set_num_threads(torch_before)
