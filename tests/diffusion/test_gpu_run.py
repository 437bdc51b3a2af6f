"""``scripts/gpu-base-run`` end to end on the CPU with tiny settings: unpack a pack, train,
export the fp16 folder, evaluate on held-out clips, export again with the evaluation — every
output in one folder. (The GPU run itself: docs/training.md.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from encore.cli import main

from ..corpus.synthetic import write_synthetic_corpus

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-base-run"


def test_one_run_on_a_budget_writes_everything_to_one_folder(tmp_path: Path) -> None:
    from safetensors import safe_open

    corpus = write_synthetic_corpus(tmp_path / "corpus")
    pack = tmp_path / "corpus.pack"
    assert main(["corpus", "pack", "--corpus", str(corpus), "--out", str(pack)]) == 0
    out = tmp_path / "out"
    env = {**os.environ, "PACK": str(pack), "OUT": str(out), "TINY": "1", "STEPS": "2",
           "BATCH": "4", "EVAL_N": "4", "EVAL_STEPS": "2", "DEVICE": "auto", "THREADS": "1",
           "NAME": "base-test", "ENCORE": str(Path(sys.executable).parent / "encore")}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    record = json.loads((out / "run.json").read_text())
    assert set(record["seconds"]) == {"unpack", "train", "export", "eval", "export_final", "total"}
    folder = out / "base-test"
    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    meta = json.loads((folder / "encore.json").read_text())
    assert meta["name"] == "base-test" and meta["training"]["steps"] == 2
    assert meta["training"]["train_config"]["device"] == "cpu"  # auto without CUDA
    report = json.loads((out / "eval.json").read_text())
    assert meta["metrics"]["rows"] == report["rows"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert "2 at batch 4 = **8 samples**" in card
    assert "| generate (model) |" in card and "pictures/real_A.png" in card
    assert (folder / "pictures" / "generate_model.png").stat().st_size > 0
    assert (folder / "loss_curve.png").stat().st_size > 0
    assert (out / "run" / "checkpoint.pt").is_file()  # the run can be resumed

    again = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already holds a run" in again.stderr
