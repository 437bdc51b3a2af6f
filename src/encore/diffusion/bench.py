"""``encore bench generate``: end-to-end clip times and our DDIM loop against diffusers'.

Prints, for a clip of ``Settings.clip_seconds`` (5.9 s) at the default settings:

1. our DDIM loop against :class:`diffusers.DDIMPipeline` on the same denoiser, seed and
   steps (fp32, batch 1, the canvas of a 5.9 s clip), interleaved, with the ratio and the
   largest difference of their images;
2. the loop in fp32 and under bf16 autocast (and channels-last), which decides
   ``precision="auto"``;
3. end to end (model + vocoder) for generation, variation (default strength) and a
   two-song merge, through :class:`encore.diffusion.Engine`.

Without a trained model (the shipped base model missing and no ``--model``) it benchmarks a
randomly initialised model of the default base config and says so: timing does not depend on
the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encore.diffusion.folder import LoadedModel

# ruff: noqa: T201  (a benchmark prints its figures)


@dataclass
class _Timing:
    """Wall and CPU seconds of repeated runs."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], Any]) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def __str__(self) -> str:
        return (
            f"wall {self.median:6.2f} s (min {min(self.wall):.2f}), "
            f"CPU {self.cpu_median:6.2f} s, n={len(self.wall)}"
        )


def _interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, _Timing]:
    """``reps`` rounds, each running every function once (so load drifts hit all alike)."""
    times = {k: _Timing() for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].add(fn)
    return times


