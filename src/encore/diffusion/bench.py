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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encore.diffusion.folder import LoadedModel

# ruff: noqa: T201  (a benchmark prints its figures)


def _time(fn: Callable[[], Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _interleaved(
    fns: dict[str, Callable[[], Any]], reps: int, cpu: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """Wall times of ``reps`` interleaved runs of each function (and CPU times into ``cpu``)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0 = time.process_time()
            times[name] += _time(fn, 1)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - c0)
    return times


def _fmt(ts: list[float]) -> str:
    med = statistics.median(ts)
    return f"{med:6.2f} s (min {min(ts):.2f}, n={len(ts)})"


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
    from encore.diffusion.device import autocast_dtype, configure_threads, cpu_has_native_bf16
    from encore.diffusion.engine import Engine
    from encore.diffusion.reference import diffusers_generate

    settings = get_settings()
    configure_threads(settings.torch_threads)
    quick = bool(getattr(args, "quick", False))
    reps = 1 if quick else 3
    steps = int(getattr(args, "steps", None) or settings.inference_steps)
    seconds = settings.clip_seconds
    model, what = _load(getattr(args, "model", None))
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
    ours(), ref()  # warm-up (oneDNN primitive caches)
    diff = float((ours().images - ref()).abs().max())
    cpu_t: dict[str, list[float]] = {}
    t = _interleaved({"encore": ours, "diffusers": ref}, reps, cpu_t)
    ratio = statistics.median(t["encore"]) / statistics.median(t["diffusers"])
    ratio_min = min(t["encore"]) / min(t["diffusers"])
    print("\n[1] DDIM loop, fp32, batch 1 (model only)")
    print(f"  encore sampling.generate   {_fmt(t['encore'])}")
    print(f"  diffusers DDIMPipeline     {_fmt(t['diffusers'])}")
    cpu_ratio = statistics.median(cpu_t["encore"]) / statistics.median(cpu_t["diffusers"])
    print(
        f"  ratio encore/diffusers     wall {ratio:.3f} (medians), {ratio_min:.3f} (minima); "
        f"CPU time {cpu_ratio:.3f} ({statistics.median(cpu_t['encore']):.2f} s vs "
        f"{statistics.median(cpu_t['diffusers']):.2f} s)"
    )
    print(f"  max |difference| of the images {diff:.2e}")

    # 2. precision / memory format of our loop
    print("\n[2] our loop by precision (model only)")
    variants: dict[str, Callable[[], Any]] = {"fp32": ours}
    if dev.type == "cpu":
        variants["bf16 autocast"] = lambda: sampling.generate(
            model, width=width, seed=0, steps=steps, precision="bf16"
        )
    for fn in variants.values():
        fn()
    tp = _interleaved(variants, reps)
    base = statistics.median(tp["fp32"])
    for name, ts in tp.items():
        print(f"  {name:<22} {_fmt(ts)}  x{base / statistics.median(ts):.2f} vs fp32")
    if "bf16 autocast" in variants:
        a = sampling.generate(model, width=width, seed=0, steps=steps, precision="fp32").images
        b = sampling.generate(model, width=width, seed=0, steps=steps, precision="bf16").images
        print(
            f"  bf16 vs fp32 images: max |diff| {float((a - b).abs().max()):.3f}, "
            f"mean |diff| {float((a - b).abs().mean()):.4f} (images in [-1, 1])"
        )
    cl = model.denoiser.to(memory_format=torch.channels_last)
    tcl = _time(lambda: sampling.generate(model, width=width, seed=0, steps=steps), reps)
    cl.to(memory_format=torch.contiguous_format)
    print(f"  fp32 channels-last     {_fmt(tcl)}  x{base / statistics.median(tcl):.2f} vs fp32")

    # 3. end to end through the Engine at the default settings
    songs = _songs(engine.sample_rate)
    strength = settings.default_strength
    gen = lambda: engine.generate(seconds, 0, steps)  # noqa: E731
    var = lambda: engine.vary(songs[0], strength, 0, steps, seconds=seconds)  # noqa: E731
    mer = lambda: engine.merge(songs, None, 0, steps, seconds=seconds)  # noqa: E731
    imgs = engine.generate(seconds, 0, steps).image[None]
    tv = _time(lambda: engine.to_audio(imgs, seconds), reps)
    te = _interleaved({"generate": gen, "vary": var, "merge": mer}, reps)
    k = steps - sampling.start_step_for(strength, steps)
    print(f"\n[3] end to end, {seconds} s clip, precision {engine.precision} (model + vocoder)")
    print(f"  generate ({steps} steps)              {_fmt(te['generate'])}")
    print(f"  vary (strength {strength}: {k} steps)   {_fmt(te['vary'])}")
    print(f"  merge (2 songs: {steps} inversion + {steps} steps) {_fmt(te['merge'])}")
    print(f"  of which vocoder (Griffin-Lim {engine.vocoder().n_iter} it.) {_fmt(tv)}")
    print(f"  real-time factor of generate: {seconds / statistics.median(te['generate']):.2f}x")
    print(f"  load average at end: {_load_average()}")
    return 0
