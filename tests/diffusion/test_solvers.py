"""Fewer-step solvers (DPM-Solver++, UniPC), batching and merges at few steps (issue 14).

Tiny seeded models for the plumbing; the exact ε-predictor of Gaussian data (the oracle of
``test_engine_sampling``) where accuracy is asserted, since a random UNet's ODE means nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from encore.config import get_settings
from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import (
    SAMPLERS,
    SampleParams,
    generate,
    invert,
    make_scheduler,
    merge,
    replay,
    vary,
)
from encore.errors import InvalidInput

from .test_engine_sampling import H, W, _images, _oracle_model

MakeTiny = Callable[..., LoadedModel]
SOLVERS = ("dpmpp", "unipc")
BF16_ATOL = 0.02  # bf16 keeps 8 mantissa bits (0.4 %); images are in [-1, 1]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_strength_zero_returns_the_input_and_one_is_generation(
    tiny_model: LoadedModel, sampler: str
) -> None:
    x = _images(40, batch=2)
    same = vary(tiny_model, x, strength=0.0, seed=[1, 2], steps=10, sampler=sampler)
    assert torch.equal(same.images, x)
    assert same.params.start_step == 10 and same.params.sampler == sampler
    full = vary(tiny_model, x, strength=1.0, seed=[1, 2], steps=10, sampler=sampler)
    new = generate(tiny_model, batch=2, width=W, seed=[1, 2], steps=10, sampler=sampler)
    assert torch.allclose(full.images, new.images, atol=1e-5)


@pytest.mark.parametrize("sampler", SOLVERS)
def test_strength_runs_the_solvers_own_last_steps(tiny_model: LoadedModel, sampler: str) -> None:
    sched = make_scheduler(tiny_model, 10, sampler)
    # trailing spacing: from t = 999 in steps of 1000 / 10, then to σ = 0
    assert sched.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    calls = []
    x = _images(41)
    out = vary(tiny_model, x, strength=0.3, steps=10, sampler=sampler,
               callback=lambda done, total: calls.append((done, total)))
    assert out.params.start_step == 7 and calls[-1] == (3, 3)
    weak = vary(tiny_model, x, strength=0.2, steps=10, sampler=sampler).images
    strong = vary(tiny_model, x, strength=0.8, steps=10, sampler=sampler).images
    assert (weak - x).abs().mean() < (strong - x).abs().mean()


def test_multistep_solvers_clip_like_the_model(tiny_model: LoadedModel) -> None:
    for sampler in SOLVERS:
        sched = make_scheduler(tiny_model, 10, sampler)
        assert sched.config.thresholding and sched.config.sample_max_value == 1.0
        assert not make_scheduler(tiny_model, 10, sampler, clip_sample=False).config.thresholding


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batched_and_single_give_the_same_clip(tiny_model: LoadedModel, sampler: str) -> None:
    x = _images(42, batch=3)
    for precision, atol in (("fp32", 1e-4), ("bf16", BF16_ATOL)):
        batch = vary(tiny_model, x, strength=0.7, seed=[5, 6, 7], steps=8, sampler=sampler,
                     precision=precision).images
        alone = vary(tiny_model, x[1:2], strength=0.7, seed=6, steps=8, sampler=sampler,
                     precision=precision).images
        assert float((batch[1:2] - alone).abs().max()) < atol, precision
        gen = generate(tiny_model, batch=3, width=W, seed=[5, 6, 7], steps=8, sampler=sampler,
                       precision=precision).images
        one = generate(tiny_model, width=W, seed=7, steps=8, sampler=sampler,
                       precision=precision).images
        assert float((gen[2:3] - one).abs().max()) < atol, precision


def test_second_order_solvers_beat_ddim_at_few_steps(make_tiny: MakeTiny) -> None:
    """Against a 500-step DDIM solution from the same noise (the oracle's exact ODE)."""
    model, _ = _oracle_model(make_tiny)
    ref = generate(model, batch=2, width=W, seed=[3, 4], steps=500).images
    err = {
        (s, n): float((generate(model, batch=2, width=W, seed=[3, 4], steps=n, sampler=s).images
                       - ref).abs().mean())
        for s in SAMPLERS for n in (10, 20)
    }
    # measured: ddim 0.045 / 0.024, dpmpp 0.031 / 0.0057, unipc 0.030 / 0.0055
    for s in SOLVERS:
        assert err[(s, 10)] < 0.8 * err[("ddim", 10)]
        assert err[(s, 20)] < 0.3 * err[("ddim", 20)]
        assert err[(s, 20)] < err[(s, 10)] / 3  # faster than first order
    assert err[("ddim", 20)] > err[("ddim", 10)] / 2.5  # DDIM: first order


@pytest.mark.parametrize("steps,bound", [(10, 0.45), (20, 0.22)])
def test_inversion_then_sampling_at_few_steps_reconstructs(
    make_tiny: MakeTiny, steps: int, bound: float
) -> None:
    """The merges' DDIM pair at the step counts merges use: max error ≈ 3.3 / steps."""
    model, mu = _oracle_model(make_tiny)
    g = torch.Generator().manual_seed(12)
    x = (mu + 0.3 * torch.randn(2, 1, H, W, generator=g)).clamp(-1, 1)
    noise = invert(model, x, steps=steps).images
    recon = generate(model, noise=noise, steps=steps, clip_sample=False).images
    err = (recon - x).abs()
    # measured at 10 / 20 steps: max 0.27 / 0.15, mean 0.069 / 0.038
    assert float(err.max()) < bound
    assert float(err.mean()) < bound / 4
    only = merge(model, [x, x.flip(0)], weights=[1, 0], steps=steps)
    assert torch.allclose(only.images, recon.clamp(-1, 1), atol=1e-5)
    assert only.params.sampler == "ddim"


def test_sampler_is_recorded_and_replayed(tiny_model: LoadedModel) -> None:
    x = _images(43, batch=2)
    out = vary(tiny_model, x, strength=0.5, seed=[1, 9], steps=6, sampler="unipc")
    params = SampleParams.from_dict(out.params.to_dict())
    assert params.sampler == "unipc"
    assert torch.equal(replay(tiny_model, params, [x]).images, out.images)
    old = out.params.to_dict()
    del old["sampler"]  # params stored before samplers existed were DDIM's
    assert SampleParams.from_dict(old).sampler == "ddim"


def test_bad_sampler_arguments_are_named(tiny_model: LoadedModel) -> None:
    with pytest.raises(InvalidInput, match="euler"):
        generate(tiny_model, width=W, sampler="euler")
    with pytest.raises(InvalidInput, match="eta=0.5"):
        generate(tiny_model, width=W, eta=0.5, sampler="dpmpp")


def test_engine_batches_candidates_and_records_the_setting(tiny_model_dir) -> None:
    engine = Engine(tiny_model_dir, device="cpu", precision="bf16")
    settings = get_settings()
    assert (engine.default_sampler, engine.default_steps) == (
        settings.sampler, settings.inference_steps)
    sr = engine.sample_rate
    t = np.arange(int(4 * sr)) / sr
    song = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    clips = engine.vary_batch(song, 0.6, [3, 4, 5, 6], 8, seconds=1.0, sampler="dpmpp")
    alone = engine.vary(song, 0.6, 5, 8, seconds=1.0, sampler="dpmpp")
    assert [c.params["seed"] for c in clips] == [3, 4, 5, 6]
    assert clips[2].params["sampler"] == "dpmpp" and clips[2].params["steps"] == 8
    assert clips[2].params["batch_seeds"] == [3, 4, 5, 6]
    # one grey level is 1/127.5 of the [-1, 1] range: bf16 batching moves pixels by at most 2
    diff = np.abs(clips[2].image.astype(int) - alone.image.astype(int))
    assert diff.max() <= 2, diff.max()
    engine.default_sampler, engine.default_steps = "unipc", 4
    clip = engine.generate(1.0, seed=1)
    assert (clip.params["sampler"], clip.params["steps"]) == ("unipc", 4)


def test_a_batch_is_vocoded_side_by_side_to_the_same_audio(tiny_model_dir, monkeypatch) -> None:
    engine = Engine(tiny_model_dir, device="cpu", precision="bf16")
    images = np.stack([engine.generate(1.0, seed=s, steps=2).image for s in (1, 2, 3)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one at a time
        one_by_one = engine.to_audio(images, 1.0)
        torch.set_num_threads(2)  # a pool of two vocoder threads
        used: set[str] = set()
        import encore.audio.mel as mel

        real = mel.image_to_audio

        def spy(*args, **kwargs):
            import threading

            used.add(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(mel, "image_to_audio", spy)
        side_by_side = engine.to_audio(images, 1.0)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(side_by_side, one_by_one)
    assert all(name.startswith("side-by-side") for name in used) and len(used) >= 1


def test_auto_precision_is_bf16_on_cuda_where_the_gpu_has_it(monkeypatch) -> None:
    from encore.diffusion import device as dev

    cuda = torch.device("cuda")
    monkeypatch.setattr(dev, "cuda_has_bf16", lambda: True)
    assert dev.autocast_dtype(cuda, "auto") is torch.bfloat16
    monkeypatch.setattr(dev, "cuda_has_bf16", lambda: False)
    assert dev.autocast_dtype(cuda, "auto") is torch.float16
    assert dev.autocast_dtype(torch.device("mps"), "auto") is None
    assert dev.autocast_dtype(cuda, "fp32") is None


def test_cuda_is_refused_with_its_name_where_there_is_none() -> None:
    from encore.diffusion.device import pick_device
    from encore.errors import ConfigurationError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigurationError, match="cuda"):
        pick_device("cuda")


def test_requests_of_different_songs_share_one_batch(tiny_model_dir) -> None:
    engine = Engine(tiny_model_dir, device="cpu", precision="fp32")
    sr = engine.sample_rate
    t = np.arange(int(3 * sr)) / sr
    songs = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220.0, 330.0)]
    clips = engine.vary_songs(songs, 0.5, [7, 8], 6, seconds=1.0, sampler="dpmpp",
                              input_ids=["a", "b"])
    for song, seed, clip, name in zip(songs, (7, 8), clips, ("a", "b"), strict=True):
        alone = engine.vary(song, 0.5, seed, 6, seconds=1.0, sampler="dpmpp", input_id=name)
        assert np.abs(clip.image.astype(int) - alone.image.astype(int)).max() <= 1
        assert clip.params["input_ids"] == alone.params["input_ids"] == [name]
        assert clip.params["offsets"] == alone.params["offsets"]
        assert clip.params["seed"] == seed
    with pytest.raises(InvalidInput, match="1 seeds for 2 songs"):
        engine.vary_songs(songs, 0.5, [1])
