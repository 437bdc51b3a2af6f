"""Options that several ``encore`` commands share, each defined once: its flag, type and
default here, the help where the command says what the option means there.

The checks that go with them at run time are here too: :func:`corpus_folder` (a missing
corpus folder is :class:`encore.errors.NotFound` before any work) and :func:`set_threads`.
Nothing here imports torch at parse time, so ``encore --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from encore.errors import NotFound

#: The solvers of generation and variation: ``encore.diffusion.sampling.SAMPLERS`` spelled out
#: so that ``--help`` does not load torch (tests/test_cli.py checks that the two agree).
SAMPLERS = ("ddim", "dpmpp", "unipc")


def add_corpus(parser: argparse.ArgumentParser, *, help: str, required: bool = True) -> None:
    """``--corpus DIR``: a corpus folder of ``encore corpus build`` (or ``unpack``)."""
    parser.add_argument("--corpus", type=Path, required=required, help=help)


def add_out(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--out PATH`` (required): what the command writes."""
    parser.add_argument("--out", type=Path, required=True, help=help)


def add_model(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--model DIR``: a model folder (default ``None``: the command's default model)."""
    parser.add_argument("--model", type=Path, default=None, help=help)


def add_seed(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--seed N`` (default 0)."""
    parser.add_argument("--seed", type=int, default=0, help=help)


def add_threads(parser: argparse.ArgumentParser, *, default: int, help: str | None = None) -> None:
    """``--threads N``: torch's CPU threads (0 = torch's default; see :func:`set_threads`)."""
    parser.add_argument("--threads", type=int, default=default, help=help)


def add_sampler(parser: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """``--sampler {ddim,dpmpp,unipc}``: the solver (:data:`SAMPLERS`)."""
    parser.add_argument("--sampler", choices=SAMPLERS, default=default, help=help)


def add_no_progress(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--no-progress``: no progress bars."""
    parser.add_argument("--no-progress", action="store_true", help=help)


def corpus_folder(path: Path) -> Path:
    """``path``, when it is a folder; else :class:`NotFound` (before anything loads)."""
    if not path.is_dir():
        raise NotFound(f"corpus folder {path} does not exist")
    return path


def set_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads; 0 (or less) leaves torch's default."""
    if threads > 0:
        import torch  # deferred: torch is slow to import and --help must not need it

        torch.set_num_threads(threads)
