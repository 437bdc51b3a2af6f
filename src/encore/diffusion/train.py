"""Base training of the spectrogram diffusion model (the base model v0 and later versions).

What base training adds to the shared loop (:mod:`encore.diffusion.training`): its
configuration (:class:`TrainConfig`), a freshly initialised (or ``init_state_dict``) denoiser,
batches of random corpus crops (:class:`CorpusBatches`), the held-out loss of the EMA weights
on fixed crops, fixed t and fixed noise, and the EMA model exported as a model folder at every
checkpoint. The loop does the rest: linear warm-up then cosine learning rate, bf16 autocast on
CPUs that support it, the ε-MSE (:class:`~encore.diffusion.training.EpsilonLoss`, unweighted
here), gradient clipping, EMA, a log row every ``log_every`` steps, an evaluation every
``eval_every`` steps, a resumable checkpoint every ``checkpoint_minutes`` and at the end, and
the stop at ``max_steps`` or the wall-time budget ``max_minutes``.

Objective: DDPM epsilon prediction, ``t ~ U{0..T-1}``, ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε``,
loss = MSE(ε̂, ε).

With ``max_minutes`` the cosine schedule runs on *elapsed wall time* (so the decay finishes when
the budget does, whatever else is using the CPU); with ``max_steps`` it runs on steps (exactly
reproducible).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from encore.diffusion.folder import default_scheduler_config, save_model_folder
from encore.diffusion.model import (
    DenoiserConfig,
    SpectrogramDenoiser,
    default_base_config,
    tiny_config,
)
from encore.diffusion.training import (
    EpsilonLoss,
    Evaluator,
    LoopConfig,
    LoopOutcome,
    LoopStatus,
    TrainingLoop,
    WeightedBatch,
    load_checkpoint,
    lr_at,
    read_log,
    rng_state,
    seed_everything,
    set_rng_state,
    use_bf16,
    weighted_diffusion_loss,
)
from encore.diffusion.training.plots import plot_log
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
CURVE_FILE = "loss_curve.png"
MODEL_DIR = "model"  # EMA weights exported as a model folder

# ``lr_at``, ``read_log`` and ``weighted_diffusion_loss`` live in the shared loop; this module
# re-exports them (``__all__``) for the callers and tests that import them from here.
__all__ = [
    "CONFIG_FILE", "CURVE_FILE", "MODEL_DIR", "CorpusBatches", "CropSampler", "TrainConfig",
    "TrainResult", "build_model", "denoiser_config", "export_model_folder", "fixed_heldout_batch",
    "heldout_loss", "loop_config", "lr_at", "make_noise_scheduler", "plot_loss_curve", "read_log",
    "sampling_scheduler", "train", "weighted_diffusion_loss",
]


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
# noise schedules


def make_noise_scheduler(cfg: TrainConfig):
    """The DDPM training scheduler; its config is what the model folder records."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type="epsilon",
        clip_sample=False,
    )



def sampling_scheduler(cfg: TrainConfig) -> Any:
    """The DDIM scheduler the engine samples with: the engine defaults, this run's betas."""
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



# ----------------------------------------------------------------------------------------------
# model, data


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """A freshly initialised denoiser from ``cfg.model_config`` (engine defaults when None)."""
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
    state = rng_state()
    try:
        seed_everything(seed + 12345)
        g = torch.Generator().manual_seed(seed + 12345)
        idx = torch.randint(0, len(dataset), (n,), generator=g).tolist()
        images = torch.stack([torch.as_tensor(_image_of(dataset[i])) for i in idx]).float()
        t = torch.linspace(0, num_train_timesteps - 1, n).round().long()
        noise = torch.randn(images.shape, generator=g)
    finally:
        set_rng_state(state)
    return images, t, noise


class CorpusBatches:
    """The loop's batch source for base training: :class:`CropSampler` batches, unweighted."""

    def __init__(self, dataset: Any, batch_size: int, seed: int) -> None:
        self.sampler = CropSampler(dataset, batch_size, seed)

    def next_batch(self) -> WeightedBatch:
        return WeightedBatch(self.sampler.next_batch())

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


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




# ----------------------------------------------------------------------------------------------
# exports and the loss curve


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



def plot_loss_curve(log_path: str | Path, png_path: str | Path, *, title: str = "") -> Path | None:
    """Training loss (log windows) and EMA held-out loss against steps, as a PNG."""
    return plot_log(log_path, png_path, series={"heldout_loss": "held-out (EMA, fixed crops/t/noise)"},
                    title=title or "training loss", train_label="train (mean over log window)",
                    log_y=True)


# ----------------------------------------------------------------------------------------------
# base training: the shared loop with corpus crops and the plain ε-MSE


def loop_config(cfg: TrainConfig) -> LoopConfig:
    """The loop settings of a base-training run (the cosine runs on wall time too)."""
    return LoopConfig(
        max_steps=cfg.max_steps,
        max_seconds=cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None,
        batch_size=cfg.batch_size, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
        ema_decay=cfg.ema_decay, log_every=cfg.log_every, eval_every=cfg.eval_every,
        adam_betas=(cfg.adam_beta1, cfg.adam_beta2), schedule_on_time=True,
        checkpoint_seconds=cfg.checkpoint_minutes * 60.0, name="training",
    )


def _resumed_config(cfg: TrainConfig, checkpoint: dict[str, Any]) -> TrainConfig:
    """The run's saved config; the length, threads and checkpoint interval come from ``cfg``."""
    saved = TrainConfig.from_dict(checkpoint["config"])
    return dataclasses.replace(saved, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes,
                               threads=cfg.threads, checkpoint_minutes=cfg.checkpoint_minutes)


