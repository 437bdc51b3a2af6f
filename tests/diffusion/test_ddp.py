"""Data-parallel training (torchrun / DDP on gloo): two CPU processes train what one process
trains on the same global batch.

The paper's confidence-weighted fine-tune (an odd batch: 3 + 2 rows), Diffusion-DPO (one pair
and one replay crop per batch: the second process has no replay row and still joins DDP's
backward) and Diffusion-KTO (a batch-level reference point) run through the shared loop in two
processes started as torchrun starts them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``); the weights, EMA weights, exported folders and loss logs must
equal a single-process run's. ``encore train base`` is run by torchrun itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from encore.diffusion.finetune import FinetuneConfig, finetune
from encore.diffusion.folder import load_model_folder
from encore.diffusion.preference import PreferenceConfig, preference_finetune
from encore.diffusion.train import scaled_lr
from encore.diffusion.training import CHECKPOINT_FILE, LOG_FILE, distributed, read_log
from encore.diffusion.training.distributed import row_shares

from ..corpus.synthetic import write_synthetic_corpus
from .conftest import _make_tiny_model

H, WIDE = 16, 40
METHODS = ("paper", "dpo", "kto")
SRC = Path(__file__).resolve().parents[2] / "src"


def _images() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.integers(0, 256, size=(H, WIDE)).astype(np.uint8) for k in range(6)}


def _cfg(method: str) -> FinetuneConfig:
    # paper: 5 clip crops a batch (3 + 2 rows); dpo: 1 pair + 1 replay crop; kto: 3 + 1 replay
    return FinetuneConfig(steps=4, max_minutes=None, batch_size=5 if method == "paper" else 4,
                          replay_fraction=0.0 if method == "paper" else 0.25, lr=3e-3, warmup_steps=1,
                          ema_decay=0.5, eval_every=2, eval_crops=4, patience=0, seed=3,
                          precision="fp32", log_every=1)


def _train(method: str, out: Path) -> None:
    """One fine-tune of the tiny seeded parent into ``out`` (run folder and ``out/model``)."""
    parent = _make_tiny_model("unshuffle")
    images = _images()
    if method == "paper":
        finetune(parent, [(images[k], 0.2 + 0.15 * k) for k in range(6)], cfg=_cfg(method),
                 out_dir=out, model_dir=out / "model")
        return
    replay = [torch.rand(1, H, H, generator=torch.Generator().manual_seed(k)) * 2 - 1 for k in range(4)]
    if method == "dpo":
        examples = {"pairs": [(0, 3, 1.0), (1, 4, 0.5), (2, 5, 0.8)]}
        pref = PreferenceConfig("dpo", dpo_beta=500.0)
    else:
        examples = {"labels": [(0, True, 1.0), (1, True, 0.6), (2, False, 0.9), (3, False, 0.4),
                               (4, True, 0.7)]}
        pref = PreferenceConfig("kto", kto_beta=500.0)
    preference_finetune(parent, images, cfg=_cfg(method), pref=pref, out_dir=out, replay=replay,
                        model_dir=out / "model", **examples)


def _worker(rank: int, world: int, port: int, root: str) -> None:
    """One process of a two-process launch, with torchrun's environment."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.process_group("cpu") as started:
        assert started and distributed.world_size() == world and distributed.rank() == rank
        for method in METHODS:
            _train(method, Path(root) / method)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_same_weights(a: dict, b: dict, lr: float) -> set[str]:
    """Checkpoints ``a`` and ``b`` hold allclose weights (and EMA weights); the parameters with a
    gradient signal are returned.

    Parameters whose gradient is zero in exact arithmetic (a conv bias before a GroupNorm, an
    attention key bias under the softmax: Adam's second moment below 1e-16) get round-off
    that Adam scales up to a step of about ``lr`` in either direction; for them only the bound
    ``2 × lr × steps`` holds (they do not change the model's output, which is compared too).
    """
    assert a["step"] == b["step"]
    adam = a["optimizer"]["state"]  # one parameter group, in the model's order (checked)
    assert len(a["optimizer"]["param_groups"]) == 1 and len(adam) == len(a["model"])
    signal = {key for i, key in enumerate(a["model"]) if float(adam[i]["exp_avg_sq"].max()) > 1e-16}
    assert len(signal) > 0.8 * len(a["model"])
    for weights in (lambda c: c["model"], lambda c: c["ema"]["model"]):
        for key, value in weights(a).items():
            if key in signal:
                torch.testing.assert_close(weights(b)[key], value, rtol=1e-3, atol=1e-5)
            else:
                assert float((weights(b)[key] - value).abs().max()) <= 2 * lr * a["step"]
    return signal


