"""Training loop: weighted loss, learning, exact resume, exported model folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encore.audio.mel import MelConfig
from encore.diffusion.train import (
    TrainConfig,
    lr_at,
    read_log,
    train,
    weighted_diffusion_loss,
)
from encore.errors import InvalidInput

from .train_helpers import assert_resumed_exactly

H = 16  # tiny_config height
W = 16


class TinyDataset:
    """A few fixed random 'spectrograms'; each item is a random 16-frame crop of one of them."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        # smooth-ish images so that there is something to learn
        base = torch.rand(n, 1, H // 4, (2 * W) // 4, generator=g) * 2 - 1
        self.data = torch.nn.functional.interpolate(base, size=(H, 2 * W), mode="bilinear")
        self.mel_config = MelConfig(x_res=W, y_res=H)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        off = int(torch.randint(0, W + 1, (1,)))
        return self.data[i, :, :, off : off + W].clone(), 0


def tiny_cfg(**changes: object) -> TrainConfig:
    base = dict(tiny=True, width=W, batch_size=8, max_steps=10, lr=3e-3, warmup_steps=0,
                min_lr_ratio=1.0, log_every=5, eval_every=5, eval_crops=8, precision="fp32",
                seed=3, checkpoint_minutes=1e9)
    base.update(changes)
    return TrainConfig(**base)  # type: ignore[arg-type]


# -- the weighted loss ---------------------------------------------------------------------------


def test_weighted_loss_with_unit_weights_is_the_plain_mse() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(5, 1, 4, 6, generator=g), torch.randn(5, 1, 4, 6, generator=g)
    plain = torch.nn.functional.mse_loss(pred, target)
    assert torch.allclose(weighted_diffusion_loss(pred, target), plain)
    assert torch.allclose(weighted_diffusion_loss(pred, target, torch.ones(5)), plain)
    assert torch.allclose(weighted_diffusion_loss(pred, target, torch.full((5,), 3.0)), plain)


def test_weighted_loss_ignores_zero_weight_samples() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(4, 1, 4, 6, generator=g), torch.randn(4, 1, 4, 6, generator=g)
    weights = torch.tensor([1.0, 0.0, 2.0, 0.0])
    loss = weighted_diffusion_loss(pred, target, weights)
    corrupted = pred.clone()
    corrupted[1] += 100.0
    corrupted[3] -= 50.0
    assert torch.allclose(weighted_diffusion_loss(corrupted, target, weights), loss)
    per = ((pred - target) ** 2).flatten(1).mean(1)
    assert torch.allclose(loss, (per[0] + 2 * per[2]) / 3)


def test_weighted_loss_gradient_is_zero_for_zero_weight_samples() -> None:
    pred = torch.randn(3, 1, 2, 2, requires_grad=True)
    weighted_diffusion_loss(pred, torch.zeros(3, 1, 2, 2), torch.tensor([1.0, 0.0, 1.0])).backward()
    assert torch.count_nonzero(pred.grad[1]) == 0
    assert torch.count_nonzero(pred.grad[0]) > 0


def test_weighted_loss_rejects_bad_weights() -> None:
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(InvalidInput, match="3 entries"):
        weighted_diffusion_loss(x, x, torch.ones(3))
    with pytest.raises(InvalidInput, match="non-negative"):
        weighted_diffusion_loss(x, x, torch.tensor([1.0, -1.0]))


# -- schedule and config -------------------------------------------------------------------------


def test_lr_warms_up_then_decays_along_a_cosine_to_the_floor() -> None:
    cfg = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0.0, 0, cfg) == pytest.approx(0.1)
    assert lr_at(0.09, 9, cfg) == pytest.approx(1.0)
    assert lr_at(0.5, 50, cfg) == pytest.approx(0.55)
    assert lr_at(1.0, 100, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s / 100, s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_config_needs_a_length() -> None:
    with pytest.raises(InvalidInput, match="max_steps or max_minutes"):
        TrainConfig()


# -- training ------------------------------------------------------------------------------------


def test_tiny_model_loss_decreases(tmp_path) -> None:
    cfg = tiny_cfg(max_steps=60, log_every=10, eval_every=20)
    result = train(cfg, dataset=TinyDataset(4), heldout=TinyDataset(4, seed=9), out_dir=tmp_path,
                   progress=False)
    rows = [r for r in read_log(result.log_path) if "loss" in r]
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    held = [r["heldout_loss"] for r in read_log(result.log_path) if "heldout_loss" in r]
    assert held[-1] < held[0]
    assert result.steps == 60 and result.samples_seen == 480
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "train_config.json").read_text())["max_steps"] == 60


def test_resume_continues_exactly(tmp_path) -> None:
    data = TinyDataset(4)
    straight = train(tiny_cfg(max_steps=10), dataset=data, out_dir=tmp_path / "a", progress=False)
    train(tiny_cfg(max_steps=5), dataset=TinyDataset(4), out_dir=tmp_path / "b", progress=False)
    resumed = train(tiny_cfg(max_steps=10), dataset=TinyDataset(4), out_dir=tmp_path / "b",
                    resume=True, progress=False)
    assert straight.steps == 10
    assert_resumed_exactly(straight, resumed)


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="cannot resume"):
        train(tiny_cfg(max_steps=1), dataset=TinyDataset(2), out_dir=tmp_path, resume=True,
              progress=False)
    train(tiny_cfg(max_steps=1), dataset=TinyDataset(2), out_dir=tmp_path, progress=False)
    with pytest.raises(InvalidInput, match="already holds a run"):
        train(tiny_cfg(max_steps=1), dataset=TinyDataset(2), out_dir=tmp_path, progress=False)


def test_exported_folder_is_fp16_on_disk_and_runs_in_fp32(tmp_path) -> None:
    from safetensors import safe_open

    from encore.diffusion.folder import load_model_folder
    from encore.diffusion.train import export_model_folder

    data = TinyDataset(2)
    cfg = tiny_cfg(max_steps=3)
    result = train(cfg, dataset=data, out_dir=tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    loaded32 = load_model_folder(result.model_dir, device="cpu")
    denoiser = loaded32.denoiser
    for key, value in ckpt["ema"]["model"].items():
        torch.testing.assert_close(denoiser.state_dict()[key], value)

    folder = export_model_folder(denoiser, tmp_path / "shipped", cfg=cfg,
                                 mel_config=data.mel_config, dtype=torch.float16)
    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16}
    loaded = load_model_folder(folder, device="cpu")
    assert {p.dtype for p in loaded.denoiser.parameters()} == {torch.float32}
    assert loaded.scheduler.config.beta_schedule == cfg.beta_schedule
    assert loaded.scheduler.config.num_train_timesteps == cfg.num_train_timesteps
    x = torch.randn(2, 1, H, W, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out16 = loaded.denoiser(x, torch.tensor([10, 500]))
        out32 = denoiser.eval()(x, torch.tensor([10, 500]))
    assert out16.dtype == torch.float32
    assert np.abs((out16 - out32).numpy()).max() < 1e-2 * max(1.0, float(out32.abs().max()))
