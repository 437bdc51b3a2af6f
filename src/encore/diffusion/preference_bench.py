"""``encore bench finetune --method dpo|kto|all``: one preference fine-tuning iteration, timed.

The same synthetic dataset as the paper's bench (:mod:`encore.diffusion.finetune_bench`: 100
clips of 5.9 s made by the model, cached), and a hidden listener who prefers clips with more
energy in the first half of the mel rows (:func:`band_level`) — a preference the parent does not have, so
the implicit-reward margin on held-out pairs shows whether a method learns it:

- ``dpo``: 99 pairs (consecutive clips of a seeded permutation), the higher level wins;
- ``kto``: every clip labelled desirable above the median level, undesirable below.

Each runs as the ``finetune`` job runs a preference method (:func:`preference_finetune` with the
settings' batch, steps, learning rate, replay and β), and the bench prints the wall time of the
iteration, seconds per step, and parent → fine-tuned figures: the preference loss, the DPO
margin / accuracy or the KTO rewards on training and held-out examples, and the ε-loss on
held-out corpus crops (forgetting). ``--method all`` runs paper, dpo, kto and the conditioned
dpo (below) one after another and ends with one line per method: steps, seconds per step, the
iteration's time and its projection to the planned steps, parent → fine-tuned figures.

``--conditioned`` (with ``--method dpo``): two hidden listeners with opposite tastes — one
prefers a higher band level, the other a lower — each its own taste group; each rates its own
pairs (seeded permutations of the clips). One taste-conditioned DPO run learns both
(:class:`~encore.diffusion.preference.Conditioning`, the settings' label dropout and embedding
learning-rate scale); the bench prints, for each group's label and the null label, the
implicit-reward margin on "higher level wins" pairs (group 0 should be highest, group 1
lowest) and the band level of variations of held-out clips sampled for that group, beside the
parent's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ruff: noqa: T201  (a benchmark prints its figures)


def band_level(image: np.ndarray) -> float:
    """Mean grey level (dB-scaled energy) of the first half of the image's mel rows."""
    return float(np.asarray(image, dtype=np.float64)[: image.shape[0] // 2].mean())


def synthetic_preferences(clips: list[np.ndarray], seed: int = 0) -> tuple[list[tuple[int, int, float]],
                                                                           list[tuple[int, bool, float]]]:
    """``(pairs, labels)`` of the hidden listener who prefers a higher :func:`band_level`."""
    score = [band_level(c) for c in clips]
    order = np.random.default_rng(seed).permutation(len(clips)).tolist()
    pairs = []
    for a, b in zip(order[:-1], order[1:], strict=True):
        if score[a] != score[b]:
            pairs.append((a, b, 1.0) if score[a] > score[b] else (b, a, 1.0))
    median = float(np.median(score))
    labels = [(i, s > median, 1.0) for i, s in enumerate(score) if s != median]
    return pairs, labels


def run_preference_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion.finetune import FinetuneConfig
    from encore.diffusion.finetune_bench import _cached_clips, bench_parent
    from encore.diffusion.finetune_data import parent_replay_set
    from encore.diffusion.preference import PreferenceConfig, preference_finetune

    settings = get_settings()
    parent, model_dir, corpus, threads = bench_parent(args, settings)
    print(f"parent: {model_dir} ({parent.denoiser.num_parameters() / 1e6:.2f} M parameters); corpus: "
          f"{corpus or 'none'}; torch threads {threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.quick and corpus is not None:  # real music, nothing generated: corpus slices as clips
        from encore.audio.mel import unit_to_images
        from encore.diffusion.finetune_bench import _held_out_slices

        slices, what = _held_out_slices(corpus, parent.mel_config, 100, 0)
        clips, what = list(unit_to_images(slices[:, 0]).numpy()), f"corpus slices (--quick): {what}"
    else:
        clips, _, what = _cached_clips(Path(settings.data_dir) / "bench-finetune", parent, model_dir, corpus)
    pairs, labels = synthetic_preferences(clips)
    if getattr(args, "conditioned", False):
        _conditioned_bench(args, settings, parent, clips, threads)
        return 0
    print(f"dataset: {len(clips)} clips — {what}; hidden listener prefers a higher band level: "
          f"{len(pairs)} pairs, {sum(lab[1] for lab in labels)} desirable / {sum(not lab[1] for lab in labels)} "
          "undesirable")
    cfg = FinetuneConfig(steps=args.steps or settings.finetune_steps, max_minutes=settings.finetune_max_minutes,
                         batch_size=settings.finetune_batch_size, lr=settings.finetune_lr,
                         replay_fraction=settings.finetune_replay_fraction, threads=threads)
    replay, replay_heldout = None, None
    if corpus is not None:
        from encore.corpus.dataset import SpectrogramDataset

        width = parent.mel_config.x_res
        replay_heldout = SpectrogramDataset(corpus, split="heldout", width=width, seed=1)
        replay = SpectrogramDataset(corpus, split="train", width=width, seed=cfg.seed)
    elif cfg.replay_fraction > 0:
        replay = parent_replay_set(parent, n=settings.finetune_parent_replay_clips, steps=25)
    methods = ("paper", "dpo", "kto", "dpo+conditioned") if args.method == "all" else (args.method,)
    pref_cfg = dataclasses.replace(cfg, lr=settings.finetune_preference_lr)  # as the job does
    images = dict(enumerate(clips))
    rows: dict[str, Any] = {}
    for method in methods:
        if method == "dpo+conditioned":  # two opposite hidden listeners, one taste group each
            print()
            rows[method] = _conditioned_bench(args, settings, parent, clips, threads)
            continue
        if method == "paper":  # the paper's method on the same clips, confidences U(0.2, 1), timed alike
            from encore.diffusion.finetune import finetune

            out = Path(settings.data_dir) / "bench-finetune" / f"{time.strftime('%Y%m%d-%H%M%S')}-paper"
            conf = np.random.default_rng(0).uniform(0.2, 1.0, size=len(clips)).round(3).tolist()
            t0, c0 = time.monotonic(), time.process_time()
            paper = finetune(parent, list(zip(clips, conf, strict=True)), cfg=cfg, out_dir=out, replay=replay,
                             replay_heldout=replay_heldout, name="bench")
            total, cpu = time.monotonic() - t0, time.process_time() - c0
            print(f"\npaper: {paper.steps} steps ({paper.stop_reason}) in {paper.wall_seconds / 60:.1f} min = "
                  f"{paper.wall_seconds / max(paper.steps, 1):.2f} s/step; CPU {cpu / max(paper.steps, 1):.2f} "
                  f"CPU-s/step; iteration with export {total / 60:.1f} min")
            for key in ("train_clip_loss", "heldout_clip_loss", "replay_loss"):
                before, after = getattr(paper, key)
                if before is not None and after is not None:
                    print(f"  {key:<26} parent {before:.5f} → fine-tuned {after:.5f}")
            rows["paper"] = {"summary": paper.summary(), "iteration_minutes": round(total / 60, 2),
                             "seconds_per_step": round(paper.wall_seconds / max(paper.steps, 1), 3),
                             "cpu_seconds_per_step": round(cpu / max(paper.steps, 1), 3),
                             "figures": {k: getattr(paper, k) for k in ("heldout_clip_loss", "replay_loss")}}
            continue
        pref = PreferenceConfig(method, dpo_beta=settings.finetune_dpo_beta, kto_beta=settings.finetune_kto_beta,
                                replay_weight=settings.finetune_preference_replay_weight,
                                timestep_strength=settings.default_strength,
                                full_range_share=settings.finetune_full_range_share or 0.0)
        out = Path(settings.data_dir) / "bench-finetune" / f"{time.strftime('%Y%m%d-%H%M%S')}-{method}"
        t0, c0 = time.monotonic(), time.process_time()
        result = preference_finetune(parent, images, pairs=pairs if method == "dpo" else None,
                                     labels=labels if method == "kto" else None, cfg=pref_cfg, pref=pref,
                                     out_dir=out, replay=replay, replay_heldout=replay_heldout, name="bench")
        total, cpu = time.monotonic() - t0, time.process_time() - c0
        print(f"\n{method} (β {pref.beta:g}): {result.steps} steps ({result.stop_reason}, best step "
              f"{result.best_step}) in {result.wall_seconds / 60:.1f} min = {result.wall_seconds / max(result.steps, 1):.2f} "
              f"s/step; iteration with export {total / 60:.1f} min "
              f"(≈ {total / max(result.steps, 1) * cfg.steps / 60:.1f} min for {cfg.steps} steps, lr {pref_cfg.lr:g})  "
              "[target ≤ 10 min on 2 cores]")
        print(f"  CPU time {cpu / 60:.1f} min = {cpu / max(result.steps, 1):.2f} CPU-s/step over {threads} threads "
              f"(load average now {os.getloadavg()[0]:.1f}: on an idle machine ≈ CPU time / {threads})")
        for key, (before, after) in result.figures.items():
            if before is not None and after is not None:
                print(f"  {key:<26} parent {before:+.5f} → fine-tuned {after:+.5f}")
        rows[method] = {"summary": result.summary(), "iteration_minutes": round(total / 60, 2),
                        "seconds_per_step": round(result.wall_seconds / max(result.steps, 1), 3),
                        "cpu_seconds_per_step": round(cpu / max(result.steps, 1), 3),
                        "out": str(out), "figures": _side_by_side(result.figures, method)}
        (out / "bench.json").write_text(json.dumps(rows[method], indent=2) + "\n")
        print(f"  figures: {out / 'bench.json'}")
    if len(rows) > 1:
        _print_summary(rows, settings.finetune_steps, threads)
    return 0


def _side_by_side(figures: dict[str, Any], method: str) -> dict[str, Any]:
    """The held-out preference loss and the forgetting figure, (parent, fine-tuned)."""
    return {k: figures.get(k) for k in (f"heldout_{method}_loss", "replay_loss")}


def _print_summary(rows: dict[str, Any], steps: int, threads: int) -> None:
    """One line per method: the iteration's time (and its projection to ``steps``, the default), parent and
    child figures side by side."""
    print(f"\none iteration per method ({threads} torch threads, load average now {os.getloadavg()[0]:.1f}; "
          f"target ≤ 10 min on 2 cores):")
    print(f"  {'method':<16} {'steps':>5} {'s/step':>7} {'iteration':>10} {f'≈ {steps} steps':>13}  "
          "parent → fine-tuned (held-out loss of the method; corpus ε-loss = forgetting)")
    for method, row in rows.items():
        done = int(row["summary"].get("steps") or 0)
        per_step = float(row["seconds_per_step"])
        pairs = "; ".join(f"{k} {v[0]:.5f} → {v[1]:.5f}" for k, v in row["figures"].items()
                          if v and v[0] is not None and v[1] is not None)
        print(f"  {method:<16} {done:5d} {per_step:7.2f} {row['iteration_minutes']:8.1f} min "
              f"{row['iteration_minutes'] * steps / max(done, 1):9.1f} min  {pairs}")


def _replay_sets(settings: Any, parent: Any, seed: int) -> tuple[Any, Any]:
    corpus = settings.corpus_dir
    if not corpus or not (Path(corpus) / "manifest.jsonl").is_file():
        return None, None
    from encore.corpus.dataset import SpectrogramDataset

    width = parent.mel_config.x_res
    return (SpectrogramDataset(corpus, split="train", width=width, seed=seed),
            SpectrogramDataset(corpus, split="heldout", width=width, seed=1))


def _conditioned_bench(args: argparse.Namespace, settings: Any, parent: Any, clips: list[np.ndarray],
                       threads: int) -> dict[str, Any]:
    """Two opposite hidden listeners, one conditioned DPO run (module docstring)."""
    from encore.diffusion.finetune import FinetuneConfig, training_noise_scheduler
    from encore.diffusion.folder import load_model_folder
    from encore.diffusion.model import conditioned_denoiser
    from encore.diffusion.preference import Conditioning, PreferenceConfig, preference_finetune
    from encore.diffusion.sampling import guided, vary
    from encore.diffusion.training.preference import fixed_pairs, pair_figures

    n_eval = 16
    train_clips, eval_clips = clips[:-n_eval], clips[-n_eval:]
    up, _ = synthetic_preferences(train_clips, seed=0)
    other, _ = synthetic_preferences(train_clips, seed=1)
    down = [(lo, w, weight) for w, lo, weight in other]  # the second listener wants the opposite
    pairs, groups = up + down, [0] * len(up) + [1] * len(down)
    cond = Conditioning(2, groups, dropout=settings.finetune_group_dropout,
                        embedding_lr_scale=settings.finetune_group_lr_scale, record={"bench": "opposite band levels"})
    cfg = FinetuneConfig(steps=args.steps or settings.finetune_steps, max_minutes=settings.finetune_max_minutes,
                         batch_size=settings.finetune_batch_size, lr=settings.finetune_preference_lr,
                         replay_fraction=settings.finetune_replay_fraction, threads=threads)
    replay, replay_heldout = _replay_sets(settings, parent, cfg.seed)
    pref = PreferenceConfig("dpo", dpo_beta=settings.finetune_dpo_beta,
                            replay_weight=settings.finetune_preference_replay_weight,
                            timestep_strength=settings.default_strength,
                            full_range_share=settings.finetune_full_range_share or 0.0)
    print(f"conditioned dpo: {len(up)} pairs of a listener preferring a higher band level (group 0), {len(down)} of "
          f"one preferring a lower (group 1); label dropout {cond.dropout}, embedding lr × {cond.embedding_lr_scale:g}, "
          f"lr {cfg.lr:g}, {cfg.steps} steps; {n_eval} clips kept out for the variations")
    out = Path(settings.data_dir) / "bench-finetune" / f"{time.strftime('%Y%m%d-%H%M%S')}-dpo-conditioned"
    t0 = time.monotonic()
    result = preference_finetune(parent, dict(enumerate(train_clips)), pairs=pairs, cfg=cfg, pref=pref, out_dir=out,
                                 replay=replay, replay_heldout=replay_heldout, name="bench", conditioning=cond)
    total = time.monotonic() - t0
    print(f"  {result.steps} steps ({result.stop_reason}, best step {result.best_step}) in "
          f"{total / 60:.1f} min = {result.wall_seconds / max(result.steps, 1):.2f} s/step (iteration with "
          f"export); load average {os.getloadavg()[0]:.1f}  [target ≤ 10 min on 2 cores]")
    for key, (before, after) in result.figures.items():
        if before is not None and after is not None:
            print(f"  {key:<26} parent {before:+.5f} → fine-tuned {after:+.5f}")
    child = load_model_folder(result.model_dir, device="cpu")
    emb = child.denoiser.unet.class_embedding.weight.detach()
    print("  group embedding RMS: " + ", ".join(f"{name} {float(emb[i].pow(2).mean().sqrt()):.4f}"
                                                 for i, name in enumerate(("group 0", "group 1", "null"))))
    from encore.audio.mel import unit_to_images
    from encore.diffusion.finetune_data import clip_tensor

    height = int(parent.mel_config.y_res)
    tensors = [clip_tensor(c, height) for c in train_clips]
    sched = training_noise_scheduler(parent)
    start = conditioned_denoiser(parent.denoiser, 2).eval()
    width = parent.mel_config.x_res
    T = int(sched.config.num_train_timesteps)
    rows: dict[str, Any] = {"summary": result.summary(), "iteration_minutes": round(total / 60, 2),
                            "seconds_per_step": round(result.wall_seconds / max(result.steps, 1), 3),
                            "figures": _side_by_side(result.figures, "dpo")}
    for g, name in ((0, "group 0"), (1, "group 1"), (2, "null label")):
        fixed = fixed_pairs(tensors, up, width=width, n=cfg.eval_crops, T=T, timesteps=pref.timesteps(),
                            seed=cfg.seed + 21, groups=[g] * len(up))
        assert fixed is not None
        f = pair_figures(child.denoiser, start, fixed, sched, beta=pref.beta, use_bf16=False)
        rows[f"margin_{g}"] = f["margin"]
        print(f"  {name:<10} on higher-level-wins pairs: margin {f['margin']:+.6f}, accuracy {f['accuracy']:.0%}")
    x = torch.stack([clip_tensor(c, height)[..., :width] for c in eval_clips])
    levels = {}
    for name, model in (("parent", parent), ("null label", child), ("group 0", guided(child, 0)),
                        ("group 1", guided(child, 1))):
        res = vary(model, x, strength=settings.default_strength, seed=0, steps=12, sampler="dpmpp")
        images = unit_to_images(res.images[:, 0]).numpy()
        levels[name] = [band_level(im) for im in images]
    base = np.asarray(levels["parent"])
    for name, vals in levels.items():
        d = np.asarray(vals) - base
        print(f"  variations, {name:<10}: band level {np.mean(vals):6.2f} (− parent {d.mean():+.3f} ± "
              f"{d.std(ddof=1) / np.sqrt(len(d)):.3f} s.e., {n_eval} clips, strength {settings.default_strength})")
        rows[f"band_level_{name}"] = float(np.mean(vals))
    (out / "bench.json").write_text(json.dumps(rows, indent=2, default=float) + "\n")
    print(f"  figures: {out / 'bench.json'}")
    return rows
