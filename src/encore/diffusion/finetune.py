"""Confidence-weighted fine-tuning of a model version on curated clips (DESIGN.md §2 step 8).

Objective (the paper's §4.1): for clips ``x₀`` with confidences ``c``,

    L = E[ c · ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖² ]

with ``t ~ U{0..T-1}`` under the *parent's* noise schedule (an imported audio-diffusion model
keeps its linear betas). Each batch is computed with
:func:`encore.diffusion.train.weighted_diffusion_loss` (``Σ wᵢ mseᵢ / Σ wᵢ``).

What else happens, because fine-tuning a generator on its own preferred outputs is known to
lose fidelity and diversity (``research/feedback_alignment.md`` §0, §1.2: Lee et al. keep
pre-training data in every batch; RAFT-style loops degrade over rounds):

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
  weights are exported;
- **resumable**: a checkpoint (model, EMA, optimiser, samplers, RNG states, best state) at
  every evaluation; ``resume=True`` continues it exactly;
- bf16 autocast on CPUs with native bf16 (as :mod:`encore.diffusion.train`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encore.diffusion.finetune_data import (
    ClipSampler,
    EvalSets,
    clip_tensor,
    data_fingerprint,
    evaluate_sets,
    fixed_clip_batch,
)
from encore.diffusion.folder import LoadedModel, save_model_folder
from encore.diffusion.train import (
    EMA,
    CropSampler,
    TrainConfig,
    bf16_supported,
    fixed_heldout_batch,
    lr_at,
    read_log,
    weighted_diffusion_loss,
)
from encore.errors import ConfigurationError, InvalidInput

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
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
class FinetuneConfig:
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Build from a dict, ignoring unknown keys (e.g. service-level settings)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tune produced.

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
    train_clip_loss, heldout_clip_loss, replay_loss : tuple of (float or None, float or None)
        ``(parent, exported)`` EMA losses on fixed crops/t/noise (confidence-weighted for
        clips; None where the set is empty).
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
    train_clip_loss: tuple[float | None, float | None]
    heldout_clip_loss: tuple[float | None, float | None]
    replay_loss: tuple[float | None, float | None]
    training_set: tuple[dict[str, Any], ...]
    loss_curve: tuple[dict[str, Any], ...]
    log_path: Path
    curve_path: Path | None
    config: FinetuneConfig

    def summary(self) -> dict[str, Any]:
        """JSON-able figures (stored with the run and the model folder)."""

        def pair(p: tuple[float | None, float | None]) -> dict[str, float | None]:
            return {"parent": _round(p[0]), "finetuned": _round(p[1])}

        return {
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "best_step": self.best_step,
            "stop_reason": self.stop_reason,
            "wall_seconds": round(self.wall_seconds, 1),
            "samples_seen": self.samples_seen,
            "train_clip_loss": pair(self.train_clip_loss),
            "heldout_clip_loss": pair(self.heldout_clip_loss),
            "replay_loss": pair(self.replay_loss),
        }


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


# ----------------------------------------------------------------------------------------------
# RNG state (python / numpy / torch), as train.py does for exact resume


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def training_noise_scheduler(parent: LoadedModel) -> Any:
    """A DDPM scheduler with the parent's betas (the schedule its ε-predictor was trained on)."""
    from diffusers import DDPMScheduler

    config = dict(parent.scheduler.config)
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    kwargs = {k: config[k] for k in keep if k in config and config[k] is not None}
    return DDPMScheduler(**kwargs, prediction_type="epsilon", clip_sample=False)


