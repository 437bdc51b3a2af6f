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

Devices: the same code trains on the CPU and on a CUDA GPU (``device``; see
:func:`training_device`). What differs is only placement and precision: on CUDA the model is
channels-last, bf16 autocast runs on the GPU, the crops are cut on the GPU from the corpus
frames held there (:class:`TensorCropBatches`), and ``compile`` may route the training step
through ``torch.compile``. Batches, noise draws, checkpoints and exports are the CPU's code.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from encore.diffusion.device import pick_device
from encore.diffusion.folder import default_scheduler_config, save_model_folder
from encore.diffusion.model import (
    DenoiserConfig,
    SpectrogramDenoiser,
    default_base_config,
    tiny_config,
)
from encore.diffusion.training import (
    DictConfig,
    EpsilonLoss,
    Evaluator,
    LoopConfig,
    LoopOutcome,
    LoopStatus,
    TrainingLoop,
    WeightedBatch,
    distributed,
    load_checkpoint,
    lr_at,
    read_log,
    rng_state,
    seed_everything,
    set_rng_state,
    use_bf16,
    weighted_diffusion_loss,
)
from encore.diffusion.training.objectives import fixed_predictions
from encore.diffusion.training.plots import plot_log
from encore.errors import ConfigurationError, InvalidInput

logger = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
CURVE_FILE = "loss_curve.png"
MODEL_DIR = "model"  # EMA weights exported as a model folder

# ``lr_at``, ``read_log`` and ``weighted_diffusion_loss`` live in the shared loop; this module
# re-exports them (``__all__``) for the callers and tests that import them from here.
__all__ = [
    "BASE_BATCH", "BASE_LR", "CONFIG_FILE", "CURVE_FILE", "MODEL_DIR", "CorpusBatches", "CropSampler",
    "TensorCropBatches", "TrainConfig", "TrainResult", "build_model", "denoiser_config",
    "export_model_folder", "fixed_heldout_batch", "heldout_loss", "loop_config", "lr_at",
    "make_noise_scheduler", "plot_loss_curve", "read_log", "sampling_scheduler", "scaled_lr",
    "train", "training_device", "weighted_diffusion_loss",
]

#: The learning rate tuned for batch 16 on the CPU; larger batches scale it (:func:`scaled_lr`).
BASE_LR = 5e-4
BASE_BATCH = 16
DATA_MODES = ("auto", "items", "tensor")


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig(DictConfig):
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
    precision: str = "auto"  # "auto" (bf16 where the CPU or GPU supports it), "bf16" or "fp32"
    threads: int = 0  # torch threads; 0 leaves torch's default
    # where and how: "cpu", "cuda", "cuda:N" or "auto" (CUDA if available, else the CPU)
    device: str = "cpu"
    # batches: "tensor" (a batch cut at once from the frames held on the device; corpus
    # datasets), "items" (one __getitem__ per crop), "auto" (tensor where the dataset can)
    data: str = "auto"
    channels_last: bool | None = None  # None: on CUDA only
    compile: str | None = None  # a torch.compile backend ("inductor"), None: eager
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
        if self.data not in DATA_MODES:
            raise InvalidInput(f"data={self.data!r} must be one of {', '.join(DATA_MODES)}")


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
# device, learning rate


def training_device(name: str | None) -> torch.device:
    """The device to train on: ``"auto"`` (or None) is CUDA if available, else the CPU.

    Raises
    ------
    ConfigurationError
        A named device that this machine does not have (``"cuda"`` without CUDA), or one that
        training does not support.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigurationError(f"cannot train on device {name!r}: choose cpu, cuda, cuda:N or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(
            f"--device {name} asked for a GPU but this torch ({torch.__version__}) sees no CUDA "
            "device; use --device cpu or auto")
    return pick_device(name)


def scaled_lr(batch_size: int, base_lr: float = BASE_LR, base_batch: int = BASE_BATCH) -> float:
    """The peak learning rate for ``batch_size``: ``base_lr`` × √(batch / base_batch).

    The square-root rule (for Adam-type optimisers the gradient noise falls with √batch); the
    warm-up (``warmup_steps``) ramps up to it. Batch 16 keeps the CPU's 5e-4, batch 256 gets 2e-3.
    """
    if batch_size <= 0:
        raise InvalidInput(f"batch size {batch_size!r} must be > 0")
    return base_lr * math.sqrt(batch_size / base_batch)


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """Move ``model`` to ``device`` (channels-last weights when asked); returns it."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def portable_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 CPU copy in the default (contiguous) layout: what model folders store."""
    return copy.deepcopy(model).float().cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


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


