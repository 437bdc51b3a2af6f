"""The shared training loop with a method it does not ship: a pairwise preference loss
(Diffusion-DPO style) over (winner, loser) batches and a frozen reference model — the plug-in
interface documented in docs/finetune.md."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from encore.diffusion.finetune import training_noise_scheduler
from encore.diffusion.training import (
    LoopConfig,
    LossContext,
    PairBatch,
    TrainingLoop,
    load_checkpoint,
    read_log,
    seed_everything,
)
from encore.errors import InvalidInput

H = W = 16  # the tiny model (tests/diffusion/conftest.py)


def stripes(kind: str, k: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    axis = yy if kind == "rows" else xx
    return ((torch.sin(axis * (0.8 + 0.1 * k)) > 0).float() * 2 - 1)[None]


class PairSource:
    """Pairs (rows stripes preferred to column stripes), drawn from its own generator."""

    def __init__(self, batch: int, seed: int) -> None:
        self.batch, self.gen = batch, torch.Generator().manual_seed(seed)

    def next_batch(self) -> PairBatch:
        ks = torch.randint(0, 4, (self.batch,), generator=self.gen).tolist()
        return PairBatch(torch.stack([stripes("rows", k) for k in ks]),
                         torch.stack([stripes("cols", k) for k in ks]))

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def per_sample_mse(model: torch.nn.Module, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   ctx: LossContext) -> torch.Tensor:
    xt = ctx.noise_scheduler.add_noise(x0, noise, t)
    return (ctx.predict(model, xt, t).float() - noise).pow(2).flatten(1).mean(1)


class PairwisePreferenceLoss:
    """``-log σ(-β [(L_θ(w) - L_ref(w)) - (L_θ(l) - L_ref(l))])`` with shared noise and t."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.references_seen: set[int] = set()

    def __call__(self, model: torch.nn.Module, batch: PairBatch, ctx: LossContext) -> torch.Tensor:
        assert ctx.reference is not None
        self.references_seen.add(id(ctx.reference))
        x0 = torch.cat([batch.winners, batch.losers]).to(ctx.device)
        _, noise, t = ctx.noised(batch.winners.to(ctx.device))
        noise, t = torch.cat([noise, noise]), torch.cat([t, t])
        err = per_sample_mse(model, x0, noise, t, ctx)
        with torch.no_grad():
            ref = per_sample_mse(ctx.reference, x0, noise, t, ctx)
        gain = (err - ref).chunk(2)
        return -F.logsigmoid(-self.beta * (gain[0] - gain[1])).mean()


def loop_cfg(steps: int) -> LoopConfig:
    return LoopConfig(max_steps=steps, batch_size=4, lr=2e-3, min_lr_ratio=1.0, warmup_steps=0,
                      weight_decay=0.0, grad_clip=1.0, ema_decay=0.9, log_every=2, eval_every=4,
                      name="preference")


def make_loop(tiny_model, out, steps: int, loss: PairwisePreferenceLoss) -> TrainingLoop:
    seed_everything(0)
    reference = copy.deepcopy(tiny_model.denoiser).eval().requires_grad_(False)
    model = copy.deepcopy(tiny_model.denoiser).requires_grad_(True)
    return TrainingLoop(model, objective=loss, batches=PairSource(4, seed=1), config=loop_cfg(steps),
                        out=out, noise_scheduler=training_noise_scheduler(tiny_model),
                        use_bf16=False, reference=reference,
                        evaluate=lambda m: {"margin": preference_margin(m, reference, tiny_model)})


def preference_margin(model, reference, parent) -> float:
    """Mean of (L(w) - L_ref(w)) - (L(l) - L_ref(l)) on fixed noise: < 0 = winners favoured."""
    g = torch.Generator().manual_seed(7)
    winners = torch.stack([stripes("rows", k) for k in range(4)] * 4)
    losers = torch.stack([stripes("cols", k) for k in range(4)] * 4)
    noise, t = torch.randn(winners.shape, generator=g), torch.randint(0, 1000, (16,), generator=g)
    ctx = LossContext(training_noise_scheduler(parent), 1000, False, torch.device("cpu"))
    with torch.no_grad():
        gain_w = per_sample_mse(model, winners, noise, t, ctx) - per_sample_mse(reference, winners, noise, t, ctx)
        gain_l = per_sample_mse(model, losers, noise, t, ctx) - per_sample_mse(reference, losers, noise, t, ctx)
    return float((gain_w - gain_l).mean())


def test_a_pair_loss_with_a_frozen_reference_trains_towards_the_winners(tmp_path, tiny_model) -> None:
    loss = PairwisePreferenceLoss(beta=200.0)
    loop = make_loop(tiny_model, tmp_path / "run", 24, loss)
    frozen = {k: v.clone() for k, v in loop.context.reference.state_dict().items()}
    outcome = loop.run()
    assert outcome.steps == 24 and outcome.stop_reason == "completed"
    assert loss.references_seen == {id(loop.context.reference)}
    assert all(torch.equal(v, frozen[k]) for k, v in loop.context.reference.state_dict().items())
    margins = [r["margin"] for r in read_log(tmp_path / "run" / "loss_log.jsonl") if "margin" in r]
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # the EMA starts as the reference
    assert margins[-1] < -0.02 and outcome.figures["margin"] == pytest.approx(margins[-1], abs=1e-6)


def test_any_method_resumes_exactly(tmp_path, tiny_model) -> None:
    straight = make_loop(tiny_model, tmp_path / "a", 8, PairwisePreferenceLoss(beta=200.0))
    straight.resume(None)
    straight.run()
    first = make_loop(tiny_model, tmp_path / "b", 4, PairwisePreferenceLoss(beta=200.0))
    first.resume(None)
    first.run()
    with pytest.raises(InvalidInput, match="already holds a preference run"):
        load_checkpoint(tmp_path / "b", resume=False, what="preference run", required=True)
    resumed = make_loop(tiny_model, tmp_path / "b", 8, PairwisePreferenceLoss(beta=200.0))
    resumed.resume(load_checkpoint(tmp_path / "b", resume=True, what="preference run", required=True))
    resumed.run()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert read_log(tmp_path / "a" / "loss_log.jsonl")[-1]["step"] == 8
    a = [(r["step"], r.get("loss")) for r in read_log(tmp_path / "a" / "loss_log.jsonl")]
    b = [(r["step"], r.get("loss")) for r in read_log(tmp_path / "b" / "loss_log.jsonl")]
    assert a == b


def test_a_loop_needs_a_length() -> None:
    with pytest.raises(InvalidInput, match="max_steps or max_seconds"):
        LoopConfig(max_steps=None, batch_size=1, lr=1.0, min_lr_ratio=1.0, warmup_steps=0,
                   weight_decay=0.0, grad_clip=1.0, ema_decay=0.9, log_every=1, eval_every=1)


def test_round_or_none_writes_only_json_numbers():
    """Records and logs are JSON: a NaN or infinite figure (e.g. a loss over an empty held-out
    set) is recorded as null, never as NaN, which strict JSON parsers refuse."""
    import json
    import math

    from encore.diffusion.training import round_or_none

    figures = {"a": 0.12345678, "b": float("nan"), "c": float("inf"), "d": None, "e": 2}
    rounded = {k: round_or_none(v) for k, v in figures.items()}
    assert rounded == {"a": 0.123457, "b": None, "c": None, "d": None, "e": 2.0}
    assert json.loads(json.dumps(rounded, allow_nan=False)) == rounded
    assert round_or_none(-math.inf, 3) is None and round_or_none(1.23456, 2) == 1.23
