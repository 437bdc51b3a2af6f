"""``encore bench generate``: clip times per task, solver against DDIM-50, batches, GFLOP/s.

Prints, side by side in one run, for a clip of ``Settings.clip_seconds`` (5.9 s):

1. the UNet: FLOPs of one forward (``torch.utils.flop_counter``), its time at batch 1 and 8 at
   the engine's precision, the achieved GFLOP/s against the measured matrix-multiply peak of
   this machine in fp32 and bf16;
2. per task, end to end through :class:`encore.diffusion.Engine` (UNet + vocoder), the
   baseline (DDIM-50, merges DDIM-50 + 50) against the chosen setting (``Settings.sampler`` at
   ``Settings.inference_steps``, merges DDIM at ``Settings.merge_steps``, or ``--sampler`` /
   ``--steps`` / ``--merge-steps``): generate, vary (default strength), best-of-4 vary (4
   candidates in one UNet batch, all 4 vocoded side by side on torch's threads, the taste
   model's inputs of all 4: similarity representation and audio descriptors, timed by name)
   and a two-song merge of songs never blended before; interleaved; then the merge again with both inversions cached, and the
   default blend (``mix-inverted`` at the default strength) cold and cached;
4. throughput of variations at batch 1, 2, 4, 8 (clips per second and per core);
5. with ``--workers``: one 2-thread process serving batches of 2 against two 1-thread
   processes serving one request at a time (throughput and p95 latency of a closed loop).

``--legacy`` adds the earlier sections: our DDIM loop against :class:`diffusers.DDIMPipeline`
and the loop by precision and memory format. Without a trained model (the shipped base model
missing and no ``--model``) it benchmarks a randomly initialised model of the default base
config and says so: timing does not depend on the weights.
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


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes and its cores, for a benchmark's
    report ("unknown" where the system does not say)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


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


def _load(model_dir: Path | None, device: str | None = None) -> tuple[LoadedModel, str]:
    from encore.config import get_settings
    from encore.diffusion.folder import build_random_model, load_model_folder

    settings = get_settings()
    device = device or settings.device
    path = model_dir if model_dir is not None else settings.base_model_dir
    if path.is_dir():
        model = load_model_folder(path, device=device)
        return model, f"model {model.name} from {path}"
    if model_dir is not None:
        from encore.errors import NotFound

        raise NotFound(f"--model {model_dir} does not exist")
    model = build_random_model(device=device)
    return model, (
        f"NOTE: {path} does not exist yet; benchmarking a randomly initialised model of the "
        "default base config (timing does not depend on the weights)"
    )


def _legacy_sections(model: LoadedModel, engine: Any, width: int, steps: int, reps: int) -> None:
    """The earlier sections: our DDIM loop against diffusers', and by precision/layout."""
    from encore.diffusion import sampling
    from encore.diffusion.device import autocast_dtype, prepare_for_inference
    from encore.diffusion.reference import diffusers_generate

    random_model = model.path is None
    dev = model.device
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



