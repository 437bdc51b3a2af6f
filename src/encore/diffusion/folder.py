"""Model folders: what a model version is on disk (diffusers layout plus encore's metadata).

::

    <model>/
      unet/config.json, unet/diffusion_pytorch_model.safetensors   UNet2DModel.save_pretrained
      scheduler/scheduler_config.json                             DDIMScheduler
      mel_config.json                                             encore.audio.mel.MelConfig
      encore.json                                                 format, name, parent, layout, training, metrics
      head.safetensors                                            the wrapper's own weights (unshuffle layout)
      (anything else: README.md model card, loss curve, samples)

An audio-diffusion folder (``unet/``, ``scheduler/`` holding a ``DDPMScheduler``,
``mel/mel_config.json``, no ``encore.json``) loads as the ``plain`` layout; its scheduler is
replaced by a :class:`~diffusers.DDIMScheduler` built from the same config (same betas).

Folders are written atomically: into a temporary sibling, then moved into place with
``os.replace``, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from encore.audio.mel import MEL_CONFIG_FILE, MelConfig
from encore.diffusion.model import META_FILE, Guidance, SpectrogramDenoiser
from encore.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TASTE_GROUPS_KEY = "taste_groups"  # encore.json: what a conditioned model's group numbers mean
TASTE_GROUPS_FILE = "taste_groups.json"  # the groups themselves (encore.services.conditioning)
SCHEDULER_DIR = "scheduler"


def default_scheduler_config() -> dict[str, Any]:
    """The DDIM schedule of encore's own models.

    Cosine ("squaredcos_cap_v2") betas over 1000 training steps, as the CPU experiment
    (``cpu_base_model.md`` §3); "leading" spacing (980 … 0 at 50 steps): "trailing" would start
    at t = 999, where the cosine schedule's ᾱ is 2.4e-9, so the last step of a DDIM inversion
    would destroy the image (docs/engine.md); x̂₀ clipped to [-1, 1] like the reference.
    """
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "clip_sample": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
    }


def default_scheduler() -> Any:
    """A :class:`diffusers.DDIMScheduler` with :func:`default_scheduler_config`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**default_scheduler_config())


def to_ddim(scheduler_or_config: Any) -> Any:
    """A DDIMScheduler with the same betas as ``scheduler_or_config`` (DDPM, DDIM, …)."""
    from diffusers import DDIMScheduler

    config = getattr(scheduler_or_config, "config", scheduler_or_config)
    return DDIMScheduler.from_config(config)


@dataclass(frozen=True)
class LoadedModel:
    """A model folder in memory.

    Attributes
    ----------
    denoiser : SpectrogramDenoiser
        In eval mode, on the requested device, float32.
    scheduler : diffusers.DDIMScheduler
        A template: the engine copies it (``from_config``) for every call.
    mel_config : MelConfig
        The spectrogram settings the model was trained with (its ``y_res`` is the image height).
    meta : dict
        ``encore.json`` (empty for a foreign folder).
    path : Path or None
        The folder it came from.
    guidance : Guidance or None
        A conditioned model's taste group and guidance scale, applied by every sampler
        (:func:`encore.diffusion.sampling.guided`); None: the null label (unconditioned).
    """

    denoiser: SpectrogramDenoiser
    scheduler: Any
    mel_config: MelConfig
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    guidance: Guidance | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or (self.path.name if self.path else "unnamed"))

    @property
    def device(self) -> torch.device:
        return self.denoiser.device


