"""The plug-in side of the training loop: batch sources, losses and what a loss sees.

A training method is a :class:`BatchSource` (what one step trains on) and an
:class:`Objective` (the scalar loss of one batch). The loop hands the objective the model
being trained, the batch, and a :class:`LossContext`: the noise schedule, the precision, the
device and — for preference methods — a frozen reference model. The objective draws its own
noise and timesteps from the global torch RNG, which the loop seeds, checkpoints and restores,
so a resumed run draws the same ones.

Batches are plain frozen dataclasses; the loop never looks inside them:

- :class:`WeightedBatch` — images and optional per-sample weights (base training, the paper's
  confidence-weighted fine-tune);
- :class:`PairBatch` — preferred and rejected images of the same prompt (pairwise preference
  losses such as Diffusion-DPO, which also read ``ctx.reference``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from encore.diffusion.training import distributed
from encore.diffusion.training.state import autocast
from encore.errors import InvalidInput


@dataclass(frozen=True)
class LossContext:
    """What an objective may use besides the model and the batch.

    Attributes
    ----------
    noise_scheduler : diffusers scheduler
        The training (DDPM) schedule: ``add_noise(x0, noise, t)``.
    num_train_timesteps : int
        ``T``; objectives draw ``t ~ U{0..T-1}``.
    use_bf16 : bool
        Run the model's forward under bf16 autocast (:meth:`predict` does).
    device : torch.device
        Where the model lives; batches arrive on the CPU (or already on it).
    reference : torch.nn.Module or None
        A frozen copy of the starting model (``eval()``, no gradients), for losses that
        compare against it (Diffusion-DPO, Diffusion-KTO); None unless the method passes one.
    step : int
        Optimiser steps done before this batch.
    data_parallel : bool
        Training runs in several processes (DDP, :mod:`encore.diffusion.training.distributed`):
        :meth:`predict` computes this process's rows and gathers the others', so objectives
        see the whole batch's predictions and need not know.
    """

    noise_scheduler: Any
    num_train_timesteps: int
    use_bf16: bool
    device: torch.device
    reference: torch.nn.Module | None = None
    step: int = 0
    data_parallel: bool = False

    def predict(self, model: torch.nn.Module, xt: torch.Tensor, t: torch.Tensor,
                groups: torch.Tensor | None = None) -> torch.Tensor:
        """``model(xt, t)`` under the run's autocast (bf16 on the CPU or the GPU); with
        ``groups``, ``model(xt, t, groups)`` (a denoiser conditioned on taste groups); with
        ``data_parallel``, this process's rows computed and the rest gathered."""

        def forward(x: torch.Tensor, tt: torch.Tensor, *g: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                return model(x, tt, *g)

        inputs = (xt, t) if groups is None else (xt, t, groups)
        return distributed.gather_rows(forward, *inputs) if self.data_parallel else forward(*inputs)

    def noised(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, ε, t)``: fresh noise and uniform timesteps for clean images ``x0``."""
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.num_train_timesteps, (x0.shape[0],), device=self.device)
        return self.noise_scheduler.add_noise(x0, noise, t), noise, t


class BatchSource(Protocol):
    """Yields one training batch per step; its position is part of the checkpoint."""

    def next_batch(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Objective(Protocol):
    """The scalar loss of one batch; the loop does ``backward()`` and the optimiser step."""

    def __call__(self, model: torch.nn.Module, batch: Any, ctx: LossContext) -> torch.Tensor: ...


def drop_groups(groups: torch.Tensor | None, p: float, null_label: int) -> torch.Tensor | None:
    """Label dropout for classifier-free guidance: each taste-group label becomes the null label
    with probability ``p`` (drawn from the global torch RNG, which the loop checkpoints), so the
    model keeps learning the unconditioned prediction that guidance subtracts from."""
    if groups is None:
        return None
    if not 0.0 <= p <= 1.0:
        raise InvalidInput(f"label dropout p={p!r} must be in [0, 1]")
    drop = torch.rand(groups.shape[0]) < p
    return torch.where(drop.to(groups.device), torch.full_like(groups, null_label), groups)


@dataclass(frozen=True)
class WeightedBatch:
    """Clean images ``(B, 1, H, W)`` in [-1, 1] and per-sample weights ``(B,)`` (None: all 1)."""

    images: torch.Tensor
    weights: torch.Tensor | None = None


@dataclass(frozen=True)
class PairBatch:
    """``B`` preference pairs: ``winners[i]`` was preferred to ``losers[i]`` (both ``(B, 1, H, W)``)."""

    winners: torch.Tensor
    losers: torch.Tensor
    weights: torch.Tensor | None = None


def weighted_diffusion_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample weighted MSE between predicted and true noise.

    Parameters
    ----------
    pred, target : torch.Tensor
        Shape ``(B, ...)``; computed in float32 whatever their dtype.
    weights : torch.Tensor, optional
        Shape ``(B,)``, non-negative (e.g. listener confidences). ``None`` means all ones.

    Returns
    -------
    torch.Tensor
        Scalar ``sum_i w_i * mse_i / sum_i w_i`` (0 when every weight is 0), where ``mse_i``
        is the mean squared error of sample ``i``. With all weights 1 this is the plain MSE;
        samples with weight 0 do not contribute.
    """
    if pred.shape != target.shape:
        raise InvalidInput(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none")
    per_sample = per_sample.reshape(per_sample.shape[0], -1).mean(dim=1)
    if weights is None:
        return per_sample.mean()
    weights = weights.to(per_sample).reshape(-1)
    if weights.shape[0] != per_sample.shape[0]:
        raise InvalidInput(f"weights has {weights.shape[0]} entries for a batch of {per_sample.shape[0]}")
    if bool((weights < 0).any()):
        raise InvalidInput("weights must be non-negative")
    total = weights.sum()
    return (per_sample * weights).sum() / total.clamp_min(1e-12)


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``‖ε − ε̂‖²`` per sample, mean over pixels, in float32: shape ``(B,)``."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


@torch.no_grad()
def fixed_predictions(
    model: torch.nn.Module,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    noise_scheduler: Any,
    *,
    use_bf16: bool,
    chunk: int = 16,
    groups: torch.Tensor | None = None,
    amp_device: str | None = None,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """``model``'s noise predictions on fixed ``(x0, t, noise)`` triples, for the evaluations.

    ``chunk`` items at a time, in eval mode (the model's own mode is restored when the
    iteration ends) and without gradients: yields each chunk's rows, the prediction and the
    true noise, both on the model's device. ``groups``: each item's taste group (a conditioned
    model). bf16 autocast when ``use_bf16``, for ``amp_device``'s kind (default the model's).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, x0.shape[0], chunk):
            rows = slice(i, i + chunk)
            eps, tt = noise[rows].to(device), t[rows].to(device)
            xt = noise_scheduler.add_noise(x0[rows].to(device), eps, tt)
            with autocast(amp_device or device, use_bf16):
                pred = model(xt, tt) if groups is None else model(xt, tt, groups[rows].to(device))
            yield rows, pred, eps
    finally:
        model.train(was_training)


class EpsilonLoss:
    """DDPM ε-prediction on a :class:`WeightedBatch`: ``Σ wᵢ ‖ε − ε_θ(x_t, t)‖²ᵢ / Σ wᵢ``.

    Base training passes no weights; the paper's fine-tune passes listener confidences.
    """

    def __call__(self, model: torch.nn.Module, batch: WeightedBatch, ctx: LossContext) -> torch.Tensor:
        x0 = batch.images.to(ctx.device)
        weights = batch.weights.to(ctx.device) if batch.weights is not None else None
        xt, noise, t = ctx.noised(x0)
        return weighted_diffusion_loss(ctx.predict(model, xt, t), noise, weights)
