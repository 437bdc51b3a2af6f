"""Confidence-weighted fine-tuning of a model version on curated clips (the paper's §4.1).

Objective: for clips ``x₀`` with confidences ``c``,

    L = E[ c · ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖² ]

with ``t ~ U{0..T-1}`` under the *parent's* noise schedule (an imported audio-diffusion model
keeps its linear betas). It runs on the shared loop (:mod:`encore.diffusion.training`) as
:class:`~encore.diffusion.training.EpsilonLoss` over
:class:`~encore.diffusion.finetune_data.ClipReplayBatches`; the loop provides the optimiser,
schedule, EMA, evaluations, checkpoints, exact resume and early stopping.

What else happens, because fine-tuning a generator on its own preferred outputs is known to
lose fidelity and diversity (Lee et al. keep pre-training data in every batch; RAFT-style
loops degrade over rounds; see ``docs/finetune.md``):

- **replay**: a share ``replay_fraction`` of every batch is random crops of the base corpus
  (or, where no corpus is installed, of the parent's own generations — an anchor to the
  parent, see ``docs/finetune.md``). Replay crops get the training set's mean confidence as
  weight, so their share of the batch is also their expected share of the loss;
- **random crops** of the model's width (clips are ~5.9 s ≈ 254 frames, the model trains on
  128); clips narrower than the width are padded with silence (-1);
- clips with ``c = 0`` are dropped before training (they would contribute nothing but still
  take batch slots and random draws);
- **EMA** weights are evaluated and exported; a small learning rate with a short warm-up and
  a cosine decay over the planned steps;
- **held-out loss**: a few clips are held out (10 %, at most 10, none below 10 clips); every
  ``eval_every`` steps the EMA model's loss on fixed crops / t / noise of the training clips,
  the held-out clips and the replay set is logged; training stops early after ``patience``
  evaluations without improvement of the held-out clip loss, and the best evaluated EMA
  weights are exported (:class:`~encore.diffusion.training.BestWeights`);
- **resumable**: a checkpoint (model, EMA, optimiser, samplers, RNG states, best state) at
  every evaluation; ``resume=True`` continues it exactly;
- bf16 autocast on CPUs with native bf16.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler

from encore.diffusion.evaluate import evaluate_model
from encore.diffusion.finetune_data import (
    ClipReplayBatches,
    ClipSampler,
    EvalSets,
    clip_tensor,
    data_fingerprint,
    evaluate_sets,
    fixed_clip_batch,
)
from encore.diffusion.folder import LoadedModel, carry_taste_groups, save_model_folder
from encore.diffusion.train import fixed_heldout_batch
from encore.diffusion.training import (
    BestWeights,
    DictConfig,
    EpsilonLoss,
    LoopConfig,
    LoopOutcome,
    TrainingLoop,
    distributed,
    load_checkpoint,
    read_log,
    round_or_none,
    seed_everything,
    use_bf16,
)
from encore.diffusion.training.plots import plot_log
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

LOG_FILE = "loss_log.jsonl"
CURVE_FILE = "loss_curve.png"
CONFIG_FILE = "finetune_config.json"
MODEL_DIR = "model"

#: ``progress(fraction in [0, 1], message)``
ProgressFn = Callable[[float, str | None], None]
ClipInput = tuple[Any, float]


# ----------------------------------------------------------------------------------------------
# configuration and result


@dataclass(frozen=True)
class FinetuneConfig(DictConfig):
    """Fine-tuning hyper-parameters (defaults measured in ``docs/finetune.md``).

    Attributes
    ----------
    steps : int
        Planned optimiser steps (the cosine schedule runs over them).
    max_minutes : float or None
        Wall-time guard: stop (and export the best weights so far) after this long.
    batch_size : int
        Crops per step, clips and replay together.
    replay_fraction : float
        Share of every batch taken from the replay set, in [0, 1).
    lr, min_lr_ratio, warmup_steps, weight_decay, grad_clip :
        AdamW; linear warm-up then cosine decay to ``lr * min_lr_ratio``.
    ema_decay : float
        EMA decay (with the usual ``(1+n)/(10+n)`` warm-up).
    heldout_fraction, max_heldout_clips, min_clips_for_heldout :
        How many clips are held out for early stopping: ``round(fraction · n)`` clamped to
        ``[1, max]``, none when there are fewer than ``min_clips_for_heldout`` clips.
    eval_every : int
        Steps between evaluations (and checkpoints).
    eval_crops : int
        Fixed crops per evaluated set.
    patience : int
        Evaluations without a better held-out clip loss before stopping (0 = never).
    width : int or None
        Crop width in frames; the parent's ``mel_config.x_res`` when None.
    seed, precision, threads, log_every :
        ``precision`` is ``"auto"`` (bf16 where the CPU has it), ``"bf16"`` or ``"fp32"``.
    """

    steps: int = 300
    max_minutes: float | None = 9.0
    batch_size: int = 16
    replay_fraction: float = 0.5
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    heldout_fraction: float = 0.1
    max_heldout_clips: int = 10
    min_clips_for_heldout: int = 10
    eval_every: int = 50
    eval_crops: int = 48
    patience: int = 3
    width: int | None = None
    seed: int = 0
    precision: str = "auto"
    threads: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise InvalidInput(f"steps={self.steps!r} must be > 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InvalidInput(f"max_minutes={self.max_minutes!r} must be > 0 (or None)")
        if self.batch_size < 2:
            raise InvalidInput(f"batch_size={self.batch_size!r} must be at least 2")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise InvalidInput(f"replay_fraction={self.replay_fraction!r} must be in [0, 1)")
        if not self.lr > 0:
            raise InvalidInput(f"lr={self.lr!r} must be > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidInput(f"ema_decay={self.ema_decay!r} must be in [0, 1)")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise InvalidInput(f"heldout_fraction={self.heldout_fraction!r} must be in [0, 1)")
        if self.eval_every <= 0 or self.eval_crops <= 0 or self.log_every <= 0:
            raise InvalidInput(
                f"eval_every={self.eval_every!r}, eval_crops={self.eval_crops!r} and "
                f"log_every={self.log_every!r} must be > 0"
            )
        if self.patience < 0:
            raise InvalidInput(f"patience={self.patience!r} must be >= 0")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InvalidInput(f"precision={self.precision!r} must be auto, bf16 or fp32")
        if self.width is not None and self.width <= 0:
            raise InvalidInput(f"width={self.width!r} must be > 0")

    @property
    def replay_per_batch(self) -> int:
        """Replay crops per batch (the rest are clip crops; at least one of each kind)."""
        if self.replay_fraction <= 0:
            return 0
        return min(max(round(self.replay_fraction * self.batch_size), 1), self.batch_size - 1)


@dataclass(frozen=True)
class RunResult:
    """What every fine-tune produced (the paper's method, :class:`FinetuneResult`, and the
    preference methods, :class:`~encore.diffusion.preference.PreferenceResult`).

    Attributes
    ----------
    model_dir : Path
        The exported model folder (best EMA weights, ``parent`` recorded).
    steps : int
        Optimiser steps taken (over all sessions of a resumed run).
    best_step : int
        Step of the exported weights.
    stop_reason : str
        ``"completed"``, ``"early_stop"`` or ``"time_budget"``.
    wall_seconds : float
        Training time over all sessions.
    training_set : tuple of dict
        ``{"clip_id", "confidence", "role"}`` with role ``train``, ``heldout`` or
        ``dropped`` (confidence 0).
    loss_curve : tuple of dict
        The log rows (``{"step", "loss", ...}`` and ``{"step", "train_clip_loss", ...}``).
    """

    out_dir: Path
    model_dir: Path
    steps: int
    planned_steps: int
    best_step: int
    stop_reason: str
    wall_seconds: float
    samples_seen: int
    training_set: tuple[dict[str, Any], ...]
    loss_curve: tuple[dict[str, Any], ...]
    log_path: Path
    curve_path: Path | None
    config: FinetuneConfig

    def summary(self) -> dict[str, Any]:
        """JSON-able figures (stored with the run and the model folder)."""
        return {
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "best_step": self.best_step,
            "stop_reason": self.stop_reason,
            "wall_seconds": round(self.wall_seconds, 1),
            "samples_seen": self.samples_seen,
        }


def _parent_and_finetuned(figure: tuple[float | None, float | None]) -> dict[str, float | None]:
    """A ``(parent, exported)`` figure as it is recorded."""
    return {"parent": round_or_none(figure[0]), "finetuned": round_or_none(figure[1])}


@dataclass(frozen=True)
class FinetuneResult(RunResult):
    """What the paper's fine-tune produced (:class:`RunResult` and its losses).

    Attributes
    ----------
    train_clip_loss, heldout_clip_loss, replay_loss : tuple of (float or None, float or None)
        ``(parent, exported)`` EMA losses on fixed crops/t/noise (confidence-weighted for
        clips; None where the set is empty).
    """

    train_clip_loss: tuple[float | None, float | None]
    heldout_clip_loss: tuple[float | None, float | None]
    replay_loss: tuple[float | None, float | None]

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "train_clip_loss": _parent_and_finetuned(self.train_clip_loss),
            "heldout_clip_loss": _parent_and_finetuned(self.heldout_clip_loss),
            "replay_loss": _parent_and_finetuned(self.replay_loss),
        }


def training_noise_scheduler(parent: LoadedModel) -> Any:
    """A DDPM scheduler with the parent's betas (the schedule its ε-predictor was trained on)."""
    config = dict(parent.scheduler.config)
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    kwargs = {k: config[k] for k in keep if k in config and config[k] is not None}
    return DDPMScheduler(**kwargs, prediction_type="epsilon", clip_sample=False)


