"""Preference objectives on the shared loop: Diffusion-DPO on pairs, Diffusion-KTO on labels.

Both compare the model being trained (the *policy*, ε_θ) with a frozen copy of the parent (the
*reference*, ε_ref, :attr:`~encore.diffusion.training.LossContext.reference`, ``eval()`` and
no gradients) on the same noisy image: with ``x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε``,

    e_θ(x₀) = ‖ε − ε_θ(x_t, t)‖²,   e_ref(x₀) = ‖ε − ε_ref(x_t, t)‖²   (mean over pixels)

and the *implicit reward* of an image is ``r(x₀) = −(e_θ(x₀) − e_ref(x₀))``: how much better the
policy denoises it than the parent (its ELBO gain, up to the timestep weighting).

- **Diffusion-DPO** (Wallace et al. 2023) on a winner ``x_w`` and loser ``x_l`` with *shared*
  ``ε`` and ``t``:  ``L = −log σ(β (r(x_w) − r(x_l)))``
  ``  = −log σ(−β (e_θ(x_w) − e_ref(x_w) − e_θ(x_l) + e_ref(x_l)))``.
  With the policy equal to the reference the argument is 0 and ``L = log 2``.
- **Diffusion-KTO** (Li et al. 2024) on single images labelled desirable / undesirable:
  ``z₀ = max(mean_batch r, 0)`` (detached: the reference point), and
  ``L = 1 − σ(β (r − z₀))`` for a desirable image, ``1 − σ(β (z₀ − r))`` for an undesirable one.
  With the policy equal to the reference every term is ``1/2``.

Timesteps are drawn where serving uses them (:class:`TimestepRange`): a variation at strength
``s`` starts at ``t ≈ s·T`` and never visits the timesteps above, so most draws are
``t ~ U{0..⌈s·T⌉−1}``; a share ``full_range_share`` (generation from noise, merges) is drawn
from the whole range.

Every batch may also carry *replay* crops (the base corpus, or the parent's generations): they
get the plain ε-loss (:func:`~encore.diffusion.training.weighted_diffusion_loss`, full
timestep range), scaled by ``replay_weight``, as the paper's fine-tune does — the regulariser
that keeps the model from forgetting what music sounds like.

Batch sources draw crops of the clips (winner and loser at the *same* offset: same input song,
same passage) from their own generator; the objectives draw noise and timesteps from the
global torch RNG (the loop seeds and checkpoints both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from encore.diffusion.train import CropSampler
from encore.diffusion.training.objectives import (
    LossContext,
    drop_groups,
    fixed_predictions,
    per_sample_mse,
    weighted_diffusion_loss,
)
from encore.errors import InvalidInput

# ----------------------------------------------------------------------------------------------
# batches


@dataclass(frozen=True)
class PreferencePairBatch:
    """``B`` pairs (``winners[i]`` preferred to ``losers[i]``, ``(B, 1, H, W)``), their weights
    ``(B,)``, optional replay crops ``(R, 1, H, W)`` for the ε-loss regulariser and, for a
    taste-conditioned fine-tune, each pair's taste group ``(B,)`` (its listener's)."""

    winners: torch.Tensor
    losers: torch.Tensor
    weights: torch.Tensor | None = None
    replay: torch.Tensor | None = None
    groups: torch.Tensor | None = None


@dataclass(frozen=True)
class LabelledBatch:
    """``B`` images ``(B, 1, H, W)``, ``desirable`` ``(B,)`` bool, weights ``(B,)``, optional
    replay crops and optional taste groups ``(B,)`` (the rating listener's)."""

    images: torch.Tensor
    desirable: torch.Tensor
    weights: torch.Tensor | None = None
    replay: torch.Tensor | None = None
    groups: torch.Tensor | None = None


def _check_groups(groups: Sequence[int] | None, n: int, what: str) -> list[int] | None:
    if groups is None:
        return None
    out = [int(g) for g in groups]
    if len(out) != n or any(g < 0 for g in out):
        raise InvalidInput(f"{len(out)} taste groups (each >= 0) for {n} {what}")
    return out


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    if x.shape[-1] >= width:
        return x
    return F.pad(x, (0, width - x.shape[-1]), value=-1.0)


class _Epochs:
    """Indices ``0..n-1`` in shuffled epochs from a generator (checkpointable)."""

    def __init__(self, n: int, gen: torch.Generator) -> None:
        self.n, self.gen = n, gen
        self.order: list[int] = []
        self.pos = 0

    def next(self) -> int:
        if self.pos >= len(self.order):
            self.order = torch.randperm(self.n, generator=self.gen).tolist()
            self.pos = 0
        self.pos += 1
        return self.order[self.pos - 1]

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.pos = list(state["order"]), int(state["pos"])


class _Replay:
    """``n`` replay crops per batch (a dataset of random crops), or none."""

    def __init__(self, replay: Any, n: int, seed: int, height: int, width: int) -> None:
        self.n, self.height, self.width = n, height, width
        self.sampler = CropSampler(replay, n, seed) if n > 0 and replay is not None else None

    def next(self) -> torch.Tensor | None:
        if self.sampler is None:
            return None
        x = self.sampler.next_batch().reshape(self.n, 1, self.height, -1).float()
        if x.shape[-1] != self.width:
            raise InvalidInput(f"replay crops are {x.shape[-1]} frames wide; the fine-tune uses {self.width}")
        return x

    def state_dict(self) -> dict[str, Any] | None:
        return self.sampler.state_dict() if self.sampler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.sampler is not None and state is not None:
            self.sampler.load_state_dict(state)


class PairBatches:
    """The DPO batch source: ``pairs_per_batch`` pairs in shuffled epochs, winner and loser
    cropped at the same offset, plus ``n_replay`` replay crops.

    ``images``: ``(1, H, W_i)`` float tensors in [-1, 1] (any width; narrower than ``width``:
    padded with silence); ``pairs``: ``(winner index, loser index, weight)``; ``groups``: each
    pair's taste group (conditioned fine-tunes), carried into the batches.
    """

    def __init__(self, images: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int, float]], *,
                 width: int, pairs_per_batch: int, seed: int, replay: Any = None,
                 n_replay: int = 0, groups: Sequence[int] | None = None) -> None:
        if not pairs:
            raise InvalidInput("no preference pairs to train on")
        if pairs_per_batch < 1:
            raise InvalidInput(f"pairs_per_batch={pairs_per_batch!r} must be at least 1")
        self.images = [_pad(x, width) for x in images]
        self.pairs, self.width, self.per_batch = list(pairs), width, pairs_per_batch
        self.groups = _check_groups(groups, len(self.pairs), "pairs")
        self.gen = torch.Generator().manual_seed(seed)
        self.epochs = _Epochs(len(self.pairs), self.gen)
        self.replay = _Replay(replay, n_replay, seed + 1, int(self.images[0].shape[-2]), width)
        self.n_replay = n_replay if self.replay.sampler is not None else 0

    def next_batch(self) -> PreferencePairBatch:
        winners, losers, weights, groups = [], [], [], []
        for _ in range(self.per_batch):
            k = self.epochs.next()
            w, lo, weight = self.pairs[k]
            groups.append(self.groups[k] if self.groups is not None else 0)
            xw, xl = self.images[w], self.images[lo]
            span = min(xw.shape[-1], xl.shape[-1]) - self.width
            off = int(torch.randint(0, span + 1, (1,), generator=self.gen))
            winners.append(xw[..., off : off + self.width])
            losers.append(xl[..., off : off + self.width])
            weights.append(float(weight))
        return PreferencePairBatch(torch.stack(winners), torch.stack(losers),
                                   torch.tensor(weights, dtype=torch.float32), self.replay.next(),
                                   torch.tensor(groups) if self.groups is not None else None)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "epochs": self.epochs.state_dict(),
                "replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.epochs.load_state_dict(state["epochs"])
        self.replay.load_state_dict(state.get("replay"))


