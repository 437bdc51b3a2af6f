"""Checks shared by the base-training tests (``from .train_helpers import …``)."""

from __future__ import annotations

import pytest
import torch

from encore.diffusion.train import TrainResult
from encore.diffusion.training import CHECKPOINT_FILE, read_log


def assert_resumed_exactly(straight: TrainResult, resumed: TrainResult) -> None:
    """A run stopped and resumed logged the same losses and saved the same weights (raw and
    EMA) as the same run made in one go."""
    assert resumed.steps == straight.steps
    a, b = ([r["loss"] for r in read_log(run.log_path) if "loss" in r] for run in (straight, resumed))
    assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    ca, cb = (torch.load(run.out_dir / CHECKPOINT_FILE, weights_only=False) for run in (straight, resumed))
    for key, value in ca["model"].items():
        torch.testing.assert_close(cb["model"][key], value, rtol=1e-5, atol=1e-6)
    for key, value in ca["ema"]["model"].items():
        torch.testing.assert_close(cb["ema"]["model"][key], value, rtol=1e-5, atol=1e-6)
