"""Choosing the torch device and the CPU speed-ups that measurably help.

``pick_device`` resolves ``"auto"`` to CUDA, then Apple MPS, then the CPU. ``autocast_dtype``
says whether sampling should run under ``torch.autocast``: bf16 on CPUs that have native bf16
arithmetic (AVX512-BF16 or AMX; ``torch.backends.cpu.get_cpu_capability()`` reports the ISA
torch dispatches to), bf16 on CUDA GPUs that support it (Ampere and later; fp16 on older
ones), nothing on MPS. The same sampling code runs on every device: seeds draw their noise
on the CPU and move it, the schedulers' step maths runs in fp32 where the sample lives. The bench (``encore bench generate``)
prints the fp32 and autocast timings side by side so the choice can be checked on any machine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from encore.errors import ConfigurationError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """Resolve a device name to a :class:`torch.device`.

    Parameters
    ----------
    name : str, torch.device or None
        ``"auto"`` / ``None`` (CUDA if available, else MPS, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    Raises
    ------
    ConfigurationError
        If the named device is not available on this machine.
    """
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigurationError(f"unknown device {name!r}; choose one of {DEVICE_CHOICES}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {name!r} requested but CUDA is not available")
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigurationError(f"device {name!r} requested but MPS is not available")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True if this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX-BF16).

    Without it bf16 autocast is emulated and usually *slower* than fp32.
    """
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    # No /proc/cpuinfo (macOS, Windows): trust torch's ISA level only for AMX.
    return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype to sample with, or None for plain fp32.

    Parameters
    ----------
    device : torch.device
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"``: bf16 on a CPU with native bf16, bf16 on CUDA (fp16 where the GPU has no
        bf16), fp32 otherwise.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ConfigurationError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16() else torch.float16
    return None


def cuda_has_bf16() -> bool:
    """True if the current CUDA device computes in bf16 natively (compute capability ≥ 8)."""
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except (RuntimeError, AssertionError):  # no driver
        return False


@contextlib.contextmanager
def maybe_autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def configure_threads(threads: int = 0) -> None:
    """Set torch's intra-op thread count and numpy's BLAS threads (0 keeps both defaults,
    one per core).

    The BLAS pool matters as much as torch's: the mel spectrogram of a song's window, the
    audio descriptors and the similarity model's input go through numpy's OpenBLAS, whose
    default is one thread per core. Measured on the shared 2-core machine (load average 11):
    the mel codec's filter-bank product (128×1025 by 1025×256) took 40 ms of CPU (104 ms
    wall) with OpenBLAS' 2 threads spinning on a busy core, 0.6 ms with one thread — a
    one-thread generation worker (``ENCORE_TORCH_THREADS=1``) paid that on every request.
    """
    if threads <= 0:
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.info("torch threads set to %d", threads)
    from threadpoolctl import threadpool_info, threadpool_limits

    if any(p.get("user_api") == "blas" and p.get("num_threads") != threads
           for p in threadpool_info()):
        threadpool_limits(threads, user_api="blas")
        logger.info("BLAS threads set to %d", threads)


def side_by_side(fn: Callable[[T], R], items: Sequence[T], device: torch.device | str = "cpu") -> list[R]:
    """``[fn(x) for x in items]``, on the CPU in a pool of up to ``torch.get_num_threads()``
    threads (in turn on a GPU, or where torch runs one thread).

    For per-clip work that runs on one torch thread each — the vocoder
    (:class:`encore.audio.vocoder.GriffinLim`) on the clips of one request: the same results,
    in about half the wall time on 2 idle cores; a one-thread worker (the pilot's
    ``ENCORE_TORCH_THREADS=1``) keeps running them one after another. (The candidates' taste
    inputs gained nothing this way — 0.10 s against 0.11 s for four, `scripts/engine_ab.py` —
    being mostly Python and numpy under the GIL, so they stay sequential.)
    """
    workers = min(len(items), torch.get_num_threads()) if torch.device(device).type == "cpu" else 1
    if workers <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="side-by-side") as pool:
        return list(pool.map(fn, items))


def prepare_for_inference(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Eval mode and, on CPU and CUDA, channels-last weights (in place; returns ``module``).

    Measured on the base model (128×256 canvas, one thread, CPU time of 15 interleaved
    forwards on an AVX512-BF16 CPU): fp32 130 ms → 122 ms with channels-last, bf16 97 → 91 ms.
    Results are unchanged (only the memory layout of the weights differs).
    """
    module.eval()
    if device.type in ("cpu", "cuda"):
        module.to(memory_format=torch.channels_last)
    return module