# ----------------------------------------------------------------------------------------------
# the loop




@dataclass(frozen=True)
class ClipSplit:
    """The validated clips of a fine-tune, split into training and held-out clips."""

    height: int
    width: int
    train_images: list[torch.Tensor]
    train_weights: list[float]
    held_images: list[torch.Tensor]
    held_weights: list[float]
    training_set: tuple[dict[str, Any], ...]
    fingerprint: str

    @property
    def mean_confidence(self) -> float:
        return float(np.mean(self.train_weights))


def heldout_positions(n: int, cfg: FinetuneConfig) -> list[int]:
    """Which of ``n`` examples are held out, seeded: the paper's rule (10 %, at most 10, none
    below 10 examples)."""
    n_held = 0
    if n >= cfg.min_clips_for_heldout and cfg.heldout_fraction > 0:
        n_held = min(max(round(cfg.heldout_fraction * n), 1), cfg.max_heldout_clips)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 7)).tolist()
    return perm[:n_held]


def split_clips(parent: LoadedModel, clips: Sequence[ClipInput], clip_ids: Sequence[Any] | None,
                cfg: FinetuneConfig) -> ClipSplit:
    """Validate images and confidences, drop ``c = 0``, hold out a seeded few for early stopping."""
    height = int(parent.mel_config.y_res)
    width = int(cfg.width or parent.mel_config.x_res)
    multiple = parent.denoiser.width_multiple
    if width % multiple:
        raise InvalidInput(f"crop width {width} must be a multiple of {multiple} for this model")
    ids = list(clip_ids) if clip_ids is not None else list(range(len(clips)))
    if len(ids) != len(clips):
        raise InvalidInput(f"{len(ids)} clip ids for {len(clips)} clips")
    images, weights = [], []
    for cid, (image, c) in zip(ids, clips, strict=True):
        c = float(c)
        if not math.isfinite(c) or c < 0:
            raise InvalidInput(f"clip {cid!r} has confidence {c!r}; it must be a finite number >= 0")
        images.append(clip_tensor(image, height))
        weights.append(c)
    kept = [i for i, c in enumerate(weights) if c > 0]
    dropped = [i for i, c in enumerate(weights) if c <= 0]
    if not kept:
        raise InvalidInput(f"none of the {len(clips)} clips has a positive confidence; nothing to learn")
    if dropped:
        logger.info("fine-tune: %d clip(s) with confidence 0 dropped", len(dropped))
    held_idx = sorted(kept[j] for j in heldout_positions(len(kept), cfg))
    train_idx = [i for i in kept if i not in set(held_idx)]
    roles = {i: "train" for i in train_idx} | {i: "heldout" for i in held_idx} | {i: "dropped" for i in dropped}
    return ClipSplit(
        height=height, width=width,
        train_images=[images[i] for i in train_idx], train_weights=[weights[i] for i in train_idx],
        held_images=[images[i] for i in held_idx], held_weights=[weights[i] for i in held_idx],
        training_set=tuple({"clip_id": ids[i], "confidence": round(weights[i], 6), "role": roles[i]}
                           for i in range(len(ids))),
        fingerprint=data_fingerprint(images, weights),
    )