def _assert_same_run(one: Path, two: Path) -> None:
    a = torch.load(one / CHECKPOINT_FILE, weights_only=False)
    b = torch.load(two / CHECKPOINT_FILE, weights_only=False)
    assert a["step"] == 4
    signal = _assert_same_weights(a, b, lr=3e-3)
    parent = _make_tiny_model("unshuffle").denoiser.state_dict()
    moved = max(float((v - parent[k]).abs().max()) for k, v in a["model"].items() if k in signal)
    assert moved > 1e-3  # the runs trained (equal because they learnt the same, not nothing)
    exported = [load_model_folder(d / "model", device="cpu").denoiser for d in (one, two)]
    x = torch.randn(6, 1, H, H, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 50, 200, 500, 800, 999])
    with torch.no_grad():
        torch.testing.assert_close(exported[1](x, t), exported[0](x, t), rtol=1e-3, atol=1e-4)
    rows = [[r for r in read_log(d / LOG_FILE) if "loss" in r] for d in (one, two)]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in rows[1]], [r["loss"] for r in rows[0]], rtol=1e-4)


def test_two_gloo_processes_train_what_one_process_trains(tmp_path: Path) -> None:
    single, parallel = tmp_path / "single", tmp_path / "ddp"
    for method in METHODS:
        _train(method, single / method)
    mp.spawn(_worker, args=(2, _free_port(), str(parallel)), nprocs=2, join=True)
    for method in METHODS:
        _assert_same_run(single / method, parallel / method)


def test_rows_are_shared_in_contiguous_blocks_differing_by_at_most_one() -> None:
    assert row_shares(5, 2) == [3, 2]
    assert row_shares(1, 2) == [1, 0]
    assert row_shares(8, 3) == [3, 3, 2]
    assert sum(row_shares(17, 4)) == 17


def test_world_size_without_the_rest_of_torchruns_environment_is_a_clear_error(monkeypatch) -> None:
    from encore.errors import ConfigurationError

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="torchrun"), distributed.process_group("cpu"):
        pass


def test_torchrun_train_base_equals_the_single_process_run(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 encore train base`` against ``encore train base``."""
    corpus = write_synthetic_corpus(tmp_path / "corpus")
    args = ["train", "base", "--corpus", str(corpus), "--tiny", "--steps", "3", "--batch", "4",
            "--warmup", "1", "--eval-every", "2", "--precision", "fp32", "--threads", "1",
            "--seed", "4", "--no-progress", "--data", "items"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    runs = {"single": [sys.executable, "-m", "encore.cli"],
            "ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "encore.cli"]}
    outputs = {}
    for name, launcher in runs.items():
        done = subprocess.run([*launcher, *args, "--out", str(tmp_path / name)], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[name] = done.stdout
    assert outputs["ddp"].count("trained 3 steps (12 samples)") == 1  # rank 0 alone reports
    a = torch.load(tmp_path / "single" / CHECKPOINT_FILE, weights_only=False)
    b = torch.load(tmp_path / "ddp" / CHECKPOINT_FILE, weights_only=False)
    assert a["step"] == 3
    _assert_same_weights(a, b, lr=scaled_lr(4))
    held = [[r["heldout_loss"] for r in read_log(tmp_path / d / LOG_FILE) if "heldout_loss" in r]
            for d in ("single", "ddp")]
    assert len(held[0]) == 3 and np.allclose(held[0], held[1], rtol=1e-4)
    config = json.loads((tmp_path / "ddp" / "model" / "train_config.json").read_text())
    assert config["batch_size"] == 4  # the global batch, as one process has it
