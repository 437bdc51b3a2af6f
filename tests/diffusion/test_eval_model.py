"""``evaluate_model`` end to end on a tiny seeded model and synthetic crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encore.audio.mel import MelConfig
from encore.diffusion.evaluate import evaluate_model, format_table, sample_crops
from encore.diffusion.folder import build_random_model
from encore.diffusion.model import tiny_config

MEL = MelConfig(x_res=16, y_res=16)


class Crops:
    """Smooth random 16×16 'spectrograms' with a few harmonic-like horizontal lines."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        base = torch.full((n, 1, 16, 16), -0.8)
        rows = torch.randint(0, 16, (n, 3), generator=g)
        for i in range(n):
            base[i, 0, rows[i]] = 0.6
        self.data = (base + 0.05 * torch.randn(base.shape, generator=g)).clamp(-1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.data[i], 0


@pytest.fixture(scope="module")
def tiny_model():
    return build_random_model(tiny_config("unshuffle", height=16), MEL, seed=0)


def test_sample_crops_is_reproducible_and_leaves_global_rng_alone() -> None:
    data = Crops(10, seed=1)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = sample_crops(data, 6, seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert torch.equal(a, sample_crops(data, 6, seed=3))
    assert a.shape == (6, 1, 16, 16)


@pytest.fixture(scope="module")
def report(tiny_model):
    # strength 0: variations return their inputs (real B), which pins their figures exactly
    return evaluate_model(tiny_model, heldout=Crops(16, seed=2), train=Crops(12, seed=3), n=4,
                          steps=2, strength=0.0, precision="fp32", n_train_reference=12)


def test_evaluate_model_reports_every_set(report) -> None:
    names = [r.name for r in report.rows]
    for task in ("generate", "vary", "merge"):
        assert f"{task} (model)" in names and f"{task} (untrained)" in names
    real_b = report.rows[names.index("real B")]
    assert real_b.score == 0.0 and real_b.fd > 0
    for row in report.rows:
        assert np.isfinite([row.fd, row.kd, row.diversity, row.nn_train]).all()
    assert "generate (model)" in format_table(report)
    assert report.to_dict()["n"] == 4


def test_strength_zero_variations_score_like_real_data(report) -> None:
    rows = {r.name: r for r in report.rows}
    assert rows["vary (model)"].fd == pytest.approx(rows["real B"].fd, rel=1e-6, abs=1e-9)
    assert rows["vary (model)"].nn_train == pytest.approx(rows["real B"].nn_train, rel=1e-6)
    assert rows["generate (model)"].fd != pytest.approx(rows["real B"].fd)


def test_compare_samplers_pairs_settings_on_the_same_clips(tiny_model) -> None:
    from encore.diffusion.evaluate import SamplerConfig, compare_samplers, format_sampler_table
    from encore.errors import InvalidInput

    configs = [SamplerConfig.parse("ddim:4"), SamplerConfig.parse("dpmpp:2:3"),
               SamplerConfig.parse("ddim:4")]
    assert configs[1] == SamplerConfig("dpmpp", 2, 3)
    rows, _, fd_real = compare_samplers(
        tiny_model, heldout=Crops(16, seed=2), train=Crops(12, seed=3), configs=configs, n=6,
        strength=0.5, precision="fp32", resamples=8)
    assert fd_real > 0 and len(rows) == 9
    by = {(r.config.label, r.task): r for r in rows}
    first, same = by[("ddim-4 / merge ddim-4", "vary")], rows[6 + 1]
    # the first setting's differences to itself, and a repeat of it, are exactly zero
    assert first.d_score.value == 0 and first.d_score.low == 0 == first.d_score.high
    assert same.d_score.high == 0 and same.d_diversity.low == 0
    assert same.score.value == first.score.value
    for r in rows:
        assert r.score.low <= r.score.high and r.diversity.low <= r.diversity.high
    assert by[("dpmpp-2 / merge ddim-3", "merge")].unet_calls == 6
    assert by[("dpmpp-2 / merge ddim-3", "vary")].unet_calls == 1
    assert "paired bootstrap" in format_sampler_table(rows, n=6, seed=0)
    with pytest.raises(InvalidInput, match="euler"):
        SamplerConfig.parse("euler:10")
    with pytest.raises(InvalidInput, match="SAMPLER:STEPS"):
        SamplerConfig.parse("dpmpp")