# ----------------------------------------------------------------------------------------------
# the loop


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

    Parameters
    ----------
    parent : LoadedModel
        The model to start from (not modified: a copy is trained).
    clips : sequence of (image, confidence)
        Images ``(H, W)`` uint8 or float in [-1, 1] with ``H = parent.mel_config.y_res`` and
        any width (crops of the training width are drawn; narrower clips are padded with
        silence); confidences finite and ≥ 0 (the loss weight ``c``).
    cfg : FinetuneConfig
    out_dir : path
        Run folder: ``checkpoint.pt``, ``loss_log.jsonl``, ``loss_curve.png``,
        ``finetune_config.json`` (and ``model/`` unless ``model_dir`` is given).
    replay : Dataset, optional
        Items ``(image (1, H, W') in [-1, 1], label)`` (or bare images) whose ``__getitem__``
        draws a random crop of the training width (``encore.corpus`` ``SpectrogramDataset``
        or :func:`parent_replay_set`). None (or ``replay_fraction = 0``) disables replay.
    replay_heldout : Dataset, optional
        Held-out corpus crops for the replay loss (forgetting), logged even when there is no
        replay; ``replay`` itself when None.
    clip_ids : sequence, optional
        Identifiers of the clips (recorded in the training set); positions when None.
    model_dir : path, optional
        Where to write the model folder (atomically); ``out_dir/model`` when None.
    name, parent_name : str, optional
        Recorded in the folder's ``encore.json`` (``parent_name`` defaults to the parent's name).
    record : dict, optional
        Extra JSON-able facts merged into ``encore.json``'s ``training`` record.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (exactly: same data, same
        config); start afresh when it does not.
    progress : callable, optional
        ``progress(fraction, message)``, called every step.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    InvalidInput
        No clip with a positive confidence, bad confidences or image shapes, or a checkpoint
        that belongs to other data / without ``resume``.
    ConfigurationError
        If the loss diverges (NaN/inf).
    """
    cfg = cfg or FinetuneConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CHECKPOINT_FILE, out / LOG_FILE
    model_dir = Path(model_dir) if model_dir is not None else out / MODEL_DIR
    report = progress or (lambda fraction, message=None: None)

    # -- data ------------------------------------------------------------------------------
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
    n_held = 0
    if len(kept) >= cfg.min_clips_for_heldout and cfg.heldout_fraction > 0:
        n_held = min(max(round(cfg.heldout_fraction * len(kept)), 1), cfg.max_heldout_clips)
    perm = torch.randperm(len(kept), generator=torch.Generator().manual_seed(cfg.seed + 7)).tolist()
    held_idx = sorted(kept[j] for j in perm[:n_held])
    train_idx = [i for i in kept if i not in set(held_idx)]
    roles = {i: "train" for i in train_idx} | {i: "heldout" for i in held_idx} | {i: "dropped" for i in dropped}
    training_set = tuple(
        {"clip_id": ids[i], "confidence": round(weights[i], 6), "role": roles[i]} for i in range(len(ids))
    )
    train_images = [images[i] for i in train_idx]
    train_weights = [weights[i] for i in train_idx]
    held_images = [images[i] for i in held_idx]
    held_weights = [weights[i] for i in held_idx]
    mean_c = float(np.mean(train_weights))
    n_replay = cfg.replay_per_batch if replay is not None and len(replay) > 0 else 0
    if cfg.replay_fraction > 0 and n_replay == 0:
        logger.warning("fine-tune: replay_fraction=%s but no replay data; training on clips only",
                       cfg.replay_fraction)
    n_clip = cfg.batch_size - n_replay
    fingerprint = data_fingerprint(images, weights)

    # -- resume? -----------------------------------------------------------------------------
    checkpoint: dict[str, Any] | None = None
    if ckpt_path.is_file():
        if not resume:
            raise InvalidInput(f"{out} already holds a fine-tune ({CHECKPOINT_FILE}); pass resume=True or another out_dir")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if checkpoint.get("fingerprint") != fingerprint:
            raise InvalidInput(f"the checkpoint in {out} was made from other clips or confidences")
        saved = FinetuneConfig.from_dict(checkpoint["config"])
        if dataclasses.replace(saved, max_minutes=cfg.max_minutes) != cfg:
            logger.warning("resuming %s with its saved configuration (the one passed differs)", out)
        cfg = dataclasses.replace(saved, max_minutes=cfg.max_minutes)
        logger.info("resuming fine-tune %s at step %d", out, checkpoint["step"])
    elif resume:
        logger.info("no checkpoint in %s: starting the fine-tune from the parent", out)

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = parent.denoiser.device
    use_bf16 = device.type == "cpu" and (
        cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_supported())
    )
    _seed_everything(cfg.seed)

    # -- model, optimiser, schedule -------------------------------------------------------------
    model = copy.deepcopy(parent.denoiser).float().to(device)
    model.requires_grad_(True)
    model.train()
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = TrainConfig(lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio, warmup_steps=cfg.warmup_steps,
                           max_steps=cfg.steps)
    noise_scheduler = training_noise_scheduler(parent)
    T = int(noise_scheduler.config.num_train_timesteps)
    clip_sampler = ClipSampler(train_images, train_weights, width, cfg.seed)
    replay_sampler = CropSampler(replay, n_replay, cfg.seed + 1) if n_replay else None
    fixed_train = fixed_clip_batch(train_images, train_weights, width, cfg.eval_crops, T, cfg.seed + 11)
    fixed_held = fixed_clip_batch(held_images, held_weights, width, cfg.eval_crops, T, cfg.seed + 12)
    forgetting = replay_heldout if replay_heldout is not None else replay
    fixed_replay = None
    if forgetting is not None and len(forgetting) > 0:  # measured even without replay
        fixed_replay = fixed_heldout_batch(forgetting, cfg.eval_crops, T, cfg.seed + 13)

    step, elapsed_before = 0, 0.0
    best: dict[str, Any] = {"loss": None, "ft_loss": None, "step": 0, "state": None, "bad": 0,
                            "parent": None, "figures": None}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        clip_sampler.load_state_dict(checkpoint["clip_sampler"])
        if replay_sampler is not None and checkpoint.get("replay_sampler") is not None:
            replay_sampler.load_state_dict(checkpoint["replay_sampler"])
        _set_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        elapsed_before = float(checkpoint["elapsed_seconds"])
        best = checkpoint["best"]
        rows = [r for r in read_log(log_path) if r.get("step", 0) <= step]  # later rows are redone
        log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        log_path.write_text("")
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger.info(
        "fine-tuning %s: %d training clips (%d held out, %d dropped), batch %d (%d replay), "
        "%d steps, lr %.1e, bf16=%s",
        parent.name, len(train_idx), len(held_idx), len(dropped), cfg.batch_size, n_replay,
        cfg.steps, cfg.lr, use_bf16,
    )

    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    t_start = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    eval_sets = EvalSets(fixed_train, fixed_held, fixed_replay)

    def evaluate(m: torch.nn.Module) -> dict[str, float | None]:
        return evaluate_sets(m, eval_sets, noise_scheduler, use_bf16=use_bf16)

    def save_checkpoint() -> None:
        _atomic_torch_save({
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "clip_sampler": clip_sampler.state_dict(),
            "replay_sampler": replay_sampler.state_dict() if replay_sampler is not None else None,
            "rng": _rng_state(), "step": step, "elapsed_seconds": elapsed(), "best": best,
            "config": cfg.to_dict(), "fingerprint": fingerprint,
        }, ckpt_path)

    stop_reason = "completed"
    window: list[float] = []
    log_file = log_path.open("a")

    def log(row: dict[str, Any]) -> None:
        log_file.write(json.dumps(row) + "\n")
        log_file.flush()

    def evaluation_point() -> bool:
        """Evaluate the EMA model at ``step``, keep the best weights; True = stop early.

        The criterion is the held-out clip loss. ``best["loss"]`` is the best value so far,
        the parent's (step 0) included; ``best["state"]`` the best *fine-tuned* weights (so a
        run that never beats its parent still exports its least-bad evaluated weights).
        Without held-out clips the last evaluated weights are kept and nothing stops early.
        """
        figures = evaluate(ema.model)
        log({"step": step, **{k: _round(v) for k, v in figures.items()}, "elapsed": round(elapsed(), 1)})
        logger.info("fine-tune step %d: %s", step,
                    ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if v is not None))
        criterion = figures["heldout_clip_loss"]
        if step == 0:
            best.update(parent=figures, loss=criterion)
            return False
        if criterion is None:
            best.update(step=step, state=_cpu_state(ema.model), figures=figures)
            return False
        if best["state"] is None or criterion < best["ft_loss"]:
            best.update(ft_loss=criterion, step=step, state=_cpu_state(ema.model), figures=figures)
        if best["loss"] is None or criterion < best["loss"]:
            best.update(loss=criterion, bad=0)
            return False
        best["bad"] += 1
        return cfg.patience > 0 and best["bad"] >= cfg.patience

    try:
        if checkpoint is None:
            evaluation_point()
        report(step / cfg.steps, "fine-tuning")
        while step < cfg.steps:
            lr = lr_at(step / cfg.steps, step, schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr

            x_clip, w_clip = clip_sampler.next_batch(n_clip)
            if replay_sampler is not None:
                x_rep = replay_sampler.next_batch().reshape(n_replay, 1, height, -1)
                if x_rep.shape[-1] != width:
                    raise InvalidInput(f"replay crops are {x_rep.shape[-1]} frames wide; the fine-tune uses {width}")
                x0 = torch.cat([x_clip, x_rep.float()])
                w = torch.cat([w_clip, torch.full((n_replay,), mean_c)])
            else:
                x0, w = x_clip, w_clip
            x0, w = x0.to(device), w.to(device)
            noise = torch.randn_like(x0)
            t = torch.randint(0, T, (x0.shape[0],), device=device)
            xt = noise_scheduler.add_noise(x0, noise, t)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                pred = model(xt, t)
            loss = weighted_diffusion_loss(pred, noise, w)
            if not torch.isfinite(loss):
                raise ConfigurationError(f"fine-tune diverged: loss={loss.item()!r} at step {step}")
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(model)
            step += 1
            window.append(loss.item())

            if step % cfg.log_every == 0 or step == cfg.steps:
                log({"step": step, "loss": round(float(np.mean(window)), 6), "lr": lr,
                     "grad_norm": round(float(grad_norm), 4), "samples": step * cfg.batch_size,
                     "elapsed": round(elapsed(), 1)})
                window.clear()
            stop = False
            if step % cfg.eval_every == 0 or step == cfg.steps:
                stop = evaluation_point()
                save_checkpoint()
            report(min(step / cfg.steps, 1.0), f"fine-tuning: step {step}/{cfg.steps}")
            if stop:
                stop_reason = "early_stop"
                logger.info("fine-tune: held-out clip loss did not improve for %d evaluations; stopping at step %d",
                            cfg.patience, step)
                break
            if budget_s is not None and elapsed() >= budget_s:
                stop_reason = "time_budget"
                logger.warning("fine-tune: wall-time budget of %.1f min reached at step %d", cfg.max_minutes, step)
                if step % cfg.eval_every:
                    evaluation_point()
                    save_checkpoint()
                break
    finally:
        log_file.close()

    # -- export the best EMA weights ---------------------------------------------------------
    final_model = copy.deepcopy(ema.model)
    if best.get("state") is not None:
        final_model.load_state_dict(best["state"])
    final_model.eval().requires_grad_(False)
    exported = best.get("figures") or evaluate(final_model)
    parent_figures = best["parent"] or {}
    curve = plot_finetune_curve(log_path, out / CURVE_FILE, title=f"fine-tune of {parent.name}",
                                best_step=int(best.get("step") or step))
    rows = tuple(read_log(log_path))
    result = FinetuneResult(
        out_dir=out, model_dir=model_dir, steps=step, planned_steps=cfg.steps,
        best_step=int(best.get("step") or step), stop_reason=stop_reason, wall_seconds=elapsed(),
        samples_seen=step * cfg.batch_size,
        train_clip_loss=(parent_figures.get("train_clip_loss"), exported.get("train_clip_loss")),
        heldout_clip_loss=(parent_figures.get("heldout_clip_loss"), exported.get("heldout_clip_loss")),
        replay_loss=(parent_figures.get("replay_loss"), exported.get("replay_loss")),
        training_set=training_set, loss_curve=rows, log_path=log_path,
        curve_path=curve, config=cfg,
    )
    training = {
        "kind": "finetune",
        "config": cfg.to_dict(),
        "replay": {"crops_per_batch": n_replay, "weight": round(mean_c, 6)},
        "training_set": list(training_set),
        **result.summary(),
        **(record or {}),
    }
    extra: dict[str, Any] = {CONFIG_FILE: json.dumps(cfg.to_dict(), indent=2) + "\n",
                             LOG_FILE: log_path}
    if curve is not None:
        extra[CURVE_FILE] = curve
    report(1.0, "saving the new model")
    save_model_folder(
        model_dir, final_model, parent.mel_config, scheduler=parent.scheduler,
        name=name or model_dir.name, parent=parent_name or parent.name, training=training,
        extra_files=extra,
    )
    logger.info(
        "fine-tune done: %d steps (%s), best step %d, %.1f min; train-clip loss %s -> %s",
        step, stop_reason, result.best_step, result.wall_seconds / 60,
        _round(result.train_clip_loss[0], 4), _round(result.train_clip_loss[1], 4),
    )
    return result


def plot_finetune_curve(log_path: str | Path, png_path: str | Path, *, title: str = "",
                        best_step: int | None = None) -> Path | None:
    """The training loss and the three evaluated EMA losses against steps, as a PNG.

    Training loss: mean over each log window (clips and replay, weighted). Evaluated: the
    EMA model on fixed crops / t / noise of the training clips, the held-out clips (both
    confidence-weighted) and held-out corpus crops. A dotted line marks the exported step.
    """
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    train = [r for r in rows if "loss" in r]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.5,
                color="grey", label="training batches (window mean)")
    labels = {"train_clip_loss": "training clips (EMA)", "heldout_clip_loss": "held-out clips (EMA)",
              "replay_loss": "held-out corpus (EMA)"}
    for key, label in labels.items():
        pts = [r for r in rows if r.get(key) is not None]
        if pts:
            ax.plot([r["step"] for r in pts], [r[key] for r in pts], "o-", ms=3, label=label)
    if best_step is not None:
        ax.axvline(best_step, ls=":", color="black", lw=0.8, label=f"exported (step {best_step})")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "fine-tune")
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


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
    from encore.diffusion.evaluate import evaluate_model

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

