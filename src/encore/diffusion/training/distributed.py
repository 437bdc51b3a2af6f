"""Data-parallel training: the loop's processes under ``torchrun`` (``torch.distributed``, DDP).

``torchrun --nproc_per_node N`` starts N copies of a training command and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each;
:func:`process_group` turns that into a process group (``nccl`` on CUDA, each process on the GPU
``LOCAL_RANK``; ``gloo`` on the CPU) and :class:`~encore.diffusion.training.TrainingLoop` trains
through :class:`~torch.nn.parallel.DistributedDataParallel` while it is active.

How the work is split, so that N processes train exactly what one process would on the same
global batch:

- every process seeds the same RNGs and draws the same **global** batch, noise and timesteps
  (cheap: crop indices and random numbers); only the model's forward and backward — the
  expensive part — are split: :func:`gather_rows` runs the model on this process's contiguous
  share of the rows and all-gathers the other shares' outputs, so the loss is the global
  batch's loss on every process, whatever the objective computes from the predictions
  (weighted means, DPO margins, KTO's batch reference point);
- the gradient reaches the model only through this process's rows, scaled by N; DDP averages
  the gradients over the N processes, which gives the single-process gradient of the global
  loss; the optimiser, gradient clipping and EMA then run identically everywhere;
- rank 0 alone writes the log, checkpoints and exports; everyone waits for it at every
  checkpoint (a barrier); decisions that depend on the clock or on evaluations (learning rate
  on wall time, the time budget, time-based checkpoints, early stopping) use rank 0's values,
  broadcast, so no process stops or saves alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from encore.errors import ConfigurationError

logger = logging.getLogger(__name__)

T = TypeVar("T")

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether this process was started as one of several by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1") > 1


def active() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files, logs and database rows."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """``device`` for this process: under ``torchrun`` a CUDA device is the GPU ``LOCAL_RANK``."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def process_group(device: torch.device | str) -> Iterator[bool]:
    """The process group of a ``torchrun`` launch for training on ``device``; yields whether one
    was started (False: a single process, nothing to do).

    ``nccl`` for CUDA (this process bound to the GPU ``LOCAL_RANK``), ``gloo`` otherwise. The
    group is destroyed on the way out, also after an error.

    Raises
    ------
    ConfigurationError
        ``WORLD_SIZE`` > 1 without the rest of torchrun's environment, or more processes on a
        host than it has GPUs when training on CUDA.
    """
    if not launched() or active():
        yield False
        return
    missing = [name for name in ENV_VARS if not os.environ.get(name)]
    if missing:
        raise ConfigurationError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start data-parallel "
            "training with torchrun (python -m torch.distributed.run --nproc_per_node N ...)")
    kind = torch.device(device).type
    backend = "nccl" if kind == "cuda" else "gloo"
    if kind == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ConfigurationError(f"LOCAL_RANK={local} but this host has {torch.cuda.device_count()} "
                                     "GPU(s): one training process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    logger.info("data-parallel training: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    try:
        yield True
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone; its result — or its exception — on every process."""
    if not active():
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except Exception as exc:  # re-raised on every rank, so none waits forever
            outcome = (False, exc)
    ok, value = broadcast(outcome)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def row_shares(n: int, size: int) -> list[int]:
    """Rows of an ``n``-row batch per process: contiguous shares differing by at most one."""
    return [n // size + (1 if i < n % size else 0) for i in range(size)]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def gather_rows(forward: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``forward(*inputs)`` over the whole batch, this process computing only its rows.

    The inputs share their first dimension ``n``; process ``r`` runs ``forward`` on its share
    (:func:`row_shares`) and receives the others' outputs (all-gather, without gradient). The
    result has ``n`` rows on every process; gradients flow through this process's rows only,
    multiplied by the number of processes (DDP then averages them). A process with no rows
    (``n`` smaller than the group) still runs ``forward`` on one row, multiplied by zero, so
    every parameter takes part in its backward as DDP requires.
    """
    size, me = world_size(), rank()
    shares = row_shares(int(inputs[0].shape[0]), size)
    lo = sum(shares[:me])
    hi = lo + shares[me]
    anchor = None
    if hi > lo:
        local = forward(*(x[lo:hi] for x in inputs))
    else:
        anchor = forward(*(x[:1] for x in inputs))
        local = anchor[:0]
    width = max(shares)
    padded = local.new_zeros((width, *local.shape[1:]), dtype=torch.float32)
    padded[: hi - lo] = local.detach().float()
    pieces = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(pieces, padded)
    parts = [piece[:share].to(local.dtype) for piece, share in zip(pieces, shares, strict=True)]
    if local.requires_grad:
        parts[me] = _ScaleGrad.apply(local, float(size))
    out = torch.cat(parts)
    if anchor is not None and anchor.requires_grad:
        out = out + 0.0 * anchor.sum()
    return out