class LabelBatches:
    """The KTO batch source: ``per_batch`` labelled crops, half desirable and half undesirable
    where both kinds exist (each kind in its own shuffled epochs), plus replay crops.

    ``labels``: ``(image index, desirable, weight)``; ``groups``: each label's taste group.
    """

    def __init__(self, images: Sequence[torch.Tensor], labels: Sequence[tuple[int, bool, float]], *,
                 width: int, per_batch: int, seed: int, replay: Any = None, n_replay: int = 0,
                 groups: Sequence[int] | None = None) -> None:
        if not labels:
            raise InvalidInput("no desirable or undesirable clips to train on")
        if per_batch < 1:
            raise InvalidInput(f"per_batch={per_batch!r} must be at least 1")
        self.images = [_pad(x, width) for x in images]
        self.width, self.per_batch = width, per_batch
        self.gen = torch.Generator().manual_seed(seed)
        self.groups = _check_groups(groups, len(labels), "labels")
        tagged = [(*lab, self.groups[j] if self.groups is not None else 0) for j, lab in enumerate(labels)]
        self.kinds = [[lab for lab in tagged if lab[1]], [lab for lab in tagged if not lab[1]]]
        self.kinds = [k for k in self.kinds if k]
        self.epochs = [_Epochs(len(k), self.gen) for k in self.kinds]
        self.replay = _Replay(replay, n_replay, seed + 1, int(self.images[0].shape[-2]), width)
        self.n_replay = n_replay if self.replay.sampler is not None else 0

    def next_batch(self) -> LabelledBatch:
        crops, desirable, weights, groups = [], [], [], []
        for k in range(self.per_batch):
            kind = k % len(self.kinds)
            i, good, weight, group = self.kinds[kind][self.epochs[kind].next()]
            groups.append(group)
            x = self.images[i]
            off = int(torch.randint(0, x.shape[-1] - self.width + 1, (1,), generator=self.gen))
            crops.append(x[..., off : off + self.width])
            desirable.append(bool(good))
            weights.append(float(weight))
        return LabelledBatch(torch.stack(crops), torch.tensor(desirable),
                             torch.tensor(weights, dtype=torch.float32), self.replay.next(),
                             torch.tensor(groups) if self.groups is not None else None)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "epochs": [e.state_dict() for e in self.epochs],
                "replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        for e, s in zip(self.epochs, state["epochs"], strict=True):
            e.load_state_dict(s)
        self.replay.load_state_dict(state.get("replay"))


