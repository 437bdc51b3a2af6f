"""Training loop for the spectrogram diffusion model (the base model v0 and later versions).

The file reads top to bottom like nanoGPT's ``train.py``: configuration, helpers (loss,
learning-rate schedule, EMA, checkpoints), then :func:`train`, whose loop body is

1. set the learning rate (linear warm-up, then cosine decay to a floor);
2. every ``eval_every`` steps, the held-out loss on fixed crops, fixed t and fixed noise;
3. forward (bf16 autocast on CPUs that support it), per-sample epsilon MSE, backward;
4. clip gradients, ``optimizer.step()``, EMA update;
5. a log line every ``log_every`` steps;
6. a resumable checkpoint every ``checkpoint_minutes`` (plus an EMA model-folder export);
7. the termination check (``max_steps`` or the wall-time budget ``max_minutes``).

Objective: DDPM epsilon prediction, ``t ~ U{0..T-1}``, ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε``,
loss = per-sample MSE(ε̂, ε) times a per-sample weight (1 by default; fine-tuning passes
listener confidences), see :func:`weighted_diffusion_loss`.

With ``max_minutes`` the cosine schedule runs on *elapsed wall time* (so the decay finishes when
the budget does, whatever else is using the CPU); with ``max_steps`` it runs on steps (exactly
reproducible).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from encore.errors import ConfigurationError, InvalidInput

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "train_config.json"
LOG_FILE = "loss_log.jsonl"
CURVE_FILE = "loss_curve.png"
MODEL_DIR = "model"  # EMA weights exported as a model folder


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig:
    """Training hyper-parameters; saved as ``train_config.json`` in the run and the model folder."""

    # model: None -> the engine's default_base_config() (or tiny_config() when ``tiny``)
    model_config: dict[str, Any] | None = None
    tiny: bool = False
    # the model folder whose weights started the run (None: a random initialisation)
    init_from: str | None = None
    # data
    width: int = 128  # frames per random crop
    batch_size: int = 16
    # noise schedule (DDPM for training; the engine samples with DDIM of the same betas)
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    # optimiser
    lr: float = 5e-4
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # with the usual (1+n)/(10+n) warm-up
    # length: at least one of the two
    max_steps: int | None = None
    max_minutes: float | None = None
    # bookkeeping
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where the CPU supports it), "bf16" or "fp32"
    threads: int = 0  # torch threads; 0 leaves torch's default
    log_every: int = 25
    eval_every: int = 250
    eval_crops: int = 64
    checkpoint_minutes: float = 10.0
    export_every_checkpoint: bool = True

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_minutes is None:
            raise InvalidInput("TrainConfig needs max_steps or max_minutes (both are None)")
        if self.max_steps is not None and self.max_steps <= 0:
            raise InvalidInput(f"max_steps={self.max_steps!r} must be > 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InvalidInput(f"max_minutes={self.max_minutes!r} must be > 0")
        if self.batch_size <= 0:
            raise InvalidInput(f"batch_size={self.batch_size!r} must be > 0")
        if self.lr <= 0:
            raise InvalidInput(f"lr={self.lr!r} must be > 0")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InvalidInput(f"precision={self.precision!r} must be auto, bf16 or fp32")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidInput(f"ema_decay={self.ema_decay!r} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted-by-budget) run produced."""

    out_dir: Path
    model_dir: Path  # EMA weights as a model folder
    steps: int
    samples_seen: int
    wall_seconds: float  # total over all sessions of the run
    final_loss: float  # mean training loss of the last log window
    heldout_loss: float | None  # last held-out loss of the EMA model
    log_path: Path
    curve_path: Path | None


# ----------------------------------------------------------------------------------------------
# loss, schedule, EMA


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


