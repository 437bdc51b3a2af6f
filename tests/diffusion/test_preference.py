"""Diffusion-DPO and Diffusion-KTO (encore.diffusion.preference) on tiny seeded models: the losses
at the start, the implicit rewards they move, the frozen reference, the timestep range, the
replay regulariser, export and exact resume."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from encore.diffusion.finetune import FinetuneConfig, training_noise_scheduler
from encore.diffusion.folder import load_model_folder
from encore.diffusion.preference import PreferenceConfig, frozen_reference, preference_finetune
from encore.diffusion.training import LossContext, seed_everything
from encore.diffusion.training.preference import (
    DiffusionDPOLoss,
    DiffusionKTOLoss,
    LabelledBatch,
    PairBatches,
    PreferencePairBatch,
    TimestepRange,
)
from encore.errors import InvalidInput

H = 16


def stripes(kind: str, k: int, width: int = 24) -> np.ndarray:
    """A uint8 mel-like image: horizontal ("rows") or vertical ("cols") stripes."""
    yy, xx = np.meshgrid(np.arange(H), np.arange(width), indexing="ij")
    axis = yy if kind == "rows" else xx
    return ((np.sin(axis * (0.8 + 0.1 * k)) > 0) * 255).astype(np.uint8)


def stripe_data(n: int = 4) -> tuple[dict[int, np.ndarray], list[tuple[int, int, float]]]:
    """Clips 0..n-1 rows stripes (winners), n..2n-1 cols stripes (losers), one pair each."""
    images = {k: stripes("rows", k) for k in range(n)} | {n + k: stripes("cols", k) for k in range(n)}
    return images, [(k, n + k, 1.0) for k in range(n)]


def small_cfg(steps: int, **kw) -> FinetuneConfig:
    base = dict(steps=steps, max_minutes=None, batch_size=8, replay_fraction=0.0, lr=2e-3,
                warmup_steps=1, ema_decay=0.0, eval_every=max(steps, 1), eval_crops=8, patience=0,
                seed=0, precision="fp32", log_every=1)
    return FinetuneConfig(**{**base, **kw})


def context(parent, reference) -> LossContext:
    sched = training_noise_scheduler(parent)
    return LossContext(noise_scheduler=sched, num_train_timesteps=int(sched.config.num_train_timesteps),
                       use_bf16=False, device=torch.device("cpu"), reference=reference)


def test_losses_at_the_start_are_log_2_and_one_half(tiny_model) -> None:
    images, _ = stripe_data()
    x = torch.stack([torch.as_tensor(images[k]).float()[None] / 127.5 - 1 for k in range(8)])[..., :16]
    policy = copy.deepcopy(tiny_model.denoiser).train()
    ctx = context(tiny_model, frozen_reference(tiny_model))
    seed_everything(3)
    dpo = DiffusionDPOLoss(beta=5000.0, timesteps=TimestepRange(0.7))
    # the policy (train mode) and the reference (eval mode) differ by ~1e-7 in their outputs
    # (diffusers' attention takes another kernel in training mode), β × that in the loss
    loss = dpo(policy, PreferencePairBatch(x[:4], x[4:]), ctx)
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-3)
    assert abs(dpo.last["margin"]) < 1e-6
    kto = DiffusionKTOLoss(beta=5000.0, timesteps=TimestepRange(0.7))
    loss = kto(policy, LabelledBatch(x, torch.tensor([True] * 4 + [False] * 4)), ctx)
    assert float(loss.detach()) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(InvalidInput, match="reference"):
        dpo(policy, PreferencePairBatch(x[:4], x[4:]), context(tiny_model, None))


def test_a_dpo_gradient_step_is_the_paired_comparison(tiny_model) -> None:
    """The loss is symmetric in the roles: swapping winners and losers flips the gradient's
    direction on the margin, and the reference gets no gradient."""
    images, _ = stripe_data()
    x = torch.stack([torch.as_tensor(images[k]).float()[None] / 127.5 - 1 for k in range(8)])[..., :16]
    policy = copy.deepcopy(tiny_model.denoiser).train()
    reference = frozen_reference(tiny_model)
    ctx = context(tiny_model, reference)
    dpo = DiffusionDPOLoss(beta=5000.0, timesteps=TimestepRange(0.7))
    grads = []
    for w, lo in ((x[:4], x[4:]), (x[4:], x[:4])):
        policy.zero_grad()
        seed_everything(5)
        dpo(policy, PreferencePairBatch(w, lo), ctx).backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None]))
    # equal and opposite up to σ(β·margin) at a margin of ~1e-8 (train vs eval attention kernels)
    assert torch.allclose(grads[0], -grads[1], rtol=5e-3, atol=5e-3 * float(grads[0].abs().max()))
    assert all(p.grad is None for p in reference.parameters())


def test_dpo_moves_the_implicit_reward_towards_the_winners(tiny_model, tmp_path) -> None:
    images, pairs = stripe_data()
    frozen = {k: v.clone() for k, v in tiny_model.denoiser.state_dict().items()}
    result = preference_finetune(
        tiny_model, images, pairs=pairs, cfg=small_cfg(12), pref=PreferenceConfig("dpo", dpo_beta=5000.0),
        out_dir=tmp_path / "run")
    loss0, loss1 = result.figures["train_dpo_loss"]
    margin0, margin1 = result.figures["train_margin"]
    assert loss0 == pytest.approx(math.log(2), abs=1e-6)  # the EMA starts as the reference
    assert margin0 == pytest.approx(0.0, abs=1e-9)
    assert margin1 > 0 and loss1 < loss0
    assert result.figures["train_accuracy"][1] > 0.5
    # the parent (the reference) is not modified
    assert all(torch.equal(v, frozen[k]) for k, v in tiny_model.denoiser.state_dict().items())
    child = load_model_folder(result.model_dir, device="cpu")
    assert child.meta["parent"] == tiny_model.name
    assert child.meta["training"]["method"] == "dpo"
    assert [e["role"] for e in child.meta["training"]["training_set"]] == ["train"] * 4


def test_kto_raises_desirable_and_lowers_undesirable_rewards(tiny_model, tmp_path) -> None:
    images, pairs = stripe_data()
    labels = [(w, True, 1.0) for w, _, _ in pairs] + [(lo, False, 1.0) for _, lo, _ in pairs]
    result = preference_finetune(
        # a small learning rate: the tiny model is untrained, so a large step improves its
        # denoising of every image, liked or not, and hides the preference in a general gain
        tiny_model, images, labels=labels, cfg=small_cfg(12, lr=2e-4),
        pref=PreferenceConfig("kto", kto_beta=5000.0),
        out_dir=tmp_path / "run")
    good0, good1 = result.figures["train_reward_desirable"]
    bad0, bad1 = result.figures["train_reward_undesirable"]
    assert good0 == pytest.approx(0.0, abs=1e-9) and bad0 == pytest.approx(0.0, abs=1e-9)
    assert result.figures["train_kto_loss"][0] == pytest.approx(0.5, abs=1e-6)
    assert good1 > 0 > bad1
    assert result.figures["train_kto_loss"][1] < 0.5
    assert result.figures["train_kto_loss"][1] < 0.5


def test_timesteps_stay_where_serving_uses_them() -> None:
    seed_everything(0)
    low = TimestepRange(0.7).sample(4000, 1000)
    assert int(low.max()) == 699 and int(low.min()) == 0
    mixed = TimestepRange(0.7, full_range_share=0.25).sample(8000, 1000)
    above = float((mixed >= 700).float().mean())
    assert above == pytest.approx(0.25 * 0.3, abs=0.015)  # a quarter drawn over all 1000 steps
    with pytest.raises(InvalidInput):
        TimestepRange(0.0)


def test_pair_batches_crop_winner_and_loser_at_the_same_offset() -> None:
    ramp = torch.linspace(-1, 1, 40).expand(1, H, 40).clone()
    source = PairBatches([ramp, ramp.clone()], [(0, 1, 0.5)], width=16, pairs_per_batch=3, seed=0)
    batch = source.next_batch()
    assert batch.winners.shape == (3, 1, H, 16)
    assert torch.equal(batch.winners, batch.losers)
    assert batch.weights.tolist() == [0.5] * 3
    state = source.state_dict()
    again = source.next_batch()
    source.load_state_dict(state)
    assert torch.equal(source.next_batch().winners, again.winners)


def test_replay_is_trained_with_the_plain_epsilon_loss(tiny_model) -> None:
    """With replay crops the loss is the DPO loss plus replay_weight × the ε-loss on them."""
    images, _ = stripe_data()
    x = torch.stack([torch.as_tensor(images[k]).float()[None] / 127.5 - 1 for k in range(8)])[..., :16]
    policy = copy.deepcopy(tiny_model.denoiser).train()
    ctx = context(tiny_model, frozen_reference(tiny_model))
    dpo = DiffusionDPOLoss(beta=1000.0, timesteps=TimestepRange(0.7), replay_weight=0.5)
    loss = dpo(policy, PreferencePairBatch(x[:2], x[2:4], replay=x[4:]), ctx)
    assert float(loss.detach()) == pytest.approx(dpo.last["dpo_loss"] + 0.5 * dpo.last["replay_loss"], rel=1e-6)
    assert dpo.last["dpo_loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert dpo.last["replay_loss"] > 0


class Crash(Exception):
    pass


def test_a_preference_run_resumes_exactly(tiny_model, tmp_path) -> None:
    images, pairs = stripe_data()
    pref = PreferenceConfig("dpo", dpo_beta=2000.0)
    cfg = small_cfg(6, eval_every=3)
    straight = preference_finetune(tiny_model, images, pairs=pairs, cfg=cfg, pref=pref, out_dir=tmp_path / "a")

    def crash_at_step_4(fraction: float, message: str | None = None) -> None:
        if message and message.startswith("dpo: step 4/"):
            raise Crash

    with pytest.raises(Crash):  # the checkpoint of step 3 is on disk
        preference_finetune(tiny_model, images, pairs=pairs, cfg=cfg, pref=pref, out_dir=tmp_path / "b",
                            progress=crash_at_step_4)
    with pytest.raises(InvalidInput, match="already holds"):
        preference_finetune(tiny_model, images, pairs=pairs, cfg=cfg, pref=pref, out_dir=tmp_path / "b")
    resumed = preference_finetune(tiny_model, images, pairs=pairs, cfg=cfg, pref=pref, out_dir=tmp_path / "b",
                                  resume=True)
    assert resumed.steps == straight.steps == 6
    a = load_model_folder(straight.model_dir, device="cpu").denoiser.state_dict()
    b = load_model_folder(resumed.model_dir, device="cpu").denoiser.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_examples_are_refused(tiny_model, tmp_path) -> None:
    images, pairs = stripe_data()
    with pytest.raises(InvalidInput, match="no preference pairs"):
        preference_finetune(tiny_model, images, pairs=[], cfg=small_cfg(1), out_dir=tmp_path / "a")
    with pytest.raises(InvalidInput, match="no mel image"):
        preference_finetune(tiny_model, images, pairs=[(0, 99, 1.0)], cfg=small_cfg(1), out_dir=tmp_path / "b")
    with pytest.raises(InvalidInput, match="itself"):
        preference_finetune(tiny_model, images, pairs=[(0, 0, 1.0)], cfg=small_cfg(1), out_dir=tmp_path / "c")
