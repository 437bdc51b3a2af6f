"""Speed work on the request path (issue 14): each change keeps the numbers it replaces.

* the multistep solvers' thresholding at ``sample_max_value`` 1 is a clamp (no quantile);
* the engine vocodes clip by clip, which the batched vocoder allows because an image's audio
  does not depend on its batch;
* a one-thread engine also runs numpy's BLAS on one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.diffusion import sampling
from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import generate, vary

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


def _song(path: Path, freq: float, seconds: float = 2.0, sr: int = 22050) -> Path:
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def test_the_vocoder_gives_each_image_its_own_audio_in_any_batch(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, engine.mel.y_res, 24), dtype=np.uint8)
    batched = engine.vocoder().images_to_audio(images)
    alone = np.stack([engine.vocoder().images_to_audio(images[i]) for i in range(3)])
    assert np.array_equal(batched, alone)
    assert np.array_equal(engine.to_audio(images), batched)
    assert not np.array_equal(alone[0], alone[1])
    assert engine.to_audio(images, seconds=0.1).shape == (3, round(0.1 * engine.sample_rate))


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