def lr_at(progress: float, step: int, cfg: TrainConfig) -> float:
    """Learning rate: linear warm-up over ``warmup_steps``, then cosine to ``lr * min_lr_ratio``.

    ``progress`` in [0, 1] is the fraction of the planned run done (steps or wall time).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * p))


class EMA:
    """Exponential moving average of a module's parameters (a frozen deep copy).

    The decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` so early weights do not
    dominate.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])


def make_noise_scheduler(cfg: TrainConfig):
    """The DDPM training scheduler; its config is what the model folder records."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type="epsilon",
        clip_sample=False,
    )


def bf16_supported() -> bool:
    """Whether bf16 autocast is worth it on this CPU (native bf16 instructions)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _use_bf16(cfg: TrainConfig) -> bool:
    if cfg.precision == "fp32":
        return False
    if cfg.precision == "bf16":
        return True
    return bf16_supported()


# ----------------------------------------------------------------------------------------------
# model, data


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """A freshly initialised denoiser from ``cfg.model_config`` (engine defaults when None)."""
    from encore.diffusion.model import (
        DenoiserConfig,
        SpectrogramDenoiser,
        default_base_config,
        tiny_config,
    )

    if cfg.model_config is None:
        config = tiny_config() if cfg.tiny else default_base_config()
    else:
        config = DenoiserConfig.from_dict(cfg.model_config)
    return SpectrogramDenoiser.from_config(config)


def denoiser_config(model: torch.nn.Module) -> dict[str, Any]:
    """The (JSON-able) config that rebuilds ``model`` with :func:`build_model`."""
    return model.config.to_dict()  # type: ignore[attr-defined]


class CropSampler:
    """Random batches of crops from a dataset of ``(image, label)`` items.

    The dataset's own ``__getitem__`` does the random cropping; this class draws the item order
    (shuffled epochs) from its own generator, and seeds python/numpy/torch RNGs so that the
    stream is reproducible and its state can be checkpointed.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int) -> None:
        if len(dataset) == 0:
            raise InvalidInput("the training dataset is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.pos = 0

    def next_batch(self) -> torch.Tensor:
        items = []
        for _ in range(self.batch_size):
            if self.pos >= len(self.order):
                self.order = torch.randperm(len(self.dataset), generator=self.gen).tolist()
                self.pos = 0
            items.append(torch.as_tensor(_image_of(self.dataset[self.order[self.pos]])))
            self.pos += 1
        return torch.stack(items).float()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"gen": self.gen.get_state(), "order": self.order, "pos": self.pos,
                                 "n": len(self.dataset)}
        ds_state = getattr(self.dataset, "state_dict", None)
        if callable(ds_state):
            state["dataset"] = ds_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        if int(state.get("n", -1)) != len(self.dataset):
            # resumed on another corpus (e.g. the full build after an early small one)
            logger.info("dataset size changed (%s -> %d items): new epoch order",
                        state.get("n"), len(self.dataset))
            self.order, self.pos = [], 0
            return
        self.order = list(state["order"])
        self.pos = int(state["pos"])
        ds_load = getattr(self.dataset, "load_state_dict", None)
        if "dataset" in state and callable(ds_load):
            ds_load(state["dataset"])


def _image_of(item: Any) -> Any:
    return item[0] if isinstance(item, tuple | list) else item


def fixed_heldout_batch(
    dataset: Any, n: int, num_train_timesteps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Fixed held-out crops with fixed timesteps (evenly spread over [0, T)) and fixed noise."""
    if dataset is None or len(dataset) == 0:
        return None
    state = _rng_state()
    try:
        _seed_everything(seed + 12345)
        g = torch.Generator().manual_seed(seed + 12345)
        idx = torch.randint(0, len(dataset), (n,), generator=g).tolist()
        images = torch.stack([torch.as_tensor(_image_of(dataset[i])) for i in idx]).float()
        t = torch.linspace(0, num_train_timesteps - 1, n).round().long()
        noise = torch.randn(images.shape, generator=g)
    finally:
        _set_rng_state(state)
    return images, t, noise


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


# ----------------------------------------------------------------------------------------------
# checkpoints, logs, exports


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_model_folder(
    model: torch.nn.Module,
    folder: str | Path,
    *,
    cfg: TrainConfig,
    mel_config: Any,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a model folder, atomically (the engine's ``save_model_folder``).

    The scheduler recorded is the engine's DDIM schedule with this run's training betas;
    ``train_config.json`` is written in; ``dtype=torch.float16`` stores fp16 weights (the
    engine loads them back as float32).
    """
    from encore.diffusion.folder import save_model_folder

    files: dict[str, Any] = {CONFIG_FILE: json.dumps(cfg.to_dict(), indent=2) + "\n"}
    files.update(extra_files or {})
    return save_model_folder(
        folder,
        model,  # type: ignore[arg-type]
        mel_config,
        scheduler=sampling_scheduler(cfg),
        name=name,
        training={"train_config": cfg.to_dict(), **(training or {})},
        metrics=metrics,
        dtype=dtype,
        extra_files=files,
    )


def sampling_scheduler(cfg: TrainConfig) -> Any:
    """The DDIM scheduler the engine samples with: the engine defaults, this run's betas."""
    from diffusers import DDIMScheduler

    from encore.diffusion.folder import default_scheduler_config

    return DDIMScheduler(
        **{
            **default_scheduler_config(),
            "num_train_timesteps": cfg.num_train_timesteps,
            "beta_schedule": cfg.beta_schedule,
            "beta_start": cfg.beta_start,
            "beta_end": cfg.beta_end,
            "prediction_type": "epsilon",
        }
    )


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a run's ``loss_log.jsonl``."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _truncate_log(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    rows = [r for r in read_log(path) if r.get("step", 0) <= max_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def plot_loss_curve(log_path: str | Path, png_path: str | Path, *, title: str = "") -> Path | None:
    """Training loss (log windows) and EMA held-out loss against samples seen, as a PNG."""
    rows = read_log(log_path)
    train_rows = [r for r in rows if "loss" in r]
    held_rows = [r for r in rows if "heldout_loss" in r]
    if not train_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], lw=0.8, alpha=0.7,
            label="train (mean over log window)")
    if held_rows:
        ax.plot([r["step"] for r in held_rows], [r["heldout_loss"] for r in held_rows], "o-",
                ms=3, label="held-out (EMA, fixed crops/t/noise)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or "training loss")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path.with_name(png_path.name + ".tmp.png"))
    plt.close(fig)
    os.replace(png_path.with_name(png_path.name + ".tmp.png"), png_path)
    return png_path


# ----------------------------------------------------------------------------------------------
# the loop


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    noise_scheduler: Any,
    *,
    use_bf16: bool,
    chunk: int = 16,
) -> float:
    """Mean epsilon MSE of ``model`` on fixed (image, t, noise) triples."""
    images, t, noise = batch
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, images.shape[0], chunk):
        x0, tt, eps = images[i : i + chunk], t[i : i + chunk], noise[i : i + chunk]
        xt = noise_scheduler.add_noise(x0, eps, tt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            pred = model(xt, tt)
        total += float(weighted_diffusion_loss(pred, eps)) * x0.shape[0]
        count += x0.shape[0]
    model.train(was_training)
    return total / max(count, 1)


def train(
    cfg: TrainConfig,
    *,
    dataset: Any,
    out_dir: str | Path,
    heldout: Any = None,
    mel_config: Any = None,
    resume: bool = False,
    progress: bool = True,
    weight_fn: Callable[[Sequence[Any]], torch.Tensor] | None = None,
    init_state_dict: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a denoiser on random crops of ``dataset``; write checkpoints, logs and a model folder.

    Parameters
    ----------
    cfg : TrainConfig
        Hyper-parameters. When resuming, the run's saved config is used, except for
        ``max_steps``/``max_minutes`` (which may extend the run), ``threads`` and
        ``checkpoint_minutes``, taken from ``cfg``.
    dataset : Dataset
        Items ``(image, label)`` (or bare images), image ``(1, n_mels, cfg.width)`` float32 in
        [-1, 1]; ``__getitem__`` draws a random crop.
    out_dir : path
        Run folder: ``checkpoint.pt``, ``train_config.json``, ``loss_log.jsonl``,
        ``loss_curve.png`` and ``model/`` (the EMA weights as a model folder).
    heldout : Dataset, optional
        Held-out items for the fixed held-out loss (``cfg.eval_crops`` of them).
    mel_config : MelConfig, optional
        Saved into the exported model folder (taken from ``dataset.mel_config`` when None).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` exactly (model, EMA, optimiser, step, RNGs).
    progress : bool
        Show a tqdm progress bar.
    init_state_dict : dict, optional
        Start from these weights (fine-tuning) instead of a random initialisation.

    Returns
    -------
    TrainResult
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_FILE
    log_path = out / LOG_FILE
    if mel_config is None:
        mel_config = getattr(dataset, "mel_config", None)
    if mel_config is not None and getattr(mel_config, "x_res", cfg.width) != cfg.width:
        mel_config = mel_config.replace(x_res=cfg.width)  # the model's native image width

    checkpoint: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise InvalidInput(f"cannot resume: no {CHECKPOINT_FILE} in {out}")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict(checkpoint["config"])
        cfg = dataclasses.replace(saved, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes,
                                  threads=cfg.threads, checkpoint_minutes=cfg.checkpoint_minutes)
        logger.info("resuming %s at step %d", out, checkpoint["step"])
    elif ckpt_path.exists():
        raise InvalidInput(f"{out} already holds a run ({CHECKPOINT_FILE}); pass resume=True or another out_dir")

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    use_bf16 = _use_bf16(cfg)
    _seed_everything(cfg.seed)

    model = build_model(cfg)
    if init_state_dict is not None:
        model.load_state_dict(init_state_dict)
    if cfg.model_config is None:
        cfg = dataclasses.replace(cfg, model_config=denoiser_config(model))
    model.train()
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )
    noise_scheduler = make_noise_scheduler(cfg)
    sampler = CropSampler(dataset, cfg.batch_size, cfg.seed)
    held = fixed_heldout_batch(heldout, cfg.eval_crops, cfg.num_train_timesteps, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())

    step, elapsed_before = 0, 0.0
    last_heldout: float | None = None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sampler.load_state_dict(checkpoint["sampler"])
        _set_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        elapsed_before = float(checkpoint["elapsed_seconds"])
        last_heldout = checkpoint.get("heldout_loss")
        _truncate_log(log_path, step)
    else:
        log_path.write_text("")
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger.info(
        "training %.2f M parameters, batch %d, bf16=%s, threads=%d, max_steps=%s, max_minutes=%s",
        n_params / 1e6, cfg.batch_size, use_bf16, torch.get_num_threads(), cfg.max_steps, cfg.max_minutes,
    )

    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    t_start = time.monotonic()
    last_ckpt = t_start

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    def progress_fraction() -> float:
        fractions = []
        if cfg.max_steps is not None:
            fractions.append(step / cfg.max_steps)
        if budget_s is not None:
            fractions.append(elapsed() / budget_s)
        return max(fractions)

    def save_checkpoint() -> None:
        state = {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": _rng_state(),
            "step": step,
            "elapsed_seconds": elapsed(),
            "heldout_loss": last_heldout,
            "config": cfg.to_dict(),
        }
        _atomic_torch_save(state, ckpt_path)
        plot_loss_curve(log_path, out / CURVE_FILE, title=f"{out.name}: step {step}")
        if cfg.export_every_checkpoint and mel_config is not None:
            _export(ema.model)
        logger.info("checkpoint at step %d (%.1f min)", step, elapsed() / 60)

    def _export(m: torch.nn.Module) -> None:
        export_model_folder(
            m, out / MODEL_DIR, cfg=cfg, mel_config=mel_config,
            training={"steps": step, "samples_seen": step * cfg.batch_size,
                      "wall_seconds": round(elapsed(), 1), "heldout_loss": last_heldout},
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        if cfg.max_steps is not None and budget_s is None:
            bar = tqdm(total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0)
        else:
            bar = tqdm(total=100.0, initial=round(100 * progress_fraction(), 1), unit="%",
                       bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]",
                       dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)

    window: list[float] = []
    grad_norm = torch.tensor(0.0)
    log_file = log_path.open("a")
    try:
        while progress_fraction() < 1.0:
            # 1. learning rate
            lr = lr_at(progress_fraction(), step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # 2. held-out loss (EMA weights) on fixed crops, t and noise
            if held is not None and step % cfg.eval_every == 0:
                last_heldout = heldout_loss(ema.model, held, noise_scheduler, use_bf16=use_bf16)
                log_file.write(json.dumps({"step": step, "heldout_loss": last_heldout,
                                           "elapsed": round(elapsed(), 1)}) + "\n")
                log_file.flush()
                logger.info("step %d: held-out loss %.4f", step, last_heldout)

            # 3. forward / backward
            x0 = sampler.next_batch()
            noise = torch.randn_like(x0)
            t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],))
            xt = noise_scheduler.add_noise(x0, noise, t)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                pred = model(xt, t)
            weights = weight_fn(x0) if weight_fn is not None else None
            loss = weighted_diffusion_loss(pred, noise, weights)
            if not torch.isfinite(loss):
                raise ConfigurationError(f"training diverged: loss={loss.item()!r} at step {step}")
            loss.backward()

            # 4. clip, step, EMA
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(model)
            step += 1
            last_loss = loss.item()
            window.append(last_loss)

            # 5. log
            if step % cfg.log_every == 0:
                mean_loss = float(np.mean(window))
                window.clear()
                row = {"step": step, "loss": round(mean_loss, 6), "lr": lr,
                       "grad_norm": round(float(grad_norm), 4), "samples": step * cfg.batch_size,
                       "elapsed": round(elapsed(), 1)}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                logger.info("step %d: loss %.4f lr %.2e grad %.3f (%.1f min)", step, mean_loss, lr,
                            float(grad_norm), elapsed() / 60)
            if bar is not None:
                if bar.unit == "step":
                    bar.update(1)
                else:
                    bar.n = round(100 * min(progress_fraction(), 1.0), 1)
                    bar.refresh() if sys.stderr.isatty() else None
                bar.set_postfix(step=step, loss=f"{last_loss:.4f}", lr=f"{lr:.1e}", refresh=False)

            # 6. checkpoint
            if time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60:
                log_file.flush()
                save_checkpoint()
                last_ckpt = time.monotonic()
        # 7. done
        if held is not None:
            last_heldout = heldout_loss(ema.model, held, noise_scheduler, use_bf16=use_bf16)
            log_file.write(json.dumps({"step": step, "heldout_loss": last_heldout,
                                       "elapsed": round(elapsed(), 1)}) + "\n")
        if window:
            log_file.write(json.dumps({"step": step, "loss": round(float(np.mean(window)), 6),
                                       "lr": lr_at(1.0, step, cfg), "samples": step * cfg.batch_size,
                                       "elapsed": round(elapsed(), 1)}) + "\n")
        log_file.flush()
        save_checkpoint()
        if mel_config is not None and not cfg.export_every_checkpoint:
            _export(ema.model)
    finally:
        log_file.close()
        if bar is not None:
            bar.close()

    rows = [r for r in read_log(log_path) if "loss" in r]
    final = rows[-1]["loss"] if rows else float("nan")
    return TrainResult(
        out_dir=out,
        model_dir=out / MODEL_DIR,
        steps=step,
        samples_seen=step * cfg.batch_size,
        wall_seconds=elapsed(),
        final_loss=float(final),
        heldout_loss=last_heldout,
        log_path=log_path,
        curve_path=(out / CURVE_FILE) if (out / CURVE_FILE).exists() else None,
    )