# -- the UNet against the machine's matrix peak ----------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unet_flops(model: LoadedModel, width: int, batch: int = 1) -> float:
    """Floating-point operations of one denoiser forward (convolutions and matrix products,
    counted by :class:`torch.utils.flop_counter.FlopCounterMode`: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(batch, 1, model.mel_config.y_res, width, device=model.device)
    t = torch.full((batch,), 500, device=model.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.denoiser(x, t)
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best GFLOP/s of an ``n × n`` matrix product in ``dtype`` on ``device`` (this process's threads)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    with torch.inference_mode():
        a @ b  # warm-up
        _sync(device)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def _unet_seconds(model: LoadedModel, width: int, batch: int, amp: torch.dtype | None, reps: int) -> float:
    from encore.diffusion.device import maybe_autocast

    dev = model.device
    x = torch.zeros(batch, 1, model.mel_config.y_res, width, device=dev).uniform_(-1, 1)
    t = torch.full((batch,), 500, device=dev)
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):
            t0 = time.perf_counter()
            with maybe_autocast(dev, amp):
                model.denoiser(x, t)
            _sync(dev)
            if i:  # the first is a warm-up
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- the work of one best-of-n request -------------------------------------------------------


def _scoring_inputs(clips: list[Any], similarity: Any) -> None:
    """What the taste model needs of each candidate: its similarity representation and its
    audio descriptors (the taste model's own prediction, a few dot products, is not timed)."""
    from encore.audio.descriptors import audio_descriptors

    for clip in clips:
        if similarity is not None:
            similarity.represent_audio(clip.audio, clip.sample_rate)
        audio_descriptors(clip.audio, clip.sample_rate)


def _load_similarity() -> tuple[Any, str]:
    try:
        from encore.config import get_settings
        from encore.similarity.model import SimilarityModel

        return SimilarityModel.load(get_settings().similarity_model_dir), "similarity model"
    except Exception as exc:
        return None, f"no similarity model ({exc}); descriptors only"


# -- threads against processes -----------------------------------------------------------------


def _worker(model_dir: str, device: str, threads: int, requests: int, batch: int,
            solver: dict[str, Any], song: np.ndarray, ready: Any, start: Any, results: Any) -> None:
    """One generation worker process: ``requests`` variations in batches of ``batch``; puts
    the service time of each request (its batch's time) on ``results``."""
    torch.set_num_threads(threads)
    from encore.diffusion.engine import Engine

    engine = Engine(model_dir, device=device)
    torch.set_num_threads(threads)
    engine.vary_batch(song, solver["strength"], list(range(batch)), 2, seconds=solver["seconds"],
                      sampler=solver["sampler"])  # warm-up
    ready.put(1)
    start.wait()
    out = []
    for i in range(0, requests, batch):
        t0 = time.perf_counter()
        engine.vary_batch(song, solver["strength"], list(range(i, i + batch)), solver["steps"],
                          seconds=solver["seconds"], sampler=solver["sampler"])
        out += [time.perf_counter() - t0] * batch
    results.put(out)


def _workers_section(model: LoadedModel, song: np.ndarray, solver: dict[str, Any], requests: int) -> None:
    import multiprocessing as mp

    if model.path is None:
        print("\n[5] threads vs processes: skipped (needs a model folder)")
        return
    ctx = mp.get_context("spawn")
    print(f"\n[5] threads vs processes: {requests} variations ({solver['sampler']}-"
          f"{solver['steps']}), closed loop, all queued at once; latency = the request's "
          "batch service time (this process idles meanwhile)")
    for name, procs, threads, batch in (("1 process x 2 threads, batches of 2", 1, 2, 2),
                                        ("2 processes x 1 thread, batch 1", 2, 1, 1)):
        ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        workers = [ctx.Process(target=_worker, args=(
            str(model.path), str(model.device), threads, requests // procs, batch, solver, song,
            ready, start, results)) for _ in range(procs)]
        for w in workers:
            w.start()
        for _ in workers:
            ready.get()
        t0 = time.perf_counter()
        start.set()
        lat = [x for _ in workers for x in results.get()]
        wall = time.perf_counter() - t0
        for w in workers:
            w.join()
        p95 = float(np.quantile(lat, 0.95))
        print(f"  {name:<38} {len(lat) / wall:5.2f} clips/s, wall {wall:6.2f} s, "
              f"service p50 {statistics.median(lat):5.2f} s, p95 {p95:5.2f} s")


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What ``encore bench generate`` compares: the baseline (DDIM 50 steps, merges 50 + 50)
    against the chosen solver and steps, at the serving clip length and strength."""

    seconds: float
    strength: float
    sampler: str
    steps: int
    merge_steps: int
    reps: int

    base = "ddim-50"

    @property
    def chosen(self) -> str:
        return f"{self.sampler}-{self.steps}"


def _print_header(model: LoadedModel, engine: Any, what: str, plan: _Plan, amp: torch.dtype | None) -> None:
    from encore.diffusion.device import cpu_has_native_bf16

    frames, width = engine.canvas(plan.seconds)
    dev = model.device
    print(f"encore bench generate: {what}")
    print(f"  load average at start: {load_average()}")
    print(
        f"  device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f", torch threads {torch.get_num_threads()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_has_native_bf16()}, "
        f"engine precision {amp or 'fp32'}"
    )
    print(
        f"  {model.denoiser.config.layout} layout, {model.denoiser.num_parameters() / 1e6:.2f} M "
        f"parameters; clip {plan.seconds} s = {frames} frames on a {model.mel_config.y_res}x{width} "
        f"canvas; median of {plan.reps}"
    )
    print(f"  baseline {plan.base} (merges ddim-50 + 50); chosen {plan.chosen} "
          f"(merges ddim-{plan.merge_steps} + {plan.merge_steps}); strength {plan.strength}")


def _unet_section(model: LoadedModel, width: int, amp: torch.dtype | None, quick: bool) -> None:
    """[1] The UNet against the matrix peak."""
    dev = model.device
    flops = unet_flops(model, width)
    t1 = _unet_seconds(model, width, 1, amp, 3 if quick else 7)
    t8 = _unet_seconds(model, width, 8, amp, 1 if quick else 3)
    peak32 = matmul_peak(dev, torch.float32)
    peak16 = matmul_peak(dev, torch.bfloat16)
    peak = peak16 if amp is not None else peak32
    print(f"\n[1] UNet forward on the {model.mel_config.y_res}x{width} canvas: "
          f"{flops / 1e9:.2f} GFLOP per image")
    print(f"  matmul peak of this machine ({torch.get_num_threads()} threads): fp32 {peak32:6.1f} GFLOP/s, "
          f"bf16 {peak16:6.1f} GFLOP/s")
    for b, secs in ((1, t1), (8, t8)):
        rate = flops * b / secs / 1e9
        print(f"  batch {b}: {1000 * secs:7.1f} ms per call, {1000 * secs / b:6.1f} ms per image, "
              f"{rate:6.1f} GFLOP/s = {rate / peak:4.0%} of the {amp or 'fp32'} matmul peak")


def _end_to_end_section(engine: Any, songs: list[np.ndarray], plan: _Plan) -> dict[str, _Timing]:
    """[2] Per task, the baseline against the chosen setting, end to end; the timings."""
    seconds, strength, base, chosen = plan.seconds, plan.strength, plan.base, plan.chosen
    similarity, sim_what = _load_similarity()
    engine.vary(songs[0], strength, 0, 1, seconds=seconds, sampler="ddim")  # warm-up: librosa
    parts: dict[str, _Timing] = {}

    def best_of_4(smp: str, n_steps: int, tag: str) -> Any:
        t_gen, t_score = parts.setdefault(f"{tag} unet+vocoder", _Timing()), parts.setdefault(
            f"{tag} scoring inputs", _Timing())
        clips = t_gen.add(lambda: engine.vary_batch(
            songs[0], strength, [0, 1, 2, 3], n_steps, seconds=seconds, sampler=smp))
        t_score.add(lambda: _scoring_inputs(clips, similarity))
        return clips

    ops: dict[str, Callable[[], Any]] = {}
    for tag, smp, n_steps, m_steps in ((base, "ddim", 50, 50),
                                       (chosen, plan.sampler, plan.steps, plan.merge_steps)):
        ops[f"generate {tag}"] = lambda s=smp, n=n_steps: engine.generate(seconds, 0, n, sampler=s)
        ops[f"vary {tag}"] = lambda s=smp, n=n_steps: engine.vary(
            songs[0], strength, 0, n, seconds=seconds, sampler=s)
        ops[f"best-of-4 {tag}"] = lambda s=smp, n=n_steps, g=tag: best_of_4(s, n, g)
        ops[f"merge {tag}"] = lambda m=m_steps: _cold(engine, lambda: engine.merge(
            songs, None, 0, m, seconds=seconds))
    ops["merge warm"] = lambda: engine.merge(songs, None, 0, plan.merge_steps, seconds=seconds)
    ops["blend cold"] = lambda: _cold(engine, lambda: engine.merge(
        songs, None, 0, plan.merge_steps, seconds=seconds, strength=strength))
    ops["blend warm"] = lambda: engine.merge(songs, None, 0, plan.merge_steps, seconds=seconds,
                                             strength=strength)
    te = _interleaved(ops, plan.reps)
    imgs = engine.generate(seconds, 0, 1).image[None]
    tv1, tv4 = _Timing(), _Timing()
    for _ in range(plan.reps):
        tv1.add(lambda: engine.to_audio(imgs, seconds))
        tv4.add(lambda: engine.to_audio(np.repeat(imgs, 4, axis=0), seconds))
    targets = {"generate": 0.8, "vary": 0.5, "best-of-4": 1.5, "merge": 2.0}
    calls = {
        "generate": {base: 50, chosen: plan.steps},
        "vary": {base: round(strength * 50), chosen: round(strength * plan.steps)},
        "best-of-4": {base: round(strength * 50), chosen: round(strength * plan.steps)},
        "merge": {base: 100, chosen: 2 * plan.merge_steps},
    }
    print(f"\n[2] end to end, {seconds} s clip (UNet + vocoder {engine.vocoder().n_iter} it.); "
          f"wall median (min), CPU median; target on 2 cores")
    for task in ("generate", "vary", "best-of-4", "merge"):
        a, b = te[f"{task} {base}"], te[f"{task} {chosen}"]
        label_b = chosen if task != "merge" else f"ddim-{plan.merge_steps}"
        print(f"  {task:<10} {base:>9} [{calls[task][base]:3d} UNet calls] {a}")
        print(f"  {'':<10} {label_b:>9} [{calls[task][chosen]:3d} UNet calls] {b}   "
              f"x{a.median / b.median:.2f} faster; target <= {targets[task]} s: "
              f"{'met' if b.median <= targets[task] else 'NOT met'}")
        if task == "best-of-4":
            for tag in (base, chosen):
                print(f"  {'':<10}   {tag}: UNet batch of 4 + vocoder x4 "
                      f"{parts[f'{tag} unet+vocoder'].median:.2f} s, scoring inputs x4 "
                      f"({sim_what} + audio descriptors) {parts[f'{tag} scoring inputs'].median:.2f} s")
    print(f"  merge again, both songs' inversions cached: {te['merge warm']} "
          f"[{plan.merge_steps} UNet calls]")
    k = round(strength * plan.merge_steps)
    print(f"  mix-inverted blend (the default blend) at strength {strength}, ddim-{plan.merge_steps}: "
          f"cold {te['blend cold']} [{2 * k} UNet calls]; inversions cached "
          f"{te['blend warm']} [{k}]")
    print(f"  vocoder alone: 1 clip {tv1.median:.3f} s, 4 clips {tv4.median:.3f} s")
    return te


def _cold(engine: Any, fn: Callable[[], Any]) -> Any:
    """``fn()`` with the engine's inversion cache emptied first (a song never blended)."""
    from encore.diffusion.sampling import InversionCache

    engine.inversions = InversionCache(engine.inversions.max_items)
    return fn()


def _batch_section(engine: Any, song: np.ndarray, plan: _Plan, today: float) -> None:
    """[4] Variations of one song at batch 1, 2, 4, 8 against the baseline at batch 1
    (``today``: its seconds per clip)."""
    print(f"\n[4] variations of one song at batch 1, 2, 4, 8 ({plan.chosen}, end to end incl. vocoder)")
    batch_times: dict[int, _Timing] = {}
    for b in (1, 2, 4, 8):
        fn = lambda b=b: engine.vary_batch(  # noqa: E731
            song, plan.strength, list(range(b)), plan.steps, seconds=plan.seconds, sampler=plan.sampler)
        fn()
        batch_times[b] = _Timing()
        for _ in range(max(1, plan.reps - 1)):
            batch_times[b].add(fn)
    threads = torch.get_num_threads()
    for b, tm in batch_times.items():
        rate = b / tm.median
        print(f"  batch {b}: {tm.median:6.2f} s per batch, {rate:5.2f} clips/s, "
              f"{rate / threads:5.2f} clips/s per core, CPU {tm.cpu_median / b:5.2f} s per clip; "
              f"x{rate * today:.2f} the clips/s of {plan.base} batch 1 ({1 / today:.2f} clips/s)")


def run_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion.device import autocast_dtype, configure_threads
    from encore.diffusion.engine import Engine
    from encore.diffusion.sampling import check_sampler

    settings = get_settings()
    configure_threads(settings.torch_threads)
    quick = bool(getattr(args, "quick", False))
    plan = _Plan(
        seconds=settings.clip_seconds, strength=settings.default_strength,
        sampler=check_sampler(getattr(args, "sampler", None) or settings.sampler),
        steps=int(getattr(args, "steps", None) or settings.inference_steps),
        merge_steps=int(getattr(args, "merge_steps", None) or settings.merge_steps),
        reps=1 if quick else 3,
    )
    model, what = _load(getattr(args, "model", None), getattr(args, "device", None))
    engine = Engine(model, precision="auto")
    width = engine.canvas(plan.seconds)[1]
    amp = autocast_dtype(model.device, "auto")
    _print_header(model, engine, what, plan, amp)
    _unet_section(model, width, amp, quick)
    songs = _songs(engine.sample_rate)
    te = _end_to_end_section(engine, songs, plan)
    _batch_section(engine, songs[0], plan, today=te[f"vary {plan.base}"].median)
    if getattr(args, "workers", False):
        _workers_section(model, songs[0], {"sampler": plan.sampler, "steps": plan.steps,
                                           "strength": plan.strength, "seconds": plan.seconds},
                         requests=8 if quick else 16)
    if getattr(args, "legacy", False):
        print("\n[legacy]")
        _legacy_sections(model, engine, width, 50, plan.reps)
    print(f"\n  load average at end: {load_average()}")
    return 0
