"""``encore bench finetune``: one fine-tuning iteration of the default model on 100 clips.

The curated dataset of a live platform is replaced by a synthetic one with the same shape:
100 clips of 5.9 s (256 frames) made by the model itself — variations (strength 0.5) of
held-out corpus slices of *one* genre, as if the listeners preferred it — with made-up
confidences drawn uniformly in [0.2, 1]. Without a corpus the clips are the model's own
generations. The fine-tune then runs exactly as the ``finetune`` job does
(:class:`~encore.diffusion.finetune.FinetuneConfig` from the settings, replay from the corpus
or the parent's generations), and the figures are printed: wall time (the target is
≤ 10 minutes on 2 cores), steps, samples/s, the losses of parent and result on the training
clips, held-out clips and held-out corpus crops, and — unless ``--quick`` — the weight-free
metrics of the new model against its parent (``encore eval``).

Settings (environment): ``ENCORE_CORPUS_DIR``, ``ENCORE_FINETUNE_STEPS``,
``ENCORE_FINETUNE_REPLAY_FRACTION``, ``ENCORE_FINETUNE_LR``, ``ENCORE_FINETUNE_EVAL_CLIPS``,
``ENCORE_TORCH_THREADS`` (default here: 2). ``--model`` picks the parent (default: the shipped
base model; a randomly initialised default-config model when it is missing, which is fine
for timing only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ruff: noqa: T201  (a benchmark prints its figures)

N_CLIPS = 100
CLIP_FRAMES = 256  # 5.9 s at 22 050 Hz, hop 512 (254 frames), rounded up to a multiple of 16


def _held_out_slices(corpus: Path, mel_config: Any, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """``n`` held-out corpus slices of CLIP_FRAMES frames from the genre with the most of them."""
    from collections import Counter

    from encore.corpus.dataset import SpectrogramDataset
    from encore.corpus.manifest import load_manifest

    records = load_manifest(corpus)
    split = "heldout" if any(r.split == "heldout" for r in records) else "train"
    counts = Counter(r.genre for r in records if r.split == split)
    genre = counts.most_common(1)[0][0]
    data = SpectrogramDataset(corpus, split=split, width=CLIP_FRAMES, seed=seed, genres=[genre],
                              random_offset=False)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(data), (n,), generator=g).tolist()
    return torch.stack([data[i][0] for i in idx]).float(), f"{genre} ({split} split, {len(data)} slices)"


def synthetic_clips(model: Any, corpus: Path | None, *, n: int = N_CLIPS, seed: int = 0,
                    steps: int = 20) -> tuple[list[np.ndarray], list[float], str]:
    """``(uint8 mel images (H, 256), confidences, description)`` made by ``model``."""
    from encore.audio.mel import unit_to_images
    from encore.diffusion import sampling

    images = []
    if corpus is not None:
        sources, what = _held_out_slices(corpus, model.mel_config, n, seed)
        for i in range(0, n, 10):
            images.append(sampling.vary(model, sources[i : i + 10], strength=0.5, seed=seed + i,
                                        steps=steps, precision="auto").images)
        what = f"variations (strength 0.5, {steps} DDIM steps) of held-out {what}"
    else:
        for i in range(0, n, 10):
            images.append(sampling.generate(model, batch=min(10, n - i), width=CLIP_FRAMES,
                                            seed=seed + i, steps=steps, precision="auto").images)
        what = f"generations ({steps} DDIM steps) of the model"
    grey = unit_to_images(torch.cat(images)[:, 0]).numpy()
    rng = np.random.default_rng(seed)
    confidences = rng.uniform(0.2, 1.0, size=n).round(3).tolist()
    return list(grey), confidences, what


def _cached_clips(folder: Path, parent: Any, model_dir: Path, corpus: Path | None) -> tuple[list, list, str]:
    """:func:`synthetic_clips`, saved once per (model folder, corpus) and reused (several runs
    with other settings then fine-tune on the same clips)."""
    import hashlib

    weights = Path(model_dir) / "unet" / "diffusion_pytorch_model.safetensors"
    stamp = f"{Path(model_dir).resolve()}|{weights.stat().st_mtime if weights.exists() else 'random'}|{corpus}"
    path = folder / f"clips-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return list(data["images"]), data["confidences"].tolist(), str(data["what"]) + " (cached)"
    clips, confidences, what = synthetic_clips(parent, corpus, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=np.stack(clips), confidences=np.asarray(confidences), what=np.asarray(what))
    return clips, confidences, what


def bench_parent(args: argparse.Namespace, settings: Any) -> tuple[Any, Any, Any, int]:
    """The fine-tune benches' set-up: torch threads (set), the parent (``--model`` or the base
    model; a randomly initialised default-config model when there is none, for timing only),
    its folder, the corpus (None without one) and the thread count."""
    from encore.diffusion.folder import build_random_model, load_model_folder

    threads = settings.torch_threads or 2
    torch.set_num_threads(threads)
    model_dir = args.model or settings.base_model_dir
    parent = load_model_folder(model_dir, device="cpu") if Path(model_dir).is_dir() else build_random_model(seed=0)
    corpus_ok = settings.corpus_dir and (Path(settings.corpus_dir) / "manifest.jsonl").is_file()
    return parent, model_dir, settings.corpus_dir if corpus_ok else None, threads


def run_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion.finetune import FinetuneConfig, evaluate_against_parent, finetune
    from encore.diffusion.finetune_data import parent_replay_set
    from encore.diffusion.folder import load_model_folder

    method = getattr(args, "method", None) or "paper"
    if method != "paper":  # dpo, kto, or all three on the same clips: encore.diffusion.preference_bench
        from encore.diffusion.preference_bench import run_preference_bench

        return run_preference_bench(args)
    settings = get_settings()
    parent, model_dir, corpus, threads = bench_parent(args, settings)
    if Path(model_dir).is_dir():
        print(f"parent: {model_dir} ({parent.denoiser.num_parameters() / 1e6:.2f} M parameters)")
    else:
        print(f"parent: no model at {model_dir}; a randomly initialised default-config model "
              "(timing only)")
    print(f"corpus: {corpus or 'none (replay = the parent generations)'}; torch threads {threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    t0 = time.monotonic()
    clips, confidences, what = _cached_clips(Path(settings.data_dir) / "bench-finetune", parent,
                                             model_dir, corpus)
    t_clips = time.monotonic() - t0
    print(f"dataset: {len(clips)} clips {clips[0].shape} — {what}; confidences U(0.2, 1), "
          f"mean {np.mean(confidences):.2f} ({t_clips:.0f} s to make)")

    cfg = FinetuneConfig(steps=args.steps or settings.finetune_steps,
                         max_minutes=settings.finetune_max_minutes,
                         batch_size=settings.finetune_batch_size, lr=settings.finetune_lr,
                         replay_fraction=settings.finetune_replay_fraction, threads=threads)
    out = Path(settings.data_dir) / "bench-finetune" / time.strftime("%Y%m%d-%H%M%S")
    t1 = time.monotonic()
    replay, replay_heldout, source = None, None, "none"
    if corpus is not None:
        from encore.corpus.dataset import SpectrogramDataset

        replay_heldout = SpectrogramDataset(corpus, split="heldout", width=parent.mel_config.x_res, seed=1)
    if cfg.replay_fraction > 0:
        if corpus is not None:
            from encore.corpus.dataset import SpectrogramDataset

            replay = SpectrogramDataset(corpus, split="train", width=parent.mel_config.x_res, seed=cfg.seed)
            source = f"corpus train split ({len(replay)} slices)"
        else:
            replay = parent_replay_set(parent, n=settings.finetune_parent_replay_clips, steps=25)
            source = f"{len(replay)} parent generations"
    t_replay = time.monotonic() - t1
    print(f"fine-tune: {cfg.steps} steps × batch {cfg.batch_size} ({cfg.replay_per_batch} replay: "
          f"{source}), lr {cfg.lr:g}, EMA {cfg.ema_decay}, out {out}")
    result = finetune(parent, list(zip(clips, confidences, strict=True)), cfg=cfg, out_dir=out,
                      replay=replay, replay_heldout=replay_heldout, name="bench")
    t_total = time.monotonic() - t0
    print(f"\ntraining: {result.steps} steps ({result.stop_reason}, best step {result.best_step}) in "
          f"{result.wall_seconds / 60:.1f} min = {result.samples_seen / result.wall_seconds:.1f} samples/s")
    print(f"iteration (replay set {t_replay:.0f} s + training + export): "
          f"{(t_total - t_clips) / 60:.1f} min  [target ≤ 10 min on 2 cores]")
    for key in ("train_clip_loss", "heldout_clip_loss", "replay_loss"):
        before, after = getattr(result, key)
        if before is not None:
            print(f"  {key:<18} parent {before:.4f} → fine-tuned {after:.4f} ({(after - before) / before:+.1%})")
    print(f"  loss curve: {result.curve_path}")
    summary: dict[str, Any] = {"figures": result.summary(), "dataset": what, "replay": source,
                               "iteration_minutes": round((t_total - t_clips) / 60, 2)}
    if not args.quick and corpus is not None and settings.finetune_eval_clips >= 4:
        from encore.corpus.dataset import SpectrogramDataset
        from encore.diffusion.evaluate import format_table

        t2 = time.monotonic()
        width = parent.mel_config.x_res
        child = load_model_folder(result.model_dir, device="cpu")
        reports = evaluate_against_parent(
            child, parent, heldout=SpectrogramDataset(corpus, split="heldout", width=width, seed=0),
            train=SpectrogramDataset(corpus, split="train", width=width, seed=0),
            n=settings.finetune_eval_clips, steps=settings.finetune_eval_steps)
        from encore.diffusion.evaluate import EvalReport, SetMetrics

        for tag in ("parent_eval", "eval"):
            r = reports[tag]
            rows = tuple(SetMetrics(**row) for row in r["rows"])
            print(f"\n{tag}:\n" + format_table(EvalReport(rows, r["n"], r["steps"], r["width"],
                  r["strength"], r["seed"], r["precision"], r["seconds"], r["scores"])))
        print(f"\nnormalised score change (new − parent): {reports['eval_delta']} "
              f"({(time.monotonic() - t2) / 60:.1f} min to evaluate both)")
        summary["eval_delta"] = reports["eval_delta"]
        summary["scores"] = {"parent": reports["parent_eval"]["scores"], "new": reports["eval"]["scores"]}
    (out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"figures: {out / 'bench.json'}")
    return 0