def loop_config(cfg: FinetuneConfig, criterion: str = "heldout_clip_loss",
                name: str = "fine-tune") -> LoopConfig:
    """The loop settings of a fine-tune: cosine over steps, a checkpoint at every evaluation,
    the best ``criterion`` exported, early stopping after ``patience`` evaluations."""
    return LoopConfig(
        max_steps=cfg.steps, max_seconds=cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None,
        batch_size=cfg.batch_size, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
        ema_decay=cfg.ema_decay, log_every=cfg.log_every, eval_every=cfg.eval_every,
        checkpoint_on_eval=True, criterion=criterion, patience=cfg.patience, name=name,
    )


def open_run(out: Path, cfg: FinetuneConfig, fingerprint: str, resume: bool, *,
             what: str = "fine-tune",
             data: str = "clips or confidences") -> tuple[FinetuneConfig, dict[str, Any] | None]:
    """The config and checkpoint to continue (the saved config, the ``max_minutes`` passed); a
    checkpoint of other ``data`` (its fingerprint) is an error."""
    checkpoint = load_checkpoint(out, resume=resume, what=what, required=False)
    if checkpoint is None:
        if resume:
            logger.info("no checkpoint in %s: starting the %s from the parent", out, what)
        return cfg, None
    if checkpoint.get("fingerprint") != fingerprint:
        raise InvalidInput(f"the checkpoint in {out} was made from other {data}")
    saved = FinetuneConfig.from_dict(checkpoint["config"])
    if dataclasses.replace(saved, max_minutes=cfg.max_minutes) != cfg:
        logger.warning("resuming %s with its saved configuration (the one passed differs)", out)
    logger.info("resuming %s %s at step %d", what, out, checkpoint["step"])
    return dataclasses.replace(saved, max_minutes=cfg.max_minutes), checkpoint


