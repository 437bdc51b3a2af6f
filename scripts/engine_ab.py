"""Old against new engine code, task by task, side by side in one run.

Two persistent worker processes, one importing each source tree (``--old`` and ``--new``,
folders holding an ``encore`` package, e.g. ``git archive main src | tar -x -C /tmp/old``),
load the shipped base model and run the same request in turn — generate, vary, best-of-4
(4 candidates + vocoder + the taste model's inputs of each), a 2-song merge of songs never
blended and again with their inversions cached, the default blend the same two ways — the
order alternating per round so that load drifts hit both alike. Prints the medians of wall
and CPU time, their ratios, whether the two trees made the same audio, and ``uptime`` before
and after.

    ENCORE_TORCH_THREADS=1 .venv/bin/python scripts/engine_ab.py --old /tmp/old/src \\
        --new src --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

# ruff: noqa: T201  (a benchmark prints its figures)

TASKS = ("generate", "vary", "best-of-4", "merge cold", "merge warm", "blend cold", "blend warm")


def worker() -> None:
    """One side: reads task names on stdin, prints one JSON line per task."""
    import numpy as np

    from encore.audio.descriptors import audio_descriptors
    from encore.config import get_settings
    from encore.diffusion import bench
    from encore.diffusion.engine import Engine
    from encore.similarity.model import SimilarityModel

    engine = Engine(precision="auto")
    sim = SimilarityModel.load(get_settings().similarity_model_dir)
    songs = bench._songs(engine.sample_rate)
    seconds, strength = 5.9, 0.7
    engine.vary(songs[0], strength, 0, 2)  # warm-up

    def cold() -> None:  # a tree without the cache has nothing to empty
        if hasattr(engine, "inversions"):
            from encore.diffusion.sampling import InversionCache

            engine.inversions = InversionCache(engine.inversions.max_items)

    def timed(fn: Any) -> tuple[Any, tuple[float, float]]:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - t0, time.process_time() - c0)

    def best_of_4() -> tuple[list[Any], dict[str, Any]]:
        clips, gen = timed(lambda: engine.vary_batch(songs[0], strength, [0, 1, 2, 3],
                                                     seconds=seconds))
        _, score = timed(lambda: [(sim.represent_audio(c.audio, c.sample_rate),
                                   audio_descriptors(c.audio, c.sample_rate)) for c in clips])
        return clips, {"candidates+vocoder": gen, "taste inputs": score}

    def merge(strength_: float | None, empty: bool) -> tuple[list[Any], dict[str, Any]]:
        if empty:
            cold()
        return [engine.merge(songs, None, 0, seconds=seconds, strength=strength_)], {}

    tasks = {
        "generate": lambda: ([engine.generate(seconds, 0)], {}),
        "vary": lambda: ([engine.vary(songs[0], strength, 0, seconds=seconds)], {}),
        "best-of-4": best_of_4,
        "merge cold": lambda: merge(None, True),
        "merge warm": lambda: merge(None, False),
        "blend cold": lambda: merge(strength, True),
        "blend warm": lambda: merge(strength, False),
    }
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name == "fill":  # untimed: what a warm cache holds
            merge(None, False)
            merge(strength, False)
            print(json.dumps({}), flush=True)
            continue
        (clips, parts), (wall, cpu) = timed(tasks[name])
        audio = np.stack([c.audio for c in clips])
        print(json.dumps({"wall": wall, "cpu": cpu, "parts": parts,
                          "audio": hashlib.sha1(audio.tobytes()).hexdigest()}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="source folder of the old tree")
    ap.add_argument("--new", required=True, help="source folder of the new tree")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    procs = {
        side: subprocess.Popen([sys.executable, __file__, "--worker"],
                               env={**os.environ, "PYTHONPATH": os.path.abspath(path)},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for side, path in (("old", args.old), ("new", args.new))
    }
    for p in procs.values():
        json.loads(p.stdout.readline())  # type: ignore[union-attr]

    def ask(side: str, name: str) -> dict[str, Any]:
        p = procs[side]
        p.stdin.write(name + "\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        return json.loads(p.stdout.readline())  # type: ignore[union-attr]

    def uptime() -> str:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    print("uptime before:", uptime(), flush=True)
    res: dict[tuple[str, str], list[dict[str, Any]]] = {(t, s): [] for t in TASKS for s in procs}
    for r in range(args.rounds):
        for task in TASKS:
            if task.endswith("warm") and r == 0:
                for side in procs:
                    ask(side, "fill")
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                res[(task, side)].append(ask(side, task))
    print("uptime after: ", uptime())
    for p in procs.values():
        p.stdin.close()  # type: ignore[union-attr]
        p.wait()

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(x[key] for x in rows)

    print(f"{args.rounds} rounds, medians; torch threads per worker: "
          f"{os.environ.get('ENCORE_TORCH_THREADS', 'default')}")
    print(f"{'task':<12} {'old wall':>9} {'new wall':>9} {'ratio':>6} | {'old CPU':>8} "
          f"{'new CPU':>8} {'ratio':>6} | output")
    for task in TASKS:
        old, new = res[(task, "old")], res[(task, "new")]
        ow, nw, oc, nc = med(old, "wall"), med(new, "wall"), med(old, "cpu"), med(new, "cpu")
        same = "bit-identical audio" if old[0]["audio"] == new[0]["audio"] else "audio differs"
        print(f"{task:<12} {ow:8.2f}s {nw:8.2f}s {ow / nw:5.2f}x | {oc:7.2f}s {nc:7.2f}s "
              f"{oc / nc:5.2f}x | {same}")
        for part in old[0]["parts"]:
            o = [statistics.median(x["parts"][part][i] for x in old) for i in (0, 1)]
            n = [statistics.median(x["parts"][part][i] for x in new) for i in (0, 1)]
            print(f"   {part:<20} old wall {o[0]:.2f} s CPU {o[1]:.2f} s, "
                  f"new wall {n[0]:.2f} s CPU {n[1]:.2f} s")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        sys.exit(main())
