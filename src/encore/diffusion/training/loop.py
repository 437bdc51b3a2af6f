"""The one training loop: base training, the paper's fine-tune and any new method run here.

Every step: set the learning rate (linear warm-up, cosine decay), take a batch from the
method's :class:`~encore.diffusion.training.objectives.BatchSource`, compute the method's
:class:`~encore.diffusion.training.objectives.Objective`, refuse a non-finite loss, backward,
clip gradients, AdamW step, EMA update. Around it the loop owns the bookkeeping, once for all
methods: a log row every ``log_every`` steps, an evaluation of the EMA weights at the start, every
``eval_every`` steps and at the end, the best evaluated weights and early stopping
(:class:`BestWeights`), checkpoints (every evaluation and/or every ``checkpoint_seconds``, and
at the end) holding everything an exact resume needs, and the stop (``max_steps``, the
wall-time budget ``max_seconds`` or early stopping).

Started by ``torchrun`` (a process group is active, :mod:`encore.diffusion.training.distributed`),
the loop trains data-parallel: the model through ``DistributedDataParallel``, each process
computing its share of every global batch; rank 0 writes the log and checkpoints and calls
``on_step`` / ``on_checkpoint``; the clock and the evaluations are rank 0's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from encore.diffusion.training import distributed
from encore.diffusion.training.objectives import BatchSource, LossContext, Objective
from encore.diffusion.training.state import (
    CHECKPOINT_FILE,
    EMA,
    LOG_FILE,
    append_log,
    atomic_torch_save,
    lr_at,
    rng_state,
    set_rng_state,
    truncate_log,
)
from encore.errors import ConfigurationError, InvalidInput

logger = logging.getLogger(__name__)

class DictConfig:
    """For a method's config dataclass: ``to_dict`` for JSON, ``from_dict`` ignoring keys it
    does not know (service-level settings, keys of other versions in a checkpoint)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: ``evaluate(ema_model) -> {figure name: value or None}`` (lower is better)
Evaluator = Callable[[torch.nn.Module], dict[str, float | None]]


@dataclass(frozen=True)
class LoopConfig:
    """How long, how fast and how often: the loop's settings (each method maps its own config).

    ``schedule_on_time``: the cosine runs on the larger of the step and the wall-time fraction
    (base training on a time budget); otherwise on steps only (``max_seconds`` is then just a
    guard). ``criterion``: the evaluated figure that picks the exported weights and drives
    early stopping (``patience`` evaluations without improvement; 0 = never stop early).
    """

    max_steps: int | None
    batch_size: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    ema_decay: float
    log_every: int
    eval_every: int
    max_seconds: float | None = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    schedule_on_time: bool = False
    checkpoint_on_eval: bool = False
    checkpoint_seconds: float | None = None
    criterion: str | None = None
    patience: int = 0
    name: str = "training"
    #: ``(parameter-name prefix, learning-rate multiplier)``: parameters that learn faster than
    #: the rest (a conditioned fine-tune's zero-initialised group embedding)
    lr_scales: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_seconds is None:
            raise InvalidInput("a training loop needs max_steps or max_seconds")
        if self.max_steps is None and not self.schedule_on_time:
            raise InvalidInput("without max_steps the schedule must run on wall time")


@dataclass(frozen=True)
class LoopStatus:
    """Passed to ``on_step`` after every step."""

    step: int
    fraction: float  # of the planned run, in [0, 1]
    loss: float
    lr: float


@dataclass(frozen=True)
class LoopOutcome:
    steps: int
    stop_reason: str  # "completed", "early_stop" or "time_budget"
    wall_seconds: float
    figures: dict[str, float | None]  # the last evaluation ({} without an evaluator)