# ----------------------------------------------------------------------------------------------
# timesteps and the shared pieces


@dataclass(frozen=True)
class TimestepRange:
    """Where training timesteps are drawn: ``t ~ U{0..t_max−1}`` with ``t_max = ⌈strength·T⌉``
    (the steps a variation at the default strength visits), except a share
    ``full_range_share`` drawn from ``U{0..T−1}`` (generation from noise, merges)."""

    strength: float = 0.7
    full_range_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.strength <= 1.0:
            raise InvalidInput(f"strength={self.strength!r} must be in (0, 1]")
        if not 0.0 <= self.full_range_share <= 1.0:
            raise InvalidInput(f"full_range_share={self.full_range_share!r} must be in [0, 1]")

    def t_max(self, T: int) -> int:
        return max(1, min(T, math.ceil(self.strength * T - 1e-9)))

    def sample(self, n: int, T: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` timesteps from the global torch RNG."""
        low = torch.randint(0, self.t_max(T), (n,))
        if self.full_range_share <= 0:
            return low.to(device)
        full = torch.randint(0, T, (n,))
        pick = torch.rand(n) < self.full_range_share
        return torch.where(pick, full, low).to(device)

    def fixed(self, n: int, T: int) -> torch.Tensor:
        """``n`` timesteps spread evenly over the low range (fixed evaluations)."""
        return torch.linspace(0, self.t_max(T) - 1, n).round().long()


def policy_and_reference_errors(model: torch.nn.Module, reference: torch.nn.Module, x0: torch.Tensor,
                                noise: torch.Tensor, t: torch.Tensor, ctx: LossContext,
                                groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e_θ, e_ref)`` per sample on the same ``x_t``; the reference without gradients. With
    ``groups`` both models see the same taste groups (the reference of a conditioned fine-tune
    is the conditioned model it started from)."""
    xt = ctx.noise_scheduler.add_noise(x0, noise, t)
    e_policy = per_sample_mse(ctx.predict(model, xt, t, groups), noise)
    with torch.no_grad():
        e_ref = per_sample_mse(ctx.predict(reference, xt, t, groups), noise)
    return e_policy, e_ref


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    w = weights.to(values).reshape(-1)
    if bool((w < 0).any()):
        raise InvalidInput("weights must be non-negative")
    return (values * w).sum() / w.sum().clamp_min(1e-12)


def _replay_loss(model: torch.nn.Module, replay: torch.Tensor | None, ctx: LossContext) -> torch.Tensor | None:
    if replay is None or replay.shape[0] == 0:
        return None
    x0 = replay.to(ctx.device)
    xt, noise, t = ctx.noised(x0)
    return weighted_diffusion_loss(ctx.predict(model, xt, t), noise)


def _dropped(model: torch.nn.Module, groups: torch.Tensor | None, p: float,
             device: torch.device) -> torch.Tensor | None:
    """A batch's taste groups after label dropout (None: an unconditioned fine-tune)."""
    if groups is None:
        return None
    return drop_groups(groups, p, int(model.num_groups)).to(device)


def dpo_loss(e_w: torch.Tensor, ref_w: torch.Tensor, e_l: torch.Tensor, ref_l: torch.Tensor,
             beta: float, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, margins)``: the weighted mean of ``−log σ(β·margin)`` with
    ``margin = r_w − r_l = −(e_w − ref_w − e_l + ref_l)`` per pair."""
    margin = -((e_w - ref_w) - (e_l - ref_l))
    return _weighted_mean(-F.logsigmoid(beta * margin), weights), margin


def kto_loss(e: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, beta: float,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, rewards, z₀)``: ``r = −(e − ref)``, ``z₀ = max(mean r, 0)`` detached; the weighted
    mean of ``1 − σ(β(r − z₀))`` (desirable) or ``1 − σ(β(z₀ − r))`` (undesirable)."""
    reward = -(e - ref)
    z0 = reward.detach().mean().clamp_min(0.0)
    sign = torch.where(desirable.to(reward.device).bool(), 1.0, -1.0).to(reward)
    return _weighted_mean(1.0 - torch.sigmoid(beta * sign * (reward - z0)), weights), reward, z0


# ----------------------------------------------------------------------------------------------
# objectives


class _PreferenceLoss:
    """What the two preference objectives share: β, where timesteps are drawn, the weight of
    the ε-loss on the replay crops, label dropout, and ``last`` (the batch's figures)."""

    def __init__(self, beta: float, timesteps: TimestepRange, replay_weight: float = 1.0,
                 group_dropout: float = 0.0) -> None:
        if not beta > 0:
            raise InvalidInput(f"beta={beta!r} must be > 0")
        if replay_weight < 0:
            raise InvalidInput(f"replay_weight={replay_weight!r} must be >= 0")
        self.beta, self.timesteps, self.replay_weight = float(beta), timesteps, float(replay_weight)
        self.group_dropout = float(group_dropout)
        self.last: dict[str, float] = {}

    def _with_replay(self, loss: torch.Tensor, model: torch.nn.Module, replay_crops: torch.Tensor | None,
                     ctx: LossContext) -> torch.Tensor:
        """``loss`` plus ``replay_weight`` × the ε-loss on the batch's replay crops (if any)."""
        replay = _replay_loss(model, replay_crops, ctx)
        if replay is not None:
            self.last["replay_loss"] = float(replay.detach())
            loss = loss + self.replay_weight * replay
        return loss


class DiffusionDPOLoss(_PreferenceLoss):
    """Diffusion-DPO on a :class:`PreferencePairBatch` (plus ``replay_weight`` × the ε-loss on its
    replay crops). Reads the frozen parent from ``ctx.reference``. ``last`` holds the batch's
    figures (``dpo_loss``, ``margin``, ``accuracy``, ``replay_loss``) for logging."""

    def __call__(self, model: torch.nn.Module, batch: PreferencePairBatch, ctx: LossContext) -> torch.Tensor:
        if ctx.reference is None:
            raise InvalidInput("Diffusion-DPO needs the frozen parent as the reference model")
        w, lo = batch.winners.to(ctx.device), batch.losers.to(ctx.device)
        n = w.shape[0]
        noise = torch.randn_like(w)
        t = self.timesteps.sample(n, ctx.num_train_timesteps, ctx.device)
        g = _dropped(model, batch.groups, self.group_dropout, ctx.device)
        e, ref = policy_and_reference_errors(model, ctx.reference, torch.cat([w, lo]),
                                             torch.cat([noise, noise]), torch.cat([t, t]), ctx,
                                             torch.cat([g, g]) if g is not None else None)
        weights = batch.weights.to(ctx.device) if batch.weights is not None else None
        loss, margin = dpo_loss(e[:n], ref[:n], e[n:], ref[n:], self.beta, weights)
        m = margin.detach()
        self.last = {"dpo_loss": float(loss.detach()), "margin": float(m.mean()),
                     "accuracy": float((m > 0).float().mean())}
        return self._with_replay(loss, model, batch.replay, ctx)


class DiffusionKTOLoss(_PreferenceLoss):
    """Diffusion-KTO on a :class:`LabelledBatch` (plus ``replay_weight`` × the ε-loss on its replay
    crops). ``last``: ``kto_loss``, ``reward_desirable``, ``reward_undesirable``, ``z0``."""

    def __call__(self, model: torch.nn.Module, batch: LabelledBatch, ctx: LossContext) -> torch.Tensor:
        if ctx.reference is None:
            raise InvalidInput("Diffusion-KTO needs the frozen parent as the reference model")
        x0 = batch.images.to(ctx.device)
        noise = torch.randn_like(x0)
        t = self.timesteps.sample(x0.shape[0], ctx.num_train_timesteps, ctx.device)
        e, ref = policy_and_reference_errors(model, ctx.reference, x0, noise, t, ctx,
                                             _dropped(model, batch.groups, self.group_dropout, ctx.device))
        weights = batch.weights.to(ctx.device) if batch.weights is not None else None
        good = batch.desirable.to(ctx.device).bool()
        loss, reward, z0 = kto_loss(e, ref, good, self.beta, weights)
        r = reward.detach()
        self.last = {"kto_loss": float(loss.detach()), "z0": float(z0),
                     "reward_desirable": float(r[good].mean()) if bool(good.any()) else float("nan"),
                     "reward_undesirable": float(r[~good].mean()) if bool((~good).any()) else float("nan")}
        return self._with_replay(loss, model, batch.replay, ctx)


# ----------------------------------------------------------------------------------------------
# fixed evaluations: implicit rewards on fixed crops / noise / timesteps


@dataclass(frozen=True)
class FixedPairs:
    """Fixed crops of winners and losers, shared noise and timesteps, weights."""

    winners: torch.Tensor
    losers: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor
    weights: torch.Tensor
    groups: torch.Tensor | None = None  # conditioned fine-tunes: each example's taste group


@dataclass(frozen=True)
class FixedLabels:
    images: torch.Tensor
    desirable: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor
    weights: torch.Tensor
    groups: torch.Tensor | None = None  # conditioned fine-tunes: each example's taste group


def fixed_pairs(images: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int, float]], *, width: int,
                n: int, T: int, timesteps: TimestepRange, seed: int,
                groups: Sequence[int] | None = None) -> FixedPairs | None:
    """``n`` fixed pair crops (cycling over the pairs), from a generator of their own."""
    if not pairs:
        return None
    chosen = _cycle(pairs, n)
    (winners, losers), t, noise = _fixed_crops(images, [(w, lo) for w, lo, _ in chosen], width=width,
                                               T=T, timesteps=timesteps, seed=seed)
    return FixedPairs(winners, losers, noise, t, torch.tensor([float(p[2]) for p in chosen]),
                      _cycled(groups, n))


def fixed_labels(images: Sequence[torch.Tensor], labels: Sequence[tuple[int, bool, float]], *, width: int,
                 n: int, T: int, timesteps: TimestepRange, seed: int,
                 groups: Sequence[int] | None = None) -> FixedLabels | None:
    """``n`` fixed labelled crops (cycling over the labels), from a generator of their own."""
    if not labels:
        return None
    chosen = _cycle(labels, n)
    (x,), t, noise = _fixed_crops(images, [(i,) for i, _, _ in chosen], width=width, T=T,
                                  timesteps=timesteps, seed=seed)
    return FixedLabels(x, torch.tensor([bool(d) for _, d, _ in chosen]), noise, t,
                       torch.tensor([float(w) for *_, w in chosen]), _cycled(groups, n))


def _fixed_crops(images: Sequence[torch.Tensor], examples: Sequence[tuple[int, ...]], *, width: int,
                 T: int, timesteps: TimestepRange, seed: int
                 ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The crops, timesteps and noise of fixed examples, from a generator seeded with ``seed``.

    Each example is a tuple of image indices (a pair's winner and loser, a label's clip),
    cropped at one random offset that fits all of them; the result has one stack of crops
    per position in the tuple, the examples' timesteps (shuffled) and noise of one stack's shape.
    """
    g = torch.Generator().manual_seed(seed)
    padded = [_pad(x, width) for x in images]
    crops: list[list[torch.Tensor]] = [[] for _ in examples[0]]
    for example in examples:
        span = min(padded[i].shape[-1] for i in example) - width
        off = int(torch.randint(0, span + 1, (1,), generator=g))
        for column, i in zip(crops, example, strict=True):
            column.append(padded[i][..., off : off + width])
    stacks = [torch.stack(column) for column in crops]
    n = len(examples)
    t = timesteps.fixed(n, T)[torch.randperm(n, generator=g)]
    return stacks, t, torch.randn(stacks[0].shape, generator=g)


def _cycle(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items cycling over ``items`` (the fixed examples, their groups)."""
    return [items[k % len(items)] for k in range(n)]


def _cycled(groups: Sequence[int] | None, n: int) -> torch.Tensor | None:
    """The groups of ``n`` fixed examples that cycle over the examples (as the crops do)."""
    return None if not groups else torch.tensor([int(g) for g in _cycle(groups, n)])


@torch.no_grad()
def _errors(model: torch.nn.Module, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
            noise_scheduler: Any, use_bf16: bool, chunk: int = 16,
            groups: torch.Tensor | None = None) -> torch.Tensor:
    return torch.cat([per_sample_mse(pred, eps).cpu() for _, pred, eps in fixed_predictions(
        model, x0, t, noise, noise_scheduler, use_bf16=use_bf16, chunk=chunk, groups=groups)])


def _reference_errors(reference: torch.nn.Module, x0: torch.Tensor, fixed: Any, noise_scheduler: Any,
                      use_bf16: bool, cache: dict[Any, torch.Tensor] | None) -> torch.Tensor:
    """The frozen reference's errors on fixed crops, computed once per set when ``cache`` is given."""
    key = (id(fixed), id(x0))
    if cache is not None and key in cache:
        return cache[key]
    errors = _errors(reference, x0, fixed.noise, fixed.t, noise_scheduler, use_bf16, groups=fixed.groups)
    if cache is not None:
        cache[key] = errors
    return errors


def pair_figures(model: torch.nn.Module, reference: torch.nn.Module, fixed: FixedPairs, noise_scheduler: Any,
                 *, beta: float, use_bf16: bool, cache: dict[Any, torch.Tensor] | None = None) -> dict[str, float]:
    """On fixed pairs: the DPO loss, the mean (weighted) implicit-reward margin ``r_w − r_l``,
    the share of pairs with a positive margin, and the winners' and losers' mean rewards.
    ``cache`` (a dict kept by the caller) saves the reference's forward passes after the first."""
    e_w = _errors(model, fixed.winners, fixed.noise, fixed.t, noise_scheduler, use_bf16, groups=fixed.groups)
    e_l = _errors(model, fixed.losers, fixed.noise, fixed.t, noise_scheduler, use_bf16, groups=fixed.groups)
    r_w = _reference_errors(reference, fixed.winners, fixed, noise_scheduler, use_bf16, cache)
    r_l = _reference_errors(reference, fixed.losers, fixed, noise_scheduler, use_bf16, cache)
    loss, margin = dpo_loss(e_w, r_w, e_l, r_l, beta, fixed.weights)
    return {"dpo_loss": float(loss), "margin": float(_weighted_mean(margin, fixed.weights)),
            "accuracy": float(_weighted_mean((margin > 0).float(), fixed.weights)),
            "reward_winners": float(_weighted_mean(-(e_w - r_w), fixed.weights)),
            "reward_losers": float(_weighted_mean(-(e_l - r_l), fixed.weights))}


def label_figures(model: torch.nn.Module, reference: torch.nn.Module, fixed: FixedLabels, noise_scheduler: Any,
                  *, beta: float, use_bf16: bool, cache: dict[Any, torch.Tensor] | None = None) -> dict[str, float]:
    """On fixed labelled crops: the KTO loss and the mean implicit rewards of each kind."""
    e = _errors(model, fixed.images, fixed.noise, fixed.t, noise_scheduler, use_bf16, groups=fixed.groups)
    ref = _reference_errors(reference, fixed.images, fixed, noise_scheduler, use_bf16, cache)
    loss, reward, _ = kto_loss(e, ref, fixed.desirable, beta, fixed.weights)
    good = fixed.desirable.bool()
    out = {"kto_loss": float(loss)}
    out["reward_desirable"] = float(_weighted_mean(reward[good], fixed.weights[good])) if bool(good.any()) else float("nan")
    out["reward_undesirable"] = (float(_weighted_mean(reward[~good], fixed.weights[~good]))
                                 if bool((~good).any()) else float("nan"))
    return out
