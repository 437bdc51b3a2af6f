"""DDIM sampling on spectrogram images: generate, vary, invert, merge (tiny seeded models)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from encore.diffusion.folder import LoadedModel
from encore.diffusion.reference import diffusers_generate
from encore.diffusion.sampling import (
    SampleParams,
    generate,
    invert,
    merge,
    replay,
    start_step_for,
    vary,
)
from encore.errors import InvalidInput

MakeTiny = Callable[..., LoadedModel]
H, W = 16, 32  # tiny models: 16 mel bins; 32 frames (a multiple of 4)


def _images(seed: int, batch: int = 1) -> torch.Tensor:
    """Smooth random spectrogram-like images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, H, W, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1).clamp(-1, 1)


def test_generate_is_determined_by_the_seed(tiny_model: LoadedModel) -> None:
    a = generate(tiny_model, width=W, seed=3, steps=8)
    b = generate(tiny_model, width=W, seed=3, steps=8)
    c = generate(tiny_model, width=W, seed=4, steps=8)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images, atol=1e-3)
    assert a.images.shape == (1, 1, H, W)
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert a.params.seeds == (3,) and a.params.steps == 8 and a.params.kind == "generate"


def test_batch_items_follow_their_own_seeds(tiny_model: LoadedModel) -> None:
    batch = generate(tiny_model, batch=3, width=W, seed=10, steps=6)
    assert batch.params.seeds == (10, 11, 12)
    alone = generate(tiny_model, width=W, seed=11, steps=6)
    # same noise; only the batched convolution's rounding may differ
    assert torch.allclose(batch.images[1:2], alone.images, atol=1e-4)


def test_eta_noise_is_seeded_too(tiny_model: LoadedModel) -> None:
    a = generate(tiny_model, width=W, seed=1, steps=6, eta=1.0)
    b = generate(tiny_model, width=W, seed=1, steps=6, eta=1.0)
    c = generate(tiny_model, width=W, seed=1, steps=6, eta=0.0)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images, atol=1e-3)