def param_groups(model: torch.nn.Module, lr_scales: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: one, or one per ``lr_scales`` prefix (first match wins)
    plus the rest (``lr_scale`` 1)."""
    if not lr_scales:
        return [{"params": list(model.parameters())}]
    groups: list[dict[str, Any]] = [{"params": [], "lr_scale": float(k)} for _, k in lr_scales]
    rest: dict[str, Any] = {"params": [], "lr_scale": 1.0}
    for name, p in model.named_parameters():
        i = next((i for i, (prefix, _) in enumerate(lr_scales) if name.startswith(prefix)), None)
        (rest if i is None else groups[i])["params"].append(p)
    return [g for g in [rest, *groups] if g["params"]]


def round_or_none(x: float | None, digits: int = 6) -> float | None:
    """``x`` rounded to ``digits`` for logs and records; None, NaN and infinities become None
    (JSON has no NaN: a record holding one could not be read back by a strict parser)."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class BestWeights:
    """The best evaluated EMA weights by ``criterion`` (lower is better), and early stopping.

    ``state["loss"]`` is the best value so far, the starting model's (step 0) included;
    ``state["state"]`` the best *trained* weights (so a run that never beats its start still
    exports its least-bad evaluated weights). Where the criterion is None (nothing to judge
    by) the last evaluated weights are kept and nothing stops early.
    """

    def __init__(self, criterion: str, patience: int) -> None:
        self.criterion, self.patience = criterion, patience
        self.state: dict[str, Any] = {"loss": None, "ft_loss": None, "step": 0, "state": None,
                                      "bad": 0, "parent": None, "figures": None}

    def observe(self, step: int, figures: dict[str, float | None], model: torch.nn.Module) -> bool:
        """Record an evaluation at ``step``; True when training should stop early."""
        best, value = self.state, figures.get(self.criterion)
        if step == 0:
            best.update(parent=figures, loss=value)
            return False
        if value is None:
            best.update(step=step, state=cpu_state(model), figures=figures)
            return False
        if best["state"] is None or value < best["ft_loss"]:
            best.update(ft_loss=value, step=step, state=cpu_state(model), figures=figures)
        if best["loss"] is None or value < best["loss"]:
            best.update(loss=value, bad=0)
            return False
        best["bad"] += 1
        return self.patience > 0 and best["bad"] >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state


class TrainingLoop:
    """One run of the loop over ``model`` (trained in place; the EMA copy is ``self.ema.model``).

    Parameters
    ----------
    model : torch.nn.Module
        The weights to train, on their device.
    objective, batches :
        The method's loss and batch source.
    config : LoopConfig
    out : path
        The run folder: ``checkpoint.pt`` and ``loss_log.jsonl`` are written here.
    noise_scheduler : diffusers scheduler
        The training schedule (its ``config.num_train_timesteps`` is ``T``).
    use_bf16 : bool
    evaluate : callable, optional
        ``evaluate(ema_model) -> figures``; None: no evaluations.
    reference : torch.nn.Module, optional
        A frozen model handed to the objective in :attr:`LossContext.reference`.
    best : BestWeights, optional
        Keeps the best evaluated weights (and stops early); None: the last weights count.
    checkpoint_extra : mapping, optional
        Stored in every checkpoint (the method's config, a data fingerprint).
    on_step : callable, optional
        ``on_step(LoopStatus)`` after every step (progress bars, job progress).
    on_checkpoint : callable, optional
        ``on_checkpoint(loop)`` after every checkpoint (plots, model-folder exports).
    compile_backend : str, optional
        Train through ``torch.compile(model, backend=...)`` (``"inductor"`` on a GPU; ``"eager"``
        traces without generating code, for tests). Only the training forward/backward goes
        through the compiled module; it shares its parameters with ``model``, so the EMA,
        checkpoints, evaluations and exports see ``model`` itself (no ``_orig_mod.`` keys).
        Under ``torchrun`` it compiles the ``DistributedDataParallel`` wrapper.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        objective: Objective,
        batches: BatchSource,
        config: LoopConfig,
        out: str | Path,
        noise_scheduler: Any,
        use_bf16: bool,
        evaluate: Evaluator | None = None,
        reference: torch.nn.Module | None = None,
        best: BestWeights | None = None,
        checkpoint_extra: Mapping[str, Any] | None = None,
        on_step: Callable[[LoopStatus], None] | None = None,
        on_checkpoint: Callable[[TrainingLoop], None] | None = None,
        compile_backend: str | None = None,
    ) -> None:
        self.model, self.objective, self.batches, self.cfg = model, objective, batches, config
        device = next(model.parameters()).device
        self.parallel = distributed.active()
        model.train()
        wrapped: torch.nn.Module = model
        if self.parallel:  # one process of a torchrun launch: rank 0's weights everywhere, then DDP
            wrapped = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
                if device.type == "cuda" else None)
        self.train_model: torch.nn.Module = (
            torch.compile(wrapped, backend=compile_backend) if compile_backend else wrapped  # type: ignore[assignment]
        )
        self.out = Path(out)
        self.log_path, self.checkpoint_path = self.out / LOG_FILE, self.out / CHECKPOINT_FILE
        self.evaluate, self.best = evaluate, best
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.on_step, self.on_checkpoint = on_step, on_checkpoint
        self.ema = EMA(model, config.ema_decay)
        self.optimizer = torch.optim.AdamW(param_groups(model, config.lr_scales), lr=config.lr,
                                           betas=config.adam_betas, weight_decay=config.weight_decay)
        self.noise_scheduler = noise_scheduler
        self.context = LossContext(
            noise_scheduler=noise_scheduler,
            num_train_timesteps=int(noise_scheduler.config.num_train_timesteps),
            use_bf16=use_bf16, device=device, reference=reference, data_parallel=self.parallel)
        self.step, self.figures = 0, {}
        self._elapsed_before, self._t_start = 0.0, time.monotonic()
        self._now = 0.0  # the run's elapsed seconds at the top of this step (rank 0's)
        self._window: list[float] = []
        self._evaluated_at: int | None = None
        self._saved: tuple[int, int | None] | None = None
        self._last_save = 0.0  # elapsed seconds at the last checkpoint
        self._resumed = self._opened = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Training seconds over all sessions of the run."""
        return self._elapsed_before + time.monotonic() - self._t_start

    def fraction(self, elapsed: float | None = None) -> float:
        """The planned run done: steps, or the larger of steps and wall time (``elapsed``
        seconds; now when None)."""
        parts = []
        if self.cfg.max_steps is not None:
            parts.append(self.step / self.cfg.max_steps)
        if self.cfg.max_seconds is not None and (self.cfg.schedule_on_time or not parts):
            parts.append((self.elapsed if elapsed is None else elapsed) / self.cfg.max_seconds)
        return max(parts)

    def _over_budget(self) -> bool:
        return self.cfg.max_seconds is not None and self._now >= self.cfg.max_seconds

    def _tick(self) -> float:
        """Read the clock for this step: rank 0's elapsed seconds on every process, so all
        take the same learning rate and stop or checkpoint at the same step."""
        self._now = distributed.broadcast(self.elapsed) if self.parallel else self.elapsed
        return self._now

    def resume(self, checkpoint: dict[str, Any] | None) -> None:
        """Continue from ``checkpoint`` exactly (None: a fresh run, the log emptied)."""
        main = distributed.is_main()
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._opened = True
        if checkpoint is None:
            if main:
                self.log_path.write_text("")
            return
        self.model.load_state_dict(checkpoint["model"])
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        # "data" since the loop was shared; older checkpoints kept the samplers at the top level
        self.batches.load_state_dict(checkpoint.get("data", checkpoint))
        if self.best is not None and checkpoint.get("best") is not None:
            self.best.load_state_dict(checkpoint["best"])
        set_rng_state(checkpoint["rng"])
        self.step = int(checkpoint["step"])
        self._elapsed_before = float(checkpoint["elapsed_seconds"])
        self._t_start = time.monotonic()
        self.figures = dict(checkpoint.get("figures") or {})
        self._resumed = True
        if main:
            truncate_log(self.log_path, self.step)

    def save_checkpoint(self) -> None:
        """Write the checkpoint (rank 0; every process waits for it) and call ``on_checkpoint``."""
        if distributed.is_main():
            atomic_torch_save({
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "data": self.batches.state_dict(),
                "rng": rng_state(), "step": self.step, "elapsed_seconds": self.elapsed,
                "figures": self.figures, "best": self.best.state_dict() if self.best else None,
                **self.checkpoint_extra,
            }, self.checkpoint_path)
            if self.on_checkpoint is not None:
                self.on_checkpoint(self)
        self._saved = (self.step, self._evaluated_at)
        self._last_save = self._now
        distributed.barrier()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> LoopOutcome:
        """Train until ``max_steps``, the time budget or early stopping; checkpoint at the end.

        A run that was never resumed starts fresh.
        """
        if not self._opened:
            self.resume(None)
        self._t_start = time.monotonic()
        self._last_save = self._tick()
        if not self._resumed and self.evaluate is not None:
            self._evaluation()
        stop_reason, lr = "completed", 0.0
        grad_norm: float | None = None
        while not self._finished():
            loss, lr, grad_norm = self._train_step()
            self._window.append(loss)
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps:
                self._log_window(lr, grad_norm)
            stop = False
            if self.evaluate is not None and (
                self.step % self.cfg.eval_every == 0 or self.step == self.cfg.max_steps
            ):
                stop = self._evaluation()
                if self.cfg.checkpoint_on_eval:
                    self.save_checkpoint()
            seconds = self.cfg.checkpoint_seconds
            if seconds is not None and self._now - self._last_save >= seconds:
                self.save_checkpoint()
            if self.on_step is not None and distributed.is_main():
                self.on_step(LoopStatus(self.step, min(self.fraction(), 1.0), loss, lr))
            if stop:
                stop_reason = "early_stop"
                logger.info("%s: %s did not improve for %d evaluations; stopping at step %d",
                            self.cfg.name, self.cfg.criterion, self.cfg.patience, self.step)
                break
        else:
            if self._over_budget() and not self._at_max_steps():
                stop_reason = "time_budget"
                logger.warning("%s: wall-time budget of %.1f min reached at step %d",
                               self.cfg.name, (self.cfg.max_seconds or 0) / 60, self.step)
        self._finish(lr, grad_norm)
        return LoopOutcome(self.step, stop_reason, self.elapsed, dict(self.figures))

    def _at_max_steps(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def _finished(self) -> bool:
        """Whether to stop before another step (reads the clock for it: :meth:`_tick`)."""
        self._tick()
        return self._at_max_steps() or self._over_budget()

    def _train_step(self) -> tuple[float, float, float]:
        cfg = self.cfg
        lr = lr_at(self.fraction(self._now), self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        batch = self.batches.next_batch()
        loss = self.objective(self.train_model, batch, dataclasses.replace(self.context, step=self.step))
        if not torch.isfinite(loss):
            raise ConfigurationError(f"{cfg.name} diverged: loss={loss.item()!r} at step {self.step}")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.step += 1
        return loss.item(), lr, float(grad_norm)

    def _log_window(self, lr: float, grad_norm: float | None) -> None:
        if not distributed.is_main():
            self._window.clear()
            return
        row: dict[str, Any] = {"step": self.step, "loss": round(float(np.mean(self._window)), 6), "lr": lr}
        if grad_norm is not None:
            row["grad_norm"] = round(grad_norm, 4)
        append_log(self.log_path, {**row, "samples": self.step * self.cfg.batch_size,
                                   "elapsed": round(self.elapsed, 1)})
        self._window.clear()

    def _evaluation(self) -> bool:
        """Evaluate the EMA weights at this step and log the figures; True = stop early."""
        assert self.evaluate is not None
        # every process evaluates (the same weights, the same RNG draws); rank 0's figures count
        self.figures = distributed.broadcast(self.evaluate(self.ema.model))
        self._evaluated_at = self.step
        if distributed.is_main():
            append_log(self.log_path, {"step": self.step, **{k: round_or_none(v) for k, v in self.figures.items()},
                                       "elapsed": round(self.elapsed, 1)})
        logger.info("%s step %d: %s", self.cfg.name, self.step,
                    ", ".join(f"{k} {v:.4f}" for k, v in self.figures.items() if v is not None))
        return self.best is not None and self.best.observe(self.step, self.figures, self.ema.model)

    def _finish(self, lr: float, grad_norm: float | None) -> None:
        """Evaluate the last weights (unless just done), log the last window, checkpoint."""
        if self.evaluate is not None and self._evaluated_at != self.step:
            self._evaluation()
        if self._window:
            self._log_window(lr, grad_norm)
        if self._saved != (self.step, self._evaluated_at):
            self.save_checkpoint()