def load_model_folder(
    directory: str | Path, *, device: torch.device | str | None = None
) -> LoadedModel:
    """Load a model folder (encore's or audio-diffusion's).

    Parameters
    ----------
    directory : path
    device : torch.device or str, optional
        ``None`` / ``"auto"`` picks CUDA, MPS or CPU (:func:`encore.diffusion.device.pick_device`).

    Raises
    ------
    NotFound
        If the folder, its UNet or its mel config is missing.
    """
    from encore.diffusion.device import pick_device

    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"model folder {directory} does not exist")
    meta_path = directory / META_FILE
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"cannot read {meta_path}: {exc}") from exc
        if int(meta.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
            raise InvalidInput(
                f"{meta_path} has format {meta.get('format')}, newer than this encore "
                f"(reads up to {FORMAT_VERSION})"
            )
    mel_candidates = [directory / MEL_CONFIG_FILE, directory / "mel" / MEL_CONFIG_FILE]
    if not any(p.is_file() for p in mel_candidates):
        raise NotFound(f"no {MEL_CONFIG_FILE} in {directory} or {directory / 'mel'}")
    mel_config = MelConfig.load(directory)
    sched_path = directory / SCHEDULER_DIR / "scheduler_config.json"
    if sched_path.is_file():
        sched_cfg = json.loads(sched_path.read_text())
        original = sched_cfg.get("_class_name", "?")
        scheduler = to_ddim(sched_cfg)
        if original != "DDIMScheduler":
            logger.info("%s: replaced %s by DDIMScheduler (same betas)", directory, original)
    else:
        logger.warning("%s has no scheduler config; using the default DDIM schedule", directory)
        scheduler = default_scheduler()
    dev = pick_device(device)
    denoiser = SpectrogramDenoiser.load(directory, device=dev)
    if denoiser.sample_height != mel_config.y_res:
        logger.warning(
            "%s: UNet sample height %d differs from mel y_res %d; images use y_res",
            directory,
            denoiser.sample_height,
            mel_config.y_res,
        )
    return LoadedModel(denoiser, scheduler, mel_config, meta, directory)


def save_model_folder(
    directory: str | Path,
    denoiser: SpectrogramDenoiser,
    mel_config: MelConfig,
    *,
    scheduler: Any | None = None,
    name: str | None = None,
    parent: str | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    extra_files: Mapping[str, bytes | str | Path] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a complete model folder atomically.

    The folder is assembled in a temporary sibling directory and moved into place with
    ``os.replace``. An existing folder is first moved aside (to another temporary sibling)
    and deleted once the new one is in place.

    Parameters
    ----------
    directory : path
        The final folder.
    denoiser : SpectrogramDenoiser
    mel_config : MelConfig
    scheduler : diffusers scheduler, optional
        Saved as a DDIMScheduler with its betas; :func:`default_scheduler` when omitted.
    name, parent : str, optional
        Model name (default: the folder name) and the parent model's name.
    training, metrics : mapping, optional
        Free-form JSON-serialisable records (steps, wall time, loss, …; eval figures).
    dtype : torch.dtype, optional
        Store weights in this dtype (``torch.float16`` for a shipped model).
    extra_files : mapping, optional
        Relative path → bytes, text or a file to copy (model card, loss curve PNG, …).
    overwrite : bool
        If False and ``directory`` exists, raise :class:`encore.errors.Conflict`.

    Returns
    -------
    Path
        ``directory``.
    """
    from encore.errors import Conflict

    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise Conflict(f"model folder {directory} already exists")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "name": name or directory.name,
            "parent": parent,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "training": dict(training or {}),
            "metrics": dict(metrics or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        denoiser.save(tmp, dtype=dtype)  # merges layout into encore.json
        to_ddim(scheduler if scheduler is not None else default_scheduler()).save_pretrained(
            tmp / SCHEDULER_DIR
        )
        mel_config.save(tmp)
        for rel, content in (extra_files or {}).items():
            target = tmp / rel
            if tmp.resolve() not in target.resolve().parents:
                raise InvalidInput(f"extra file path {rel!r} escapes the model folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_text(content)
        os.chmod(tmp, 0o755)
        old: Path | None = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved model folder %s", directory)
    return directory


def update_model_meta(directory: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge top-level keys into a folder's ``encore.json`` (e.g. ``metrics=...`` after eval).

    The file is rewritten atomically (temporary file + ``os.replace``).
    """
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise NotFound(f"{path} does not exist")
    meta = json.loads(path.read_text())
    meta.update(changes)
    fd, tmp_name = tempfile.mkstemp(prefix=".encore.json.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_name, path)
    return meta


def build_random_model(
    config: Any | None = None,
    mel_config: MelConfig | None = None,
    *,
    seed: int = 0,
    scheduler: Any | None = None,
    device: torch.device | str | None = "cpu",
) -> LoadedModel:
    """A randomly initialised model in memory (benchmarks, tests, the start of training).

    Parameters
    ----------
    config : DenoiserConfig, optional
        Defaults to :func:`encore.diffusion.model.default_base_config`.
    mel_config : MelConfig, optional
        Defaults to 128 mel bins × 128 frames (the base model's training crops).
    seed : int
        Seed of the weight initialisation.
    scheduler : diffusers scheduler, optional
        Converted to DDIM; :func:`default_scheduler` when omitted.
    """
    from encore.diffusion.device import pick_device
    from encore.diffusion.model import default_base_config

    config = config if config is not None else default_base_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        denoiser = SpectrogramDenoiser.from_config(config)
    mel = mel_config if mel_config is not None else MelConfig(x_res=128, y_res=128)
    sched = to_ddim(scheduler) if scheduler is not None else default_scheduler()
    denoiser.eval().to(pick_device(device))
    return LoadedModel(denoiser, sched, mel, {"name": "random", "layout": config.layout}, None)


def carry_taste_groups(model_dir: Path, model: torch.nn.Module, parent: LoadedModel,
                       record: Mapping[str, Any] | None) -> None:
    """Write what a conditioned model's group numbers mean into its folder's ``encore.json``
    (``taste_groups``): this fine-tune's record, else the parent's (a conditioned parent
    fine-tuned without conditioning stays conditioned on the same groups)."""
    if not getattr(model, "num_groups", 0):
        return
    groups = dict(record) if record is not None else parent.meta.get(TASTE_GROUPS_KEY)
    if groups:
        update_model_meta(model_dir, **{TASTE_GROUPS_KEY: groups})
    if record is None and parent.path is not None and (parent.path / TASTE_GROUPS_FILE).is_file():
        shutil.copyfile(parent.path / TASTE_GROUPS_FILE, Path(model_dir) / TASTE_GROUPS_FILE)
