"""What packing costs a corpus: the quantisation error (dB and model units) and base-v0's
held-out loss on the original, the unpacked and in-memory re-quantised corpora.

    .venv/bin/python scripts/measure-pack.py ORIGINAL_CORPUS UNPACKED_CORPUS [--levels 255 95 47]

(docs/training.md quotes its output for the 10-hour corpus.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from encore.corpus.dataset import SpectrogramDataset
from encore.corpus.manifest import load_manifest
from encore.corpus.pack import dequantise, quantise
from encore.diffusion.folder import load_model_folder
from encore.diffusion.train import (
    TrainConfig,
    fixed_heldout_batch,
    heldout_loss,
    make_noise_scheduler,
)

MODEL = Path(__file__).resolve().parents[1] / "src" / "encore" / "models" / "base-v0"


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Requantised(SpectrogramDataset):
    """A corpus read through quantise/dequantise at ``levels`` (what a pack at that setting holds)."""

    levels = 255

    def _mel(self, p: int) -> np.ndarray:
        mel = np.asarray(super()._mel(p))
        return dequantise(quantise(mel, self.levels), self.levels).astype(np.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path)
    parser.add_argument("unpacked", type=Path)
    parser.add_argument("--levels", type=int, nargs="*", default=[255, 95, 47])
    parser.add_argument("--crops", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    a_root, b_root = args.original, args.unpacked
    t0 = time.time()
    worst, total, count = 0.0, 0.0, 0
    for r in load_manifest(a_root):
        d = np.abs(np.load(a_root / r.mel).astype(np.float32) - np.load(b_root / r.mel).astype(np.float32))
        worst, total, count = max(worst, float(d.max())), total + float(d.sum()), count + d.size
    say(f"dB: max abs error {worst:.3f}, mean {total / count:.3f} over {count} values ({time.time() - t0:.0f} s)")
    for split in ("train", "heldout"):
        ca = SpectrogramDataset(a_root, split=split, width=128, random_offset=False).crop_tensor()
        cb = SpectrogramDataset(b_root, split=split, width=128, random_offset=False).crop_tensor()
        worst, total, count = 0.0, 0.0, 0
        for i in range(0, len(ca), 512):
            index = torch.arange(i, min(i + 512, len(ca)))
            d = (ca.crops(index) - cb.crops(index)).abs()
            worst, total, count = max(worst, float(d.max())), total + float(d.sum()), count + d.numel()
        say(f"{split}: {len(ca)} crops, model units: max abs error {worst:.4f}, mean {total / count:.5f}")
    model = load_model_folder(MODEL, device="cpu").denoiser
    cfg = TrainConfig.from_dict(json.loads((MODEL / "train_config.json").read_text()))
    sched = make_noise_scheduler(cfg)

    def loss(dataset: SpectrogramDataset) -> float:
        batch = fixed_heldout_batch(dataset, args.crops, cfg.num_train_timesteps, 0)
        assert batch is not None
        return heldout_loss(model, batch, sched, use_bf16=False)

    for name, root in (("original", a_root), ("unpacked", b_root)):
        say(f"base-v0 held-out loss, {args.crops} fixed crops, {name}: "
              f"{loss(SpectrogramDataset(root, split='heldout', width=128, seed=1)):.5f}")
    for levels in args.levels:
        Requantised.levels = levels
        say(f"base-v0 held-out loss, original re-quantised at {levels} levels ({100 / levels:.2f} dB): "
              f"{loss(Requantised(a_root, split='heldout', width=128, seed=1)):.5f}")


if __name__ == "__main__":
    main()