class TensorCropBatches:
    """The loop's batch source on a :class:`~encore.corpus.crops.CropTensor` (``data="tensor"``).

    Shuffled epochs of the items and the random crop offsets (up to ±width/2, as the dataset
    draws them) come from one seeded CPU generator, so the stream is the same on every device
    and resumes exactly; the crops are cut and normalised in one gather where the frames live
    — on a GPU no batch crosses the bus.
    """

    def __init__(self, crops: Any, batch_size: int, seed: int) -> None:
        if len(crops) == 0:
            raise InvalidInput("the training dataset is empty")
        self.crops, self.batch_size = crops, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next_batch(self) -> WeightedBatch:
        parts, need = [], self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order, self.pos = torch.randperm(len(self.crops), generator=self.gen), 0
            part = self.order[self.pos : self.pos + need]
            parts.append(part)
            self.pos += len(part)
            need -= len(part)
        index = torch.cat(parts)
        shifts = None
        if self.crops.random_offset:
            half = self.crops.width // 2
            shifts = torch.randint(-half, half + 1, (self.batch_size,), generator=self.gen)
        return WeightedBatch(self.crops.crops(index, shifts))

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "pos": self.pos,
                "n": len(self.crops)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "gen" not in state:
            raise InvalidInput("the checkpoint's batches were drawn one item at a time (data='items'); "
                               "resume it with data='items'")
        self.gen.set_state(state["gen"])
        if int(state["n"]) != len(self.crops):
            logger.info("dataset size changed (%s -> %d items): new epoch order", state["n"], len(self.crops))
            self.order, self.pos = torch.empty(0, dtype=torch.long), 0
            return
        self.order, self.pos = torch.as_tensor(state["order"], dtype=torch.long), int(state["pos"])


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
    total, count = 0.0, 0
    for _, pred, eps in fixed_predictions(model, images, t, noise, noise_scheduler,
                                          use_bf16=use_bf16, chunk=chunk):
        total += float(weighted_diffusion_loss(pred, eps)) * eps.shape[0]
        count += eps.shape[0]
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
    engine loads them back as float32). A model on a GPU or in channels-last layout is
    written from a contiguous CPU copy (:func:`portable_copy`).
    """
    files: dict[str, Any] = {CONFIG_FILE: json.dumps(cfg.to_dict(), indent=2) + "\n"}
    files.update(extra_files or {})
    return save_model_folder(
        folder,
        portable_copy(model),  # type: ignore[arg-type]
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
    """The run's saved config; the length, threads, checkpoint interval, device, layout and
    compilation come from ``cfg`` (a run started on a GPU may continue on the CPU and back).

    Checkpoints written before ``data`` existed drew their batches item by item.
    """
    saved = TrainConfig.from_dict({"data": "items", **checkpoint["config"]})
    return dataclasses.replace(saved, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes,
                               threads=cfg.threads, checkpoint_minutes=cfg.checkpoint_minutes,
                               device=cfg.device, channels_last=cfg.channels_last, compile=cfg.compile)


def _data_mode(cfg: TrainConfig, dataset: Any) -> str:
    """``cfg.data`` resolved for ``dataset``: "tensor" needs a dataset with ``crop_tensor``."""
    can_tensor = callable(getattr(dataset, "crop_tensor", None))
    if cfg.data == "tensor" and not can_tensor:
        raise InvalidInput(f"data='tensor' needs a corpus dataset (with crop_tensor); got {type(dataset).__name__}")
    if cfg.data == "auto":
        return "tensor" if can_tensor else "items"
    return cfg.data


def _batch_source(cfg: TrainConfig, dataset: Any, device: torch.device) -> Any:
    if cfg.data == "tensor":
        crops = dataset.crop_tensor(device)
        logger.info("training crops cut on %s from %.0f MB of frames", device, crops.nbytes / 1e6)
        return TensorCropBatches(crops, cfg.batch_size, cfg.seed)
    return CorpusBatches(dataset, cfg.batch_size, cfg.seed)


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


def _starting_model(cfg: TrainConfig, init_state_dict: dict[str, torch.Tensor] | None,
                    device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, TrainConfig]:
    """The seeded random initialisation (or ``init_state_dict``) placed on ``device``, and
    ``cfg`` with its denoiser config recorded."""
    seed_everything(cfg.seed)
    model = build_model(cfg)  # a random initialisation from the seeded RNG
    if init_state_dict is not None:
        model.load_state_dict(init_state_dict)
    if cfg.model_config is None:
        cfg = dataclasses.replace(cfg, model_config=denoiser_config(model))
    place_model(model, device, channels_last)
    return model, cfg


def _run(loop: TrainingLoop, bar: _ProgressBar | None) -> LoopOutcome:
    """Run the loop, with the progress bar (if any) as its step callback."""
    loop.on_step = bar
    try:
        return loop.run()
    finally:
        if bar is not None:
            bar.close()


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
    device = distributed.local_device(training_device(cfg.device))  # torchrun: the GPU LOCAL_RANK
    cfg = dataclasses.replace(cfg, device=str(device), data=_data_mode(cfg, dataset))
    bf16 = use_bf16(cfg.precision, device)
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    model, cfg = _starting_model(cfg, init_state_dict, device, channels_last)
    noise_scheduler = make_noise_scheduler(cfg)
    held = fixed_heldout_batch(heldout, cfg.eval_crops, cfg.num_train_timesteps, cfg.seed)
    loop = TrainingLoop(
        model, objective=EpsilonLoss(), batches=_batch_source(cfg, dataset, device),
        config=loop_config(cfg), out=out, noise_scheduler=noise_scheduler, use_bf16=bf16,
        evaluate=_heldout_evaluator(held, noise_scheduler, bf16), checkpoint_extra={"config": cfg.to_dict()},
        on_checkpoint=_on_checkpoint(cfg, mel_config), compile_backend=cfg.compile,
    )
    loop.resume(checkpoint)
    main = distributed.is_main()  # under torchrun rank 0 alone writes files and shows progress
    if main:
        (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger.info(
        "training %.2f M parameters on %s, batch %d, lr %.1e, bf16=%s, channels_last=%s, "
        "compile=%s, data=%s, threads=%d, max_steps=%s, max_minutes=%s",
        sum(p.numel() for p in model.parameters()) / 1e6, device, cfg.batch_size, cfg.lr, bf16,
        channels_last, cfg.compile, cfg.data, torch.get_num_threads(), cfg.max_steps, cfg.max_minutes,
    )
    outcome = _run(loop, _ProgressBar(cfg, loop) if progress and main else None)
    if main and mel_config is not None and not cfg.export_every_checkpoint:
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