def _export(loop: TrainingLoop, cfg: TrainConfig, mel_config: Any) -> None:
    export_model_folder(
        loop.ema.model, loop.out / MODEL_DIR, cfg=cfg, mel_config=mel_config,
        training={"steps": loop.step, "samples_seen": loop.step * cfg.batch_size,
                  "wall_seconds": round(loop.elapsed, 1),
                  "heldout_loss": loop.figures.get("heldout_loss")},
    )


def _on_checkpoint(cfg: TrainConfig, mel_config: Any) -> Any:
    """After every checkpoint: redraw the loss curve and export the EMA weights."""

    def after(loop: TrainingLoop) -> None:
        plot_loss_curve(loop.log_path, loop.out / CURVE_FILE, title=f"{loop.out.name}: step {loop.step}")
        if cfg.export_every_checkpoint and mel_config is not None:
            _export(loop, cfg, mel_config)
        logger.info("checkpoint at step %d (%.1f min)", loop.step, loop.elapsed / 60)

    return after


def _native_mel_config(mel_config: Any, dataset: Any, width: int) -> Any:
    """The mel config to save with the model (the dataset's when None), at ``width``."""
    if mel_config is None:
        mel_config = getattr(dataset, "mel_config", None)
    if mel_config is not None and getattr(mel_config, "x_res", width) != width:
        mel_config = mel_config.replace(x_res=width)  # the model's native image width
    return mel_config


def _heldout_evaluator(held: Any, noise_scheduler: Any, bf16: bool) -> Evaluator | None:
    """The held-out loss of the EMA weights on the fixed batch ``held`` (None without one)."""
    if held is None:
        return None
    return lambda ema: {"heldout_loss": heldout_loss(ema, held, noise_scheduler, use_bf16=bf16)}


class _ProgressBar:
    """A tqdm bar over steps (a step budget) or over the planned percentage (a time budget)."""

    def __init__(self, cfg: TrainConfig, loop: TrainingLoop) -> None:
        from tqdm.auto import tqdm  # deferred: only the CLI shows a bar

        interval = 1.0 if sys.stderr.isatty() else 30.0
        if cfg.max_steps is not None and cfg.max_minutes is None:
            self.bar = tqdm(total=cfg.max_steps, initial=loop.step, unit="step", dynamic_ncols=True,
                            mininterval=interval)
        else:
            self.bar = tqdm(total=100.0, initial=round(100 * loop.fraction(), 1), unit="%",
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]",
                            dynamic_ncols=True, mininterval=interval)

    def __call__(self, status: LoopStatus) -> None:
        if self.bar.unit == "step":
            self.bar.update(1)
        else:
            self.bar.n = round(100 * status.fraction, 1)
            if sys.stderr.isatty():
                self.bar.refresh()
        self.bar.set_postfix(step=status.step, loss=f"{status.loss:.4f}", lr=f"{status.lr:.1e}",
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


def train(
    cfg: TrainConfig,
    *,
    dataset: Any,
    out_dir: str | Path,
    heldout: Any = None,
    mel_config: Any = None,
    resume: bool = False,
    progress: bool = True,
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
        Start from these weights instead of a random initialisation.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mel_config = _native_mel_config(mel_config, dataset, cfg.width)
    checkpoint = load_checkpoint(out, resume=resume, what="run", required=True)
    if checkpoint is not None:
        cfg = _resumed_config(cfg, checkpoint)
        logger.info("resuming %s at step %d", out, checkpoint["step"])
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    bf16 = use_bf16(cfg.precision)
    seed_everything(cfg.seed)
    model = build_model(cfg)  # a random initialisation from the seeded RNG
    if init_state_dict is not None:
        model.load_state_dict(init_state_dict)
    if cfg.model_config is None:
        cfg = dataclasses.replace(cfg, model_config=denoiser_config(model))
    noise_scheduler = make_noise_scheduler(cfg)
    held = fixed_heldout_batch(heldout, cfg.eval_crops, cfg.num_train_timesteps, cfg.seed)
    loop = TrainingLoop(
        model, objective=EpsilonLoss(), batches=CorpusBatches(dataset, cfg.batch_size, cfg.seed),
        config=loop_config(cfg), out=out, noise_scheduler=noise_scheduler, use_bf16=bf16,
        evaluate=_heldout_evaluator(held, noise_scheduler, bf16), checkpoint_extra={"config": cfg.to_dict()},
        on_checkpoint=_on_checkpoint(cfg, mel_config),
    )
    loop.resume(checkpoint)
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger.info(
        "training %.2f M parameters, batch %d, bf16=%s, threads=%d, max_steps=%s, max_minutes=%s",
        sum(p.numel() for p in model.parameters()) / 1e6, cfg.batch_size, bf16,
        torch.get_num_threads(), cfg.max_steps, cfg.max_minutes,
    )
    bar = _ProgressBar(cfg, loop) if progress else None
    loop.on_step = bar
    try:
        outcome = loop.run()
    finally:
        if bar is not None:
            bar.close()
    if mel_config is not None and not cfg.export_every_checkpoint:
        _export(loop, cfg, mel_config)
    return _result(loop, outcome, cfg)


def _result(loop: TrainingLoop, outcome: LoopOutcome, cfg: TrainConfig) -> TrainResult:
    rows = [r for r in read_log(loop.log_path) if "loss" in r]
    curve = loop.out / CURVE_FILE
    return TrainResult(
        out_dir=loop.out, model_dir=loop.out / MODEL_DIR, steps=outcome.steps,
        samples_seen=outcome.steps * cfg.batch_size, wall_seconds=outcome.wall_seconds,
        final_loss=float(rows[-1]["loss"] if rows else float("nan")),
        heldout_loss=outcome.figures.get("heldout_loss"), log_path=loop.log_path,
        curve_path=curve if curve.exists() else None,
    )
