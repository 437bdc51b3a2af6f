"""Fixtures of the diffusion engine's tests: tiny seeded denoisers and model folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from encore.audio.mel import MelConfig
from encore.diffusion.folder import (
    LoadedModel,
    build_random_model,
    default_scheduler,
    save_model_folder,
)
from encore.diffusion.model import tiny_config

TINY_MEL = MelConfig(x_res=16, y_res=16)


def _make_tiny_model(
    layout: str = "unshuffle", seed: int = 0, *, clip_sample: bool = True
) -> LoadedModel:
    """A tiny randomly initialised model (float32, CPU, eval mode, 16 mel bins).

    A zero-initialised head would hide bugs in the head path, so its last layer gets small
    random weights.
    """
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(default_scheduler().config, clip_sample=clip_sample)
    model = build_random_model(
        tiny_config(layout, height=TINY_MEL.y_res), TINY_MEL, seed=seed, scheduler=scheduler
    )
    if model.denoiser.head is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1000)
            torch.nn.init.normal_(model.denoiser.head[-1].weight, std=0.05)
    return model


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a loaded 2-core machine two OpenMP threads
    spin-wait on each other (measured: 40 ms vs 4–13 s for 8 tiny DDIM steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_tiny() -> Callable[..., LoadedModel]:
    """Factory ``make_tiny(layout="unshuffle", seed=0, clip_sample=True)``."""
    return _make_tiny_model


@pytest.fixture
def tiny_mel() -> MelConfig:
    return TINY_MEL


@pytest.fixture
def tiny_model() -> LoadedModel:
    return _make_tiny_model("unshuffle")


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    model = _make_tiny_model("unshuffle")
    return save_model_folder(
        tmp_path / "tiny-model", model.denoiser, model.mel_config, scheduler=model.scheduler
    )