def _load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def _songs(sr: int, seconds: float = 12.0) -> list[np.ndarray]:
    """Two synthetic songs: a chord progression and an arpeggio with percussion."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(0)
    a = np.zeros_like(t)
    for i, root in enumerate([220.0, 174.6, 261.6, 196.0] * 3):
        seg = (t >= i) & (t < i + 1)
        for ratio in (1.0, 1.26, 1.5):
            a[seg] += np.sin(2 * np.pi * root * ratio * t[seg]) * np.exp(-2 * (t[seg] - i))
    b = np.zeros_like(t)
    for k, start in enumerate(np.arange(0, seconds, 0.25)):
        seg = (t >= start) & (t < start + 0.25)
        f = 330.0 * 2 ** ([0, 4, 7, 12][k % 4] / 12)
        b[seg] += np.sin(2 * np.pi * f * t[seg]) * np.exp(-8 * (t[seg] - start))
        if k % 2 == 0:
            b[seg] += 0.3 * rng.standard_normal(seg.sum()) * np.exp(-40 * (t[seg] - start))
    return [
        (0.3 * a / np.abs(a).max()).astype(np.float32),
        (0.3 * b / np.abs(b).max()).astype(np.float32),
    ]


def _load(model_dir: Path | None) -> tuple[LoadedModel, str]:
    from encore.config import get_settings
    from encore.diffusion.folder import build_random_model, load_model_folder

    settings = get_settings()
    path = model_dir if model_dir is not None else settings.base_model_dir
    if path.is_dir():
        model = load_model_folder(path, device=settings.device)
        return model, f"model {model.name} from {path}"
    if model_dir is not None:
        from encore.errors import NotFound

        raise NotFound(f"--model {model_dir} does not exist")
    model = build_random_model(device=settings.device)
    return model, (
        f"NOTE: {path} does not exist yet; benchmarking a randomly initialised model of the "
        "default base config (timing does not depend on the weights)"
    )


def run_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion import sampling
    from encore.diffusion.device import (
        autocast_dtype,
        configure_threads,
        cpu_has_native_bf16,
        prepare_for_inference,
    )
    from encore.diffusion.engine import Engine
    from encore.diffusion.reference import diffusers_generate

    settings = get_settings()
    configure_threads(settings.torch_threads)
    quick = bool(getattr(args, "quick", False))
    reps = 1 if quick else 3
    steps = int(getattr(args, "steps", None) or settings.inference_steps)
    seconds = settings.clip_seconds
    model, what = _load(getattr(args, "model", None))
    random_model = model.path is None
    engine = Engine(model, precision="auto")
    frames, width = engine.canvas(seconds)
    dev = model.device
    print(f"encore bench generate: {what}")
    print(f"  load average at start: {_load_average()}")
    print(
        f"  device {dev}, torch threads {torch.get_num_threads()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_has_native_bf16()}, "
        f"auto precision {autocast_dtype(dev, 'auto')}"
    )
    print(
        f"  {model.denoiser.config.layout} layout, {model.denoiser.num_parameters() / 1e6:.2f} M "
        f"parameters; clip {seconds} s = {frames} frames on a {model.mel_config.y_res}x{width} "
        f"canvas; {steps} DDIM steps; median of {reps}"
    )

    # 1. our loop vs diffusers' loop (fp32, same model, seed, steps)
    ours = lambda: sampling.generate(model, width=width, seed=0, steps=steps, precision="fp32")  # noqa: E731
    ref = lambda: diffusers_generate(model, width=width, seed=0, steps=steps)  # noqa: E731
    diff = float((ours().images - ref()).abs().max())  # also the warm-up
    t = _interleaved({"encore": ours, "diffusers": ref}, reps)
    print("\n[1] DDIM loop, fp32, batch 1 (model only)")
    print(f"  encore sampling.generate   {t['encore']}")
    print(f"  diffusers DDIMPipeline     {t['diffusers']}")
    print(
        f"  ratio encore/diffusers     wall {t['encore'].median / t['diffusers'].median:.3f}, "
        f"CPU {t['encore'].cpu_median / t['diffusers'].cpu_median:.3f}; "
        f"max |difference| of the images {diff:.2e}"
    )

    # 2. precision and memory format of our loop
    print("\n[2] our loop by precision and memory format (model only)")
    denoiser = model.denoiser

    def run(precision: str, channels_last: bool) -> Callable[[], Any]:
        def fn() -> Any:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            denoiser.to(memory_format=fmt)
            try:
                return sampling.generate(
                    model, width=width, seed=0, steps=steps, precision=precision
                )
            finally:
                prepare_for_inference(denoiser, dev)  # the Engine's layout again

        return fn

    variants = {"fp32": run("fp32", False), "fp32 channels-last": run("fp32", True)}
    if dev.type == "cpu":
        variants["bf16 autocast"] = run("bf16", False)
        variants["bf16 channels-last"] = run("bf16", True)
    for fn in variants.values():
        fn()
    tp = _interleaved(variants, reps)
    for name, tm in tp.items():
        print(
            f"  {name:<20} {tm}  x{tp['fp32'].median / tm.median:.2f} wall, "
            f"x{tp['fp32'].cpu_median / tm.cpu_median:.2f} CPU vs fp32; "
            f"{1000 * tm.median / steps:.0f} ms per step"
        )
    default = (
        "bf16 channels-last" if autocast_dtype(dev, "auto") is not None else "fp32 channels-last"
    )
    if default in tp:
        print(
            f"  the engine's default ({default}) vs diffusers' fp32 DDIMPipeline [1]: wall "
            f"{tp[default].median / t['diffusers'].median:.3f}, "
            f"CPU {tp[default].cpu_median / t['diffusers'].cpu_median:.3f}"
        )
    if "bf16 autocast" in variants:
        a = variants["fp32"]().images
        b = variants["bf16 autocast"]().images
        print(
            f"  bf16 vs fp32 images: max |diff| {float((a - b).abs().max()):.3f}, "
            f"mean |diff| {float((a - b).abs().mean()):.4f} (images in [-1, 1]"
            + (
                "; a random model's trajectories diverge: judge on a trained model)"
                if random_model
                else ")"
            )
        )

    # 3. end to end through the Engine at the default settings
    songs = _songs(engine.sample_rate)
    strength = settings.default_strength
    imgs = engine.generate(seconds, 0, steps).image[None]
    tv = _Timing()
    for _ in range(reps):
        tv.add(lambda: engine.to_audio(imgs, seconds))
    ops = {
        "generate": lambda: engine.generate(seconds, 0, steps),
        "vary": lambda: engine.vary(songs[0], strength, 0, steps, seconds=seconds),
        "merge": lambda: engine.merge(songs, None, 0, steps, seconds=seconds),
    }
    engine.vary(songs[0], strength, 0, 1, seconds=seconds)  # warm-up: librosa's JIT, caches
    te = _interleaved(ops, reps)
    k = steps - sampling.start_step_for(strength, steps)
    print(f"\n[3] end to end, {seconds} s clip, precision {engine.precision} (model + vocoder)")
    print(f"  generate ({steps} steps)                  {te['generate']}")
    print(f"  vary (strength {strength}: {k} steps)        {te['vary']}")
    print(f"  merge (2 songs: {steps} inv. + {steps} steps) {te['merge']}")
    print(f"  vocoder alone (Griffin-Lim, {engine.vocoder().n_iter} it.) {tv}")
    print(f"  real-time factor of generate: {seconds / te['generate'].median:.2f}x")
    print(f"  load average at end: {_load_average()}")
    return 0