@pytest.mark.parametrize("layout", ["plain", "unshuffle"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_our_loop_matches_diffusers_ddim_pipeline(
    make_tiny: MakeTiny, layout: str, eta: float
) -> None:
    model = make_tiny(layout)
    ours = generate(model, width=W, seed=5, steps=20, eta=eta).images
    ref = diffusers_generate(model, width=W, seed=5, steps=20, eta=eta)
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) <= 1e-4


def test_vary_at_strength_zero_returns_the_input_exactly(tiny_model: LoadedModel) -> None:
    x = _images(1, batch=2)
    out = vary(tiny_model, x, strength=0.0, seed=0, steps=10)
    assert torch.equal(out.images, x)
    assert out.params.start_step == 10
    pixels = ((x + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(vary(tiny_model, pixels, strength=0.0).images, pixels.float() / 127.5 - 1)


def test_vary_at_full_strength_is_generation_from_the_same_noise(tiny_model: LoadedModel) -> None:
    x = _images(2)
    out = vary(tiny_model, x, strength=1.0, seed=7, steps=10)
    gen = generate(tiny_model, width=W, seed=7, steps=10)
    assert torch.equal(out.images, gen.images)
    assert out.params.start_step == 0


def test_vary_records_its_start_step_and_moves_away_with_strength(tiny_model: LoadedModel) -> None:
    x = _images(3)
    low = vary(tiny_model, x, strength=0.1, seed=1, steps=20)
    high = vary(tiny_model, x, strength=0.9, seed=1, steps=20)
    assert (low.params.start_step, high.params.start_step) == (18, 2)
    assert low.params.strength == 0.1
    assert (low.images - x).abs().mean() < (high.images - x).abs().mean()


def test_start_step_rounding_and_validation() -> None:
    assert start_step_for(0.7, 50) == 15
    assert start_step_for(0.0, 50) == 50 and start_step_for(1.0, 50) == 0
    with pytest.raises(InvalidInput, match="1.5"):
        start_step_for(1.5, 50)


class _GaussianOracle(torch.nn.Module):
    """The exact ε-predictor for data x₀ ~ N(μ, s²I) (a stand-in for a trained model).

    E[x₀ | x_t] = μ + √ᾱ s² / (ᾱ s² + 1 − ᾱ) · (x_t − √ᾱ μ) and ε = (x_t − √ᾱ E[x₀|x_t]) / √(1−ᾱ).
    With the true ε the DDIM ODE is exact and smooth, so DDIM inversion followed by DDIM
    sampling reconstructs its input up to the inversion's one-step lag (ε evaluated at
    x_{t−Δ} instead of x_t), a first-order error: O(1/steps).
    """

    width_multiple = 1

    def __init__(self, alphas_cumprod: torch.Tensor, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("ac", alphas_cumprod.double())
        self.register_buffer("mu", mu.double())
        self.s = s

    @property
    def device(self) -> torch.device:
        return self.ac.device

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        a = self.ac[int(t)]
        x = x.double()
        ex0 = self.mu + (a.sqrt() * self.s**2 / (a * self.s**2 + 1 - a)) * (x - a.sqrt() * self.mu)
        return ((x - a.sqrt() * ex0) / (1 - a).sqrt()).float()


def _oracle_model(make_tiny: MakeTiny) -> tuple[LoadedModel, torch.Tensor]:
    base = make_tiny("plain", clip_sample=True)  # clipping on, as the default scheduler
    mu = 0.25 * _images(11)
    oracle = _GaussianOracle(base.scheduler.alphas_cumprod, mu, s=0.3)
    return LoadedModel(oracle, base.scheduler, base.mel_config, {"name": "oracle"}), mu  # type: ignore[arg-type]


def test_invert_then_generate_reconstructs_the_input(make_tiny: MakeTiny) -> None:
    model, mu = _oracle_model(make_tiny)
    g = torch.Generator().manual_seed(12)
    x = (mu + 0.3 * torch.randn(2, 1, H, W, generator=g)).clamp(-1, 1)
    errors = {}
    for steps in (25, 100):
        z = invert(model, x, steps=steps)
        assert z.params.kind == "invert"
        noise = z.images
        # the inverted noise looks like the noise the model starts from
        assert abs(float(noise.std()) - 1.0) < 0.15
        recon = generate(model, noise=noise, steps=steps, clip_sample=False).images
        errors[steps] = float((recon - x).abs().max())
    # measured: ≈ 3.3 / steps (0.13 at 25, 0.035 at 100)
    assert errors[100] < 0.06
    assert errors[100] < errors[25] / 2.5  # first-order convergence


def test_merge_with_one_weight_is_the_reconstruction_of_that_input(make_tiny: MakeTiny) -> None:
    model, mu = _oracle_model(make_tiny)
    g = torch.Generator().manual_seed(13)
    a, b = ((mu + 0.3 * torch.randn(1, 1, H, W, generator=g)).clamp(-1, 1) for _ in range(2))
    only_a = merge(model, [a, b], weights=[1, 0], steps=50)  # must decode without clipping
    recon_a = generate(model, noise=invert(model, a, steps=50).images, steps=50, clip_sample=False)
    assert torch.allclose(only_a.images, recon_a.images, atol=1e-5)
    both = merge(model, [a, b], weights=[3, 1], steps=50)
    assert both.params.weights == (0.75, 0.25)
    da, db = (both.images - a).abs().mean(), (both.images - b).abs().mean()
    assert da < db  # the heavier input dominates


def test_merge_batches_and_replays(tiny_model: LoadedModel) -> None:
    xs = [_images(s, batch=2) for s in (20, 21, 22)]
    out = merge(tiny_model, xs, weights=[0.5, 0.3, 0.2], steps=6, seed=4, input_ids=["a", "b", "c"])
    assert out.images.shape == (2, 1, H, W)
    assert out.params.input_ids == ("a", "b", "c")
    again = replay(tiny_model, SampleParams.from_dict(out.params.to_dict()), xs)
    assert torch.equal(out.images, again.images)


def test_vary_replays_bit_for_bit(tiny_model: LoadedModel) -> None:
    x = _images(5, batch=2)
    out = vary(tiny_model, x, strength=0.6, seed=[8, 3], steps=10, eta=0.3)
    again = replay(tiny_model, out.params, [x])
    assert torch.equal(out.images, again.images)


def test_bad_arguments_are_named(tiny_model: LoadedModel) -> None:
    with pytest.raises(InvalidInput, match="1.5"):
        vary(tiny_model, _images(1), strength=1.5)
    with pytest.raises(InvalidInput, match="steps=0"):
        generate(tiny_model, width=W, steps=0)
    with pytest.raises(InvalidInput, match="width=30"):
        generate(tiny_model, width=30)
    with pytest.raises(InvalidInput, match="eta=2"):
        generate(tiny_model, width=W, eta=2)
    with pytest.raises(InvalidInput, match="at least 2"):
        merge(tiny_model, [_images(1)])
    with pytest.raises(InvalidInput, match="8 mel bins"):
        vary(tiny_model, torch.zeros(1, 1, 8, W))
    with pytest.raises(InvalidInput, match=r"\[-1, 1\]"):
        vary(tiny_model, 3 * _images(1))
    with pytest.raises(InvalidInput, match="2 seeds"):
        generate(tiny_model, batch=3, width=W, seed=[1, 2])


def test_bf16_autocast_stays_close_to_fp32_and_is_recorded(tiny_model: LoadedModel) -> None:
    x = _images(30, batch=2)
    t = torch.tensor([50, 900])
    with torch.inference_mode():
        ref = tiny_model.denoiser(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model.denoiser(x, t).float()
    rel = float((low - ref).norm() / ref.norm())
    assert rel < 0.05  # bf16 keeps 8 bits of mantissa: ~0.4 % per op
    out = generate(tiny_model, width=W, seed=1, steps=4, precision="bf16")
    assert out.params.precision == "bf16"
    assert torch.equal(replay(tiny_model, out.params).images, out.images)