def set_up_torch(cfg: FinetuneConfig, device: torch.device) -> bool:
    """Threads and seeds for a fine-tune; whether it runs in bf16."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    bf16 = use_bf16(cfg.precision, device)
    seed_everything(cfg.seed)
    return bf16


def _eval_sets(data: ClipSplit, cfg: FinetuneConfig, forgetting: Any, T: int) -> EvalSets:
    """Fixed crops / t / noise of the training clips, the held-out clips and held-out corpus."""
    return EvalSets(
        fixed_clip_batch(data.train_images, data.train_weights, data.width, cfg.eval_crops, T, cfg.seed + 11),
        fixed_clip_batch(data.held_images, data.held_weights, data.width, cfg.eval_crops, T, cfg.seed + 12),
        fixed_heldout_batch(forgetting, cfg.eval_crops, T, cfg.seed + 13),  # even without replay
    )


def _no_progress(fraction: float, message: str | None = None) -> None:
    return None


def _batches(data: ClipSplit, cfg: FinetuneConfig, replay: Any) -> ClipReplayBatches:
    n_replay = cfg.replay_per_batch if replay is not None and len(replay) > 0 else 0
    if cfg.replay_fraction > 0 and n_replay == 0:
        logger.warning("fine-tune: replay_fraction=%s but no replay data; training on clips only",
                       cfg.replay_fraction)
    clips = ClipSampler(data.train_images, data.train_weights, data.width, cfg.seed)
    return ClipReplayBatches(clips, cfg.batch_size - n_replay, replay, n_replay, seed=cfg.seed + 1,
                             height=data.height, replay_weight=data.mean_confidence)


def finetune(
    parent: LoadedModel,
    clips: Sequence[ClipInput],
    *,
    cfg: FinetuneConfig | None = None,
    out_dir: str | Path,
    replay: Any = None,
    replay_heldout: Any = None,
    clip_ids: Sequence[Any] | None = None,
    model_dir: str | Path | None = None,
    name: str | None = None,
    parent_name: str | None = None,
    record: dict[str, Any] | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> FinetuneResult:
    """Fine-tune ``parent`` on confidence-weighted clips; export the result as a model folder.

    ``parent`` is not modified (a copy is trained). ``clips``: ``(image, confidence)`` with
    images ``(H, W)`` uint8 or float in [-1, 1], ``H = parent.mel_config.y_res``, any width
    (narrower than the crop width: padded with silence), confidences finite and ≥ 0.
    ``out_dir`` holds ``checkpoint.pt``, ``loss_log.jsonl``, ``loss_curve.png``,
    ``finetune_config.json`` (and ``model/`` unless ``model_dir`` is given). ``replay``: a
    dataset whose ``__getitem__`` draws a random crop of the training width (a corpus
    ``SpectrogramDataset`` or :func:`~encore.diffusion.finetune_data.parent_replay_set`);
    None disables replay. ``replay_heldout``: held-out corpus crops for the replay loss
    (forgetting), ``replay`` when None. ``clip_ids`` are recorded in the training set
    (positions when None); ``name``, ``parent_name`` and ``record`` go into the folder's
    ``encore.json``. ``resume=True`` continues ``out_dir/checkpoint.pt`` exactly when it
    exists (same data, the saved config). ``progress(fraction, message)`` is called every step.

    Raises
    ------
    InvalidInput
        No clip with a positive confidence, bad confidences or image shapes, or a checkpoint
        that belongs to other data / without ``resume``.
    ConfigurationError
        If the loss diverges (NaN/inf).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or _no_progress
    data = split_clips(parent, clips, clip_ids, cfg or FinetuneConfig())
    cfg, checkpoint = open_run(out, cfg or FinetuneConfig(), data.fingerprint, resume)
    batches = _batches(data, cfg, replay)
    bf16 = set_up_torch(cfg, parent.denoiser.device)
    model = copy.deepcopy(parent.denoiser).float().to(parent.denoiser.device).requires_grad_(True)
    noise_scheduler = training_noise_scheduler(parent)
    T = int(noise_scheduler.config.num_train_timesteps)
    eval_sets = _eval_sets(data, cfg, replay_heldout if replay_heldout is not None else replay, T)
    loop = TrainingLoop(
        model, objective=EpsilonLoss(), batches=batches, config=loop_config(cfg), out=out,
        noise_scheduler=noise_scheduler, use_bf16=bf16,
        evaluate=lambda m: evaluate_sets(m, eval_sets, noise_scheduler, use_bf16=bf16),
        best=BestWeights("heldout_clip_loss", cfg.patience),
        checkpoint_extra={"config": cfg.to_dict(), "fingerprint": data.fingerprint},
        on_step=lambda s: report(s.fraction, f"fine-tuning: step {s.step}/{cfg.steps}"),
    )
    loop.resume(checkpoint)
    if distributed.is_main():
        (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger.info(
        "fine-tuning %s: %d training clips (%d held out, %d dropped), batch %d (%d replay), "
        "%d steps, lr %.1e, bf16=%s", parent.name, len(data.train_images), len(data.held_images),
        sum(e["role"] == "dropped" for e in data.training_set), cfg.batch_size,
        batches.n_replay, cfg.steps, cfg.lr, bf16,
    )
    report(loop.step / cfg.steps, "fine-tuning")
    outcome = loop.run()
    model_dir = Path(model_dir) if model_dir is not None else out / MODEL_DIR
    return _export(loop, outcome, parent, data, cfg, model_dir=model_dir, n_replay=batches.n_replay,
                   name=name, parent_name=parent_name, record=record, report=report)


def best_weights(loop: TrainingLoop, outcome: LoopOutcome) -> tuple[torch.nn.Module, dict[str, Any],
                                                                    dict[str, Any], int]:
    """The EMA model with the best evaluated weights (the last when none was picked), frozen;
    its figures, the parent's, and its step."""
    assert loop.best is not None and loop.evaluate is not None
    best = loop.best.state
    final_model = copy.deepcopy(loop.ema.model)
    if best.get("state") is not None:
        final_model.load_state_dict(best["state"])
    final_model.eval().requires_grad_(False)
    exported = best.get("figures") or loop.evaluate(final_model)
    return final_model, exported, best.get("parent") or {}, int(best.get("step") or outcome.steps)


def save_export(loop: TrainingLoop, model: torch.nn.Module, parent: LoadedModel, *, model_dir: Path,
                config_json: dict[str, Any], curve: Path | None, training: dict[str, Any],
                name: str | None, parent_name: str | None, report: ProgressFn,
                taste_groups: dict[str, Any] | None) -> None:
    """Write a fine-tune's model folder (rank 0 alone under ``torchrun``): the weights, the
    config, the loss log and curve, ``training`` in ``encore.json``, the taste groups."""
    extra: dict[str, Any] = {CONFIG_FILE: json.dumps(config_json, indent=2) + "\n",
                             LOG_FILE: loop.log_path}
    if curve is not None:
        extra[CURVE_FILE] = curve
    report(1.0, "saving the new model")
    save_model_folder(
        model_dir, model, parent.mel_config, scheduler=parent.scheduler,
        name=name or model_dir.name, parent=parent_name or parent.name, training=training,
        extra_files=extra,
    )
    carry_taste_groups(model_dir, model, parent, taste_groups)


def _export(loop: TrainingLoop, outcome: LoopOutcome, parent: LoadedModel, data: ClipSplit,
            cfg: FinetuneConfig, *, model_dir: Path, n_replay: int, name: str | None,
            parent_name: str | None, record: dict[str, Any] | None,
            report: ProgressFn) -> FinetuneResult:
    """Write the best evaluated EMA weights as a model folder (atomically, rank 0 alone under
    ``torchrun``); the result."""
    final_model, exported, parent_figures, best_step = best_weights(loop, outcome)
    main = distributed.is_main()
    curve = plot_finetune_curve(loop.log_path, loop.out / CURVE_FILE, title=f"fine-tune of {parent.name}",
                                best_step=best_step) if main else None
    result = FinetuneResult(
        out_dir=loop.out, model_dir=model_dir, steps=outcome.steps, planned_steps=cfg.steps,
        best_step=best_step, stop_reason=outcome.stop_reason, wall_seconds=outcome.wall_seconds,
        samples_seen=outcome.steps * cfg.batch_size,
        train_clip_loss=(parent_figures.get("train_clip_loss"), exported.get("train_clip_loss")),
        heldout_clip_loss=(parent_figures.get("heldout_clip_loss"), exported.get("heldout_clip_loss")),
        replay_loss=(parent_figures.get("replay_loss"), exported.get("replay_loss")),
        training_set=data.training_set, loss_curve=tuple(read_log(loop.log_path)),
        log_path=loop.log_path, curve_path=curve, config=cfg,
    )
    training = {
        "kind": "finetune", "config": cfg.to_dict(),
        "replay": {"crops_per_batch": n_replay, "weight": round(data.mean_confidence, 6)},
        "training_set": list(data.training_set), **result.summary(), **(record or {}),
    }
    if not main:
        return result
    save_export(loop, final_model, parent, model_dir=model_dir, config_json=cfg.to_dict(), curve=curve,
                training=training, name=name, parent_name=parent_name, report=report,
                taste_groups=None)  # a conditioned parent stays conditioned
    logger.info(
        "fine-tune done: %d steps (%s), best step %d, %.1f min; train-clip loss %s -> %s",
        result.steps, result.stop_reason, result.best_step, result.wall_seconds / 60,
        round_or_none(result.train_clip_loss[0], 4), round_or_none(result.train_clip_loss[1], 4),
    )
    return result


def plot_finetune_curve(log_path: str | Path, png_path: str | Path, *, title: str = "",
                        best_step: int | None = None) -> Path | None:
    """The training loss and the three evaluated EMA losses against steps, as a PNG.

    Training loss: mean over each log window (clips and replay, weighted). Evaluated: the
    EMA model on fixed crops / t / noise of the training clips, the held-out clips (both
    confidence-weighted) and held-out corpus crops. A dotted line marks the exported step.
    """
    series = {"train_clip_loss": "training clips (EMA)", "heldout_clip_loss": "held-out clips (EMA)",
              "replay_loss": "held-out corpus (EMA)"}
    return plot_log(log_path, png_path, series=series, title=title or "fine-tune", best_step=best_step)


def evaluate_against_parent(
    model: LoadedModel,
    parent: LoadedModel,
    *,
    heldout: Any,
    train: Any,
    n: int = 32,
    steps: int = 25,
    seed: int = 0,
    precision: str = "auto",
    parent_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The weight-free metrics (``encore eval``) of a new model and of its parent, same settings.

    Parameters
    ----------
    model, parent : LoadedModel
    heldout, train : Dataset
        Held-out and training corpus crops at the models' width.
    n, steps, seed, precision :
        As :func:`encore.diffusion.evaluate.evaluate_model`.
    parent_report : dict, optional
        A stored evaluation of the parent (``EvalReport.to_dict()``), reused when it was made
        with the same ``n``, ``steps``, ``seed`` and width (it saves half the time).

    Returns
    -------
    dict
        ``{"eval": report, "parent_eval": report, "eval_delta": {task: Δ score}}`` (reports
        as :meth:`~encore.diffusion.evaluate.EvalReport.to_dict`). A positive Δ (new − parent
        normalised score) means the new version is further from real music than its parent.
    """
    prec = "fp32" if precision == "fp32" else "auto"
    reports: dict[str, Any] = {}
    width = int(model.mel_config.x_res)
    previous = parent_report
    if previous and (previous.get("n"), previous.get("steps"), previous.get("seed"),
                     previous.get("width")) == (n, steps, seed, width):
        reports["parent_eval"] = previous
    for tag, m in (("eval", model), ("parent_eval", parent)):
        if tag not in reports:
            reports[tag] = evaluate_model(m, heldout=heldout, train=train, n=n, steps=steps,
                                          seed=seed, precision=prec).to_dict()
    new_scores, old_scores = reports["eval"]["scores"], reports["parent_eval"]["scores"]
    reports["eval_delta"] = {k: round(new_scores[k] - old_scores[k], 4)
                             for k in new_scores if k in old_scores}
    return reports

