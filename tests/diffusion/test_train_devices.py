"""Device-agnostic base training: device choice, learning-rate scaling, batches cut from the
frames in one tensor (exact resume), channels-last exports, a packed corpus that trains, and
torch.compile through the shared loop. CUDA itself is not here; its code paths are the CPU's
with another device (see docs/training.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from encore.cli import main
from encore.corpus.dataset import SpectrogramDataset
from encore.diffusion.train import (
    TrainConfig,
    read_log,
    scaled_lr,
    train,
    training_device,
)
from encore.diffusion.training import use_bf16
from encore.errors import ConfigurationError

from ..corpus.synthetic import write_synthetic_corpus
from .train_helpers import assert_resumed_exactly

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def cfg(**changes: object) -> TrainConfig:
    base = dict(tiny=True, width=16, batch_size=4, max_steps=6, lr=3e-3, warmup_steps=2,
                log_every=2, eval_every=3, eval_crops=4, precision="fp32", seed=5,
                checkpoint_minutes=1e9, device="cpu")
    base.update(changes)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_synthetic_corpus(tmp_path / "corpus")


def datasets(corpus: Path) -> tuple[SpectrogramDataset, SpectrogramDataset]:
    return (SpectrogramDataset(corpus, split="train", width=16, seed=5),
            SpectrogramDataset(corpus, split="heldout", width=16, seed=6))


@no_cuda
def test_auto_is_the_cpu_here_and_cuda_is_a_clear_error() -> None:
    assert training_device("auto") == torch.device("cpu")
    assert training_device(None) == torch.device("cpu")
    assert training_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigurationError, match="sees no CUDA device"):
        training_device("cuda")
    with pytest.raises(ConfigurationError, match="sees no CUDA device"):
        training_device("cuda:1")
    with pytest.raises(ConfigurationError, match="cannot train on device 'tpu'"):
        training_device("tpu")


@no_cuda
def test_cli_device_cuda_without_cuda_is_one_line_not_a_traceback(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "base", "--corpus", str(corpus), "--out", str(tmp_path / "run"),
                 "--steps", "1", "--tiny", "--device", "cuda", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--device cuda" in err and "no CUDA" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_learning_rate_scales_with_the_square_root_of_the_batch() -> None:
    assert scaled_lr(16) == pytest.approx(5e-4)
    assert scaled_lr(256) == pytest.approx(2e-3)
    assert scaled_lr(64) == pytest.approx(1e-3)
    assert scaled_lr(1024, base_lr=1e-4, base_batch=16) == pytest.approx(8e-4)


def test_bf16_choice_per_device() -> None:
    assert use_bf16("fp32", "cuda") is False
    assert use_bf16("bf16", "cuda") is True
    assert use_bf16("bf16", "cpu") is True
    assert use_bf16("auto", "mps") is False
    if not torch.cuda.is_available():
        assert use_bf16("auto", "cuda") is False  # no GPU that computes in bf16


def test_corpus_batches_are_cut_from_one_tensor_and_resume_exactly(corpus: Path, tmp_path: Path) -> None:
    train_ds, held = datasets(corpus)
    # a flat learning rate after the warm-up: a 4-step and a 6-step plan then agree on steps 1-4
    straight = train(cfg(max_steps=6, min_lr_ratio=1.0), dataset=train_ds, heldout=held, out_dir=tmp_path / "a",
                     progress=False)
    saved = (tmp_path / "a" / "train_config.json").read_text()
    assert '"data": "tensor"' in saved and '"device": "cpu"' in saved
    train_ds, held = datasets(corpus)
    train(cfg(max_steps=4, min_lr_ratio=1.0), dataset=train_ds, heldout=held, out_dir=tmp_path / "b",
          progress=False)
    train_ds, held = datasets(corpus)
    resumed = train(cfg(max_steps=6, min_lr_ratio=1.0), dataset=train_ds, heldout=held, out_dir=tmp_path / "b",
                    resume=True, progress=False)
    assert straight.steps == 6
    assert_resumed_exactly(straight, resumed)
    assert straight.heldout_loss is not None and math.isfinite(straight.heldout_loss)


def test_a_checkpoint_from_before_tensor_batches_resumes_item_by_item(corpus: Path, tmp_path: Path) -> None:
    train_ds, held = datasets(corpus)
    train(cfg(max_steps=2, data="items"), dataset=train_ds, heldout=held, out_dir=tmp_path / "r",
          progress=False)
    path = tmp_path / "r" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["config"]["data"], checkpoint["config"]["device"]  # as written before this change
    torch.save(checkpoint, path)
    train_ds, held = datasets(corpus)
    result = train(cfg(max_steps=4), dataset=train_ds, heldout=held, out_dir=tmp_path / "r",
                   resume=True, progress=False)
    assert result.steps == 4
    assert '"data": "items"' in (tmp_path / "r" / "train_config.json").read_text()


def test_channels_last_training_exports_a_folder_that_loads_and_matches(corpus: Path, tmp_path: Path) -> None:
    from encore.diffusion.folder import load_model_folder

    train_ds, held = datasets(corpus)
    result = train(cfg(max_steps=2, channels_last=True), dataset=train_ds, heldout=held,
                   out_dir=tmp_path / "run", progress=False)
    ema = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["ema"]["model"]
    loaded = load_model_folder(result.model_dir, device="cpu")
    for key, value in loaded.denoiser.state_dict().items():
        torch.testing.assert_close(value, ema[key])


def test_a_packed_corpus_unpacks_and_trains(corpus: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "c.pack"
    assert main(["corpus", "pack", "--corpus", str(corpus), "--out", str(pack)]) == 0
    assert main(["corpus", "unpack", str(pack), "--out", str(tmp_path / "u")]) == 0
    assert main(["train", "base", "--corpus", str(tmp_path / "u"), "--out", str(tmp_path / "run"),
                 "--steps", "4", "--batch", "4", "--tiny", "--device", "auto", "--threads", "1",
                 "--eval-every", "2", "--no-progress"]) == 0
    assert "trained 4 steps (16 samples)" in capsys.readouterr().out
    rows = read_log(tmp_path / "run" / "loss_log.jsonl")
    assert [r["step"] for r in rows if "heldout_loss" in r] == [0, 2, 4]
    assert (tmp_path / "run" / "model" / "unet").is_dir()


def test_compiled_training_step_shares_the_weights(corpus: Path, tmp_path: Path) -> None:
    """--compile routes only the training forward through torch.compile (backend "eager" here:
    dynamo's tracing without code generation); checkpoints and exports hold plain keys."""
    train_ds, held = datasets(corpus)
    result = train(cfg(max_steps=2, compile="eager"), dataset=train_ds, heldout=held,
                   out_dir=tmp_path / "run", progress=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert not any("_orig_mod" in k for k in checkpoint["model"])
    assert result.steps == 2 and math.isfinite(result.final_loss)
