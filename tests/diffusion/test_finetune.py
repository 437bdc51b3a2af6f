"""Confidence-weighted fine-tuning on tiny seeded models: what the weights do, replay, early
stopping, exact resume and the exported child folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encore.diffusion import finetune as ft
from encore.diffusion.finetune import FinetuneConfig, finetune, training_noise_scheduler
from encore.diffusion.finetune_data import (
    ImageSet,
    clip_tensor,
    fixed_clip_batch,
    parent_replay_set,
    weighted_fixed_loss,
)
from encore.diffusion.folder import load_model_folder
from encore.errors import InvalidInput

H = 16  # the tiny model's mel bins (tests/diffusion/conftest.py)
WIDE = 40  # clips are wider than the 16-frame crops


def stripes(kind: str, k: int) -> torch.Tensor:
    """Two families of clips: ``"rows"`` (horizontal stripes) and ``"cols"`` (vertical)."""
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(WIDE), indexing="ij")
    axis = yy if kind == "rows" else xx
    return (torch.sin(axis * (0.8 + 0.1 * k)) > 0).float() * 2 - 1


def cfg(**changes: object) -> FinetuneConfig:
    base = dict(steps=20, eval_every=10, eval_crops=8, batch_size=8, lr=3e-3, warmup_steps=0,
                precision="fp32", log_every=5, replay_fraction=0.0, max_minutes=None, seed=0)
    base.update(changes)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def weights_of(folder) -> dict[str, torch.Tensor]:
    return load_model_folder(folder, device="cpu").denoiser.state_dict()


def loss_on(model, images, parent) -> float:
    batch = fixed_clip_batch([x[None] for x in images], [1.0] * len(images), 16, 32, 1000, seed=5)
    return weighted_fixed_loss(model, batch, training_noise_scheduler(parent), use_bf16=False)


# -- inputs ----------------------------------------------------------------------------------------


def test_clip_images_are_read_as_uint8_or_float_and_checked() -> None:
    grey = np.full((H, 30), 255, dtype=np.uint8)
    assert torch.allclose(clip_tensor(grey, H), torch.ones(1, H, 30))
    assert clip_tensor(np.zeros((1, H, 30), np.float32), H).shape == (1, H, 30)
    with pytest.raises(InvalidInput, match="8 mel bins; the model needs 16"):
        clip_tensor(np.zeros((8, 30), np.uint8), H)


def test_confidences_are_validated(tmp_path, tiny_model) -> None:
    clip = stripes("rows", 0)
    with pytest.raises(InvalidInput, match="none of the 2 clips has a positive confidence"):
        finetune(tiny_model, [(clip, 0.0), (clip, 0.0)], cfg=cfg(), out_dir=tmp_path / "a")
    with pytest.raises(InvalidInput, match="confidence -0.5"):
        finetune(tiny_model, [(clip, 1.0), (clip, -0.5)], cfg=cfg(), out_dir=tmp_path / "b")
    with pytest.raises(InvalidInput, match="replay_fraction=1.0"):
        cfg(replay_fraction=1.0)


# -- the weights c ----------------------------------------------------------------------------------


def test_a_zero_confidence_clip_does_not_move_the_model(tmp_path, tiny_model) -> None:
    clips = [(stripes("rows", k), 0.5 + 0.25 * k) for k in range(3)]
    with_zero = finetune(tiny_model, [*clips, (stripes("cols", 0), 0.0)], cfg=cfg(),
                         out_dir=tmp_path / "with", clip_ids=[10, 11, 12, 13])
    without = finetune(tiny_model, clips, cfg=cfg(), out_dir=tmp_path / "without")
    a, b = weights_of(with_zero.model_dir), weights_of(without.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    parent = tiny_model.denoiser.state_dict()
    assert any(not torch.equal(a[k], parent[k]) for k in a)  # it did learn something
    assert with_zero.training_set[-1] == {"clip_id": 13, "confidence": 0.0, "role": "dropped"}


def test_confidence_steers_what_the_model_learns(tmp_path, tiny_model) -> None:
    rows = [stripes("rows", k) for k in range(4)]
    cols = [stripes("cols", k) for k in range(4)]
    fitted = {}
    for tag, (c_rows, c_cols) in {"rows": (1.0, 0.1), "cols": (0.1, 1.0)}.items():
        clips = [(x, c_rows) for x in rows] + [(x, c_cols) for x in cols]
        result = finetune(tiny_model, clips, cfg=cfg(steps=30), out_dir=tmp_path / tag)
        model = load_model_folder(result.model_dir, device="cpu").denoiser
        fitted[tag] = (loss_on(model, rows, tiny_model), loss_on(model, cols, tiny_model))
    # Each family is fitted better by the run that trusts it more.
    assert fitted["rows"][0] < fitted["cols"][0]
    assert fitted["cols"][1] < fitted["rows"][1]


def test_finetune_lowers_the_loss_on_its_training_clips_and_exports_a_child(tmp_path, make_tiny) -> None:
    from diffusers import DDIMScheduler

    parent = make_tiny()
    # an audio-diffusion-style parent: linear betas, which the fine-tune must keep
    linear = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                           beta_end=0.02)
    parent = type(parent)(parent.denoiser, linear, parent.mel_config, {"name": "v3"}, None)
    clips = [(stripes("rows", k).numpy(), 0.8) for k in range(4)]
    replay = ImageSet(torch.stack([stripes("cols", k)[None] for k in range(4)]), 16)
    result = finetune(parent, clips, cfg=cfg(replay_fraction=0.25), out_dir=tmp_path / "run",
                      replay=replay, clip_ids=[7, 8, 9, 10], name="v4")
    before, after = result.train_clip_loss
    assert after < before
    child = load_model_folder(result.model_dir, device="cpu")
    # measured independently of the run's own figures, on other crops of the same clips
    images = [torch.as_tensor(x) for x, _ in clips]
    assert loss_on(child.denoiser, images, parent) < loss_on(parent.denoiser, images, parent)
    assert child.meta["parent"] == "v3" and child.meta["name"] == "v4"
    training = child.meta["training"]
    assert [e["clip_id"] for e in training["training_set"]] == [7, 8, 9, 10]
    assert {e["confidence"] for e in training["training_set"]} == {0.8}
    assert training["config"]["replay_fraction"] == 0.25 and training["replay"]["crops_per_batch"] == 2
    assert training["train_clip_loss"]["finetuned"] == pytest.approx(after, rel=1e-5)
    assert child.scheduler.config.beta_schedule == "linear"
    assert child.scheduler.config.beta_end == pytest.approx(0.02)
    assert (result.model_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    logged = [json.loads(line) for line in (result.model_dir / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [5, 10, 15, 20]
    assert [r["step"] for r in logged if "train_clip_loss" in r] == [0, 10, 20]


# -- replay ----------------------------------------------------------------------------------------


def test_replay_keeps_the_model_closer_to_the_replay_data(tmp_path, tiny_model) -> None:
    clips = [(stripes("rows", k), 1.0) for k in range(4)]
    replay = ImageSet(torch.stack([stripes("cols", k)[None] for k in range(4)]), 16)
    with_replay = finetune(tiny_model, clips, cfg=cfg(steps=30, replay_fraction=0.5),
                           out_dir=tmp_path / "r", replay=replay)
    without = finetune(tiny_model, clips, cfg=cfg(steps=30), out_dir=tmp_path / "n")
    cols = [stripes("cols", k) for k in range(4)]
    m_with = load_model_folder(with_replay.model_dir, device="cpu").denoiser
    m_without = load_model_folder(without.model_dir, device="cpu").denoiser
    assert loss_on(m_with, cols, tiny_model) < loss_on(m_without, cols, tiny_model)
    assert with_replay.replay_loss[1] is not None and without.replay_loss == (None, None)


def test_parent_generations_make_a_replay_set(tiny_model) -> None:
    replay = parent_replay_set(tiny_model, n=3, steps=2, seed=4, precision="fp32")
    assert len(replay) == 3
    image, _ = replay[0]
    assert image.shape == (1, H, 16) and float(image.abs().max()) <= 1.0
    again = parent_replay_set(tiny_model, n=3, steps=2, seed=4, precision="fp32")
    assert torch.equal(replay.images, again.images)


# -- early stopping, resume ------------------------------------------------------------------------


def test_early_stopping_exports_the_best_evaluated_weights(tmp_path, tiny_model, monkeypatch) -> None:
    """The held-out clip loss is scripted (best at step 10, then worse): training stops after
    ``patience`` evaluations without improvement and exports the step-10 EMA weights."""
    script = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    real = ft.evaluate_sets

    def scripted(model, sets, noise_scheduler, *, use_bf16):
        figures = real(model, sets, noise_scheduler, use_bf16=use_bf16)
        return {**figures, "heldout_clip_loss": next(script)}

    monkeypatch.setattr(ft, "evaluate_sets", scripted)
    clips = [(stripes("rows", k % 4), 1.0) for k in range(10)]
    result = finetune(tiny_model, clips, cfg=cfg(steps=60, eval_every=10, patience=2,
                                                 min_clips_for_heldout=10, heldout_fraction=0.2),
                      out_dir=tmp_path / "run")
    assert result.stop_reason == "early_stop"
    assert result.steps == 30 and result.best_step == 10
    assert sum(e["role"] == "heldout" for e in result.training_set) == 2
    rows = {r["step"]: r for r in result.loss_curve if "train_clip_loss" in r}
    assert sorted(rows) == [0, 10, 20, 30]
    # the exported weights are the step-10 ones: recomputed from the folder, their loss on the
    # training clips' fixed crops is the one logged at step 10, not at step 30
    exported = load_model_folder(result.model_dir, device="cpu").denoiser
    train_images = [clip_tensor(x, H) for x, _ in clips]
    kept = [i for i, e in enumerate(result.training_set) if e["role"] == "train"]
    batch = fixed_clip_batch([train_images[i] for i in kept], [1.0] * len(kept), 16, 8, 1000,
                             seed=11)  # the run's own fixed training-clip crops (seed + 11)
    recomputed = weighted_fixed_loss(exported, batch, training_noise_scheduler(tiny_model),
                                     use_bf16=False)
    assert recomputed == pytest.approx(rows[10]["train_clip_loss"], rel=1e-4)
    assert recomputed != pytest.approx(rows[30]["train_clip_loss"], rel=1e-4)


class Crash(Exception):
    pass


def test_resume_after_a_crash_continues_exactly(tmp_path, tiny_model) -> None:
    clips = [(stripes("rows", k), 0.4 + 0.2 * k) for k in range(4)]
    replay = ImageSet(torch.stack([stripes("cols", k)[None] for k in range(4)]), 16)
    config = cfg(steps=20, eval_every=5, replay_fraction=0.25)
    straight = finetune(tiny_model, clips, cfg=config, out_dir=tmp_path / "straight", replay=replay)

    def crash_at_13(fraction: float, message: str | None = None) -> None:
        if fraction >= 13 / 20:
            raise Crash("worker died")

    with pytest.raises(Crash):
        finetune(tiny_model, clips, cfg=config, out_dir=tmp_path / "crashed", replay=replay,
                 progress=crash_at_13)
    assert not (tmp_path / "crashed" / "model").exists()  # nothing half-published
    with pytest.raises(InvalidInput, match="resume=True"):
        finetune(tiny_model, clips, cfg=config, out_dir=tmp_path / "crashed", replay=replay)
    with pytest.raises(InvalidInput, match="other clips"):
        finetune(tiny_model, clips[:3], cfg=config, out_dir=tmp_path / "crashed", replay=replay,
                 resume=True)
    resumed = finetune(tiny_model, clips, cfg=config, out_dir=tmp_path / "crashed", replay=replay,
                       resume=True)
    a, b = weights_of(straight.model_dir), weights_of(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.steps == 20
    assert [r["step"] for r in resumed.loss_curve] == [r["step"] for r in straight.loss_curve]
