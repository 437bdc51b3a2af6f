"""What every training run keeps the same way: RNG streams, EMA weights, the learning-rate
schedule, the precision, atomic checkpoint files and the JSON-lines loss log."""

from __future__ import annotations

import copy
import json
import math
import os
import random
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from encore.diffusion.device import cuda_has_bf16
from encore.diffusion.training import distributed
from encore.errors import InvalidInput

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "loss_log.jsonl"


# -- RNG streams (python, numpy, torch): seeded once, saved and restored for exact resume ------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states; the CUDA generators' too once CUDA is in use
    (noise drawn on a GPU comes from them, so an exact resume there needs them)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- EMA, learning rate, precision -------------------------------------------------------------


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


class Schedule(Protocol):
    """The fields :func:`lr_at` reads (``TrainConfig`` and ``LoopConfig`` both have them)."""

    lr: float
    min_lr_ratio: float
    warmup_steps: int


def lr_at(progress: float, step: int, cfg: Schedule) -> float:
    """Learning rate: linear warm-up over ``warmup_steps``, then cosine to ``lr * min_lr_ratio``.

    ``progress`` in [0, 1] is the fraction of the planned run done (steps or wall time).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * p))


def bf16_supported() -> bool:
    """Whether bf16 autocast is worth it on this CPU (native bf16 instructions)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device | str = "cpu") -> bool:
    """bf16 autocast for ``precision`` (``"auto"``, ``"bf16"`` or ``"fp32"``) on ``device``.

    ``"auto"``: on a CPU with native bf16 instructions, on a CUDA GPU that computes in bf16
    (compute capability 8 and later); never elsewhere (MPS) — ``"bf16"`` forces it on CPU and
    CUDA.
    """
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda") or precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if kind == "cuda":
        return cuda_has_bf16()
    return bf16_supported()


def autocast(device: torch.device | str, enabled: bool) -> Any:
    """bf16 autocast for ``device``'s kind (CPU or CUDA); a no-op context when not ``enabled``."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


# -- files: checkpoints and the loss log -------------------------------------------------------


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(out: Path, *, resume: bool, what: str, required: bool) -> dict[str, Any] | None:
    """The run's checkpoint when resuming; None for a fresh run.

    Under ``torchrun`` rank 0 reads it and every process gets rank 0's checkpoint (or error),
    so the other processes need not see the run folder.

    Raises
    ------
    InvalidInput
        ``out`` holds a checkpoint and ``resume`` is False, or ``required`` and there is none.
    """
    return distributed.on_main(lambda: _read_checkpoint(out, resume=resume, what=what, required=required))


def _read_checkpoint(out: Path, *, resume: bool, what: str, required: bool) -> dict[str, Any] | None:
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        if resume and required:
            raise InvalidInput(f"cannot resume: no {CHECKPOINT_FILE} in {out}")
        return None
    if not resume:
        raise InvalidInput(f"{out} already holds a {what} ({CHECKPOINT_FILE}); pass resume=True or another out_dir")
    return torch.load(path, map_location="cpu", weights_only=False)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a run's ``loss_log.jsonl``."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_log(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    rows = [r for r in read_log(path) if r.get("step", 0) <= max_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
