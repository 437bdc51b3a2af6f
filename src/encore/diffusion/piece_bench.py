"""``encore bench piece``: a long piece from one song, end to end, and its seams.

Prints, with the machine's load (a shared machine's figures mean little without it):

1. (``--repeats`` runs, 0 skips it) the time of one piece of ``--seconds`` (24) from one song (the song's file bytes in,
   piece audio out: decoding, the windows' sampling, the vocoder, the crossfades) with the
   old sampler (DDIM, 50 steps) and the chosen one (``Settings.sampler`` at
   ``Settings.inference_steps`` or ``--sampler`` / ``--steps``), wall and CPU seconds, and
   the service's best-of-n recipe (``Settings.best_of_n`` first windows in one batch, then
   the chosen one continued);
2. (``--n 0`` skips it) the seams of ``--n`` (20) pieces of the chosen sampler, each from another song and seed:
   the spectral flux around every window boundary — the crossfade's middle, and the first
   frame a window made itself (where the fixed overlap ends) — against the 95th percentile
   of the same measure inside that piece's windows
   (:func:`encore.diffusion.continuation.seam_flux`); the target is every boundary within it.

``--threads`` (default 1; 0 = all cores) sets torch's threads: on a loaded machine two
OpenMP threads spin-wait on each other, so one thread's CPU time is the honest figure there.
Songs: the audio files of ``--songs DIR`` (or of ``--corpus DIR``'s ``audio/``), else two
synthetic songs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encore.audio.encode import encode_audio
from encore.diffusion.bench import _load, _songs, load_average

# ruff: noqa: T201  (a benchmark prints its figures)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def _song_files(args: argparse.Namespace) -> list[Path]:
    folder = getattr(args, "songs", None)
    corpus = getattr(args, "corpus", None)
    if folder is None and corpus is not None:
        folder = Path(corpus) / "audio"
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        from encore.errors import NotFound

        raise NotFound(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    return files


def _timed(fn: Any) -> tuple[Any, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion.engine import Engine

    settings = get_settings()
    # --threads (default 1; 0 = all the machine's cores): on a loaded machine two OpenMP
    # threads spin-wait on each other and burn CPU for nothing, so one is the honest measure
    threads = int(getattr(args, "threads", 1))
    threads = threads if threads > 0 else (os.cpu_count() or 2)
    torch.set_num_threads(threads)
    seconds = float(args.seconds) if getattr(args, "seconds", None) else 24.0
    quick = bool(getattr(args, "quick", False))
    n_pieces = int(args.n) if getattr(args, "n", None) is not None else (6 if quick else 20)
    repeats = int(args.repeats) if getattr(args, "repeats", None) is not None else (1 if quick else 3)
    sampler = args.sampler or settings.sampler
    steps = int(args.steps) if args.steps else settings.inference_steps
    strength = settings.default_strength
    model, note = _load(getattr(args, "model", None), getattr(args, "device", None))
    engine = Engine(model)
    sr = engine.sample_rate
    files = _song_files(args)
    print(f"encore bench piece: {note}; device {model.device}, {threads} torch threads")
    print(f"load average at start: {load_average()}")
    lay = engine.piece_layout(seconds)
    if lay is None:
        print(f"a {seconds:g} s piece fits one canvas; nothing to continue")
        return 0
    hop = engine.mel.hop_length
    print(f"a {seconds:g} s piece: {lay.windows} windows of {lay.window} frames "
          f"({engine.window_seconds:g} s), overlap >= {lay.overlap} frames "
          f"({lay.overlap * hop / sr:.2f} s), crossfade {engine.crossfade_seconds:g} s; "
          f"variation strength {strength:g}")
    if files:
        count = max(n_pieces, 1)
        songs = [files[(i * len(files)) // count % len(files)].read_bytes() for i in range(count)]
        print(f"songs: {len(files)} files of {files[0].parent}")
    else:
        synth = _songs(sr, seconds=40.0)
        songs = [encode_audio(synth[i % 2], sr=sr, format="wav", normalize=False)
                 for i in range(max(n_pieces, 1))]
        print("songs: two synthetic songs (pass --songs DIR for real ones)")

    # warm-up: librosa, the vocoder's buffers, the UNet's first call
    engine.piece_batch(songs[0], seconds, [0], 2, strength=strength, sampler="ddim")

    if repeats > 0:
        _timing_section(engine, songs, seconds, lay, strength, sampler, steps, repeats,
                        settings.best_of_n)
    if n_pieces > 0:
        _seams_section(engine, songs, seconds, strength, sampler, steps, n_pieces,
                       bool(getattr(args, "verbose", False)))
    print(f"load average at the end: {load_average()}")
    return 0


def _timing_section(engine: Any, songs: list[bytes], seconds: float, lay: Any, strength: float,
                    sampler: str, steps: int, repeats: int, n_best: int) -> None:
    from encore.diffusion.sampling import start_step_for

    print(f"\n[1] one {seconds:g} s piece from one song, end to end (song file bytes in, audio out)")
    print(f"{'setting':34s} {'UNet calls':>10s} {'wall s (median)':>16s} {'CPU s':>8s}  runs")
    rows = [("old: ddim, 50 steps", "ddim", 50), (f"chosen: {sampler}, {steps} steps", sampler, steps)]
    for name, smp, n in rows:
        calls = lay.windows * (n - start_step_for(strength, n))
        walls, cpus = [], []
        for r in range(repeats):
            _, wall, cpu = _timed(lambda smp=smp, n=n, r=r: engine.piece_batch(
                songs[r % len(songs)], seconds, [100 + r], n, strength=strength, sampler=smp))
            walls.append(wall)
            cpus.append(cpu)
        print(f"{name:34s} {calls:10d} {statistics.median(walls):16.2f} "
              f"{statistics.median(cpus):8.2f}  " + ", ".join(f"{w:.2f}" for w in walls))
    walls, cpus = [], []
    for r in range(repeats):
        def best_of_n(r: int = r) -> Any:
            firsts = engine.piece_batch(songs[r % len(songs)], seconds, list(range(n_best)),
                                        steps, strength=strength, sampler=sampler, max_windows=1)
            offset = firsts[0].params["offsets"][0]
            return engine.piece_batch(songs[r % len(songs)], seconds, [1], steps,
                                      strength=strength, sampler=sampler, offset=offset,
                                      first_windows=firsts[1].image[None])
        _, wall, cpu = _timed(best_of_n)
        walls.append(wall)
        cpus.append(cpu)
    print(f"{'chosen, best-of-' + str(n_best) + ' (first windows)':34s} {'':10s} "
          f"{statistics.median(walls):16.2f} {statistics.median(cpus):8.2f}  "
          + ", ".join(f"{w:.2f}" for w in walls))
    print(f"load average after [1]: {load_average()}")


def _seams_section(engine: Any, songs: list[bytes], seconds: float, strength: float,
                   sampler: str, steps: int, n_pieces: int, verbose: bool) -> None:
    from encore.diffusion import continuation

    sr, hop = engine.sample_rate, engine.mel.hop_length

    print(f"\n[2] seams of {n_pieces} pieces of {seconds:g} s ({sampler}, {steps} steps): "
          "spectral flux around each boundary vs the 95th percentile inside the windows")
    span = int(round(engine.crossfade_seconds * sr))
    within = {"crossfade": 0, "new frames": 0}
    total = 0
    ratios: dict[str, list[float]] = {"crossfade": [], "new frames": []}
    t0 = time.perf_counter()
    for i in range(n_pieces):
        clip = engine.piece_batch(songs[i], seconds, [1000 + i], steps, strength=strength,
                                  sampler=sampler)[0]
        boundaries = {
            "crossfade": [int(s) for s in clip.params["seams"]],
            "new frames": [int(c) * hop for c in clip.params["cuts"]],
        }
        all_seams = boundaries["crossfade"] + boundaries["new frames"]
        _, inside = continuation.seam_flux(clip.audio, all_seams, span=span)
        p95 = float(np.percentile(inside, 95))
        for kind, seams in boundaries.items():
            at, _ = continuation.seam_flux(clip.audio, seams, span=span)
            within[kind] += int((at <= p95).sum())
            ratios[kind] += [float(a / p95) for a in at]
        total += len(boundaries["crossfade"])
        if verbose:
            print(f"  piece {i}: p95 inside {p95:.1f}; crossfades "
                  + ", ".join(f"{a:.1f}" for a in continuation.seam_flux(
                      clip.audio, boundaries["crossfade"], span=span)[0]))
    for kind in ("crossfade", "new frames"):
        r = np.asarray(ratios[kind])
        print(f"  at the {kind:10s}: {within[kind]} of {total} boundaries within the p95 "
              f"({100 * within[kind] / max(total, 1):.0f} %); flux / p95 median {np.median(r):.2f}, "
              f"max {r.max():.2f}")
    print(f"  ({n_pieces} pieces in {time.perf_counter() - t0:.0f} s)")
