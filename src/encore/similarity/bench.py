"""``encore bench similarity``: nearest-neighbour latency (and embedding speed) figures."""
# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import argparse
import time

import numpy as np

from encore.similarity.index import SimilarityIndex
from encore.similarity.representation import Representation


def random_representations(n: int, codebook_size: int = 512, embedding_dim: int = 64,
                           feature_dim: int = 128, alpha: float = 0.8,
                           seed: int = 0) -> list[Representation]:
    """``n`` random but valid representations (sparse Dirichlet histograms, unit embeddings)."""
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n):
        hist = rng.dirichlet(np.full(codebook_size, 0.05)).astype(np.float32)
        hist /= hist.sum()
        reps.append(Representation(hist, rng.standard_normal(feature_dim),
                                   rng.standard_normal(embedding_dim), 256.0, alpha))
    return reps


def bench_index(n_items: int = 10_000, n_queries: int = 300, k: int = 10,
                n_excluded: int = 100, seed: int = 0, **dims: float) -> dict[str, float]:
    """Median and 95th-percentile latency (ms) of exact top-``k`` queries over ``n_items``
    (``dims``: sizes and ``alpha`` for :func:`random_representations`)."""
    reps = random_representations(n_items + n_queries, seed=seed, **dims)  # type: ignore[arg-type]
    index = SimilarityIndex.from_representations(list(range(n_items)), reps[:n_items])
    queries = reps[n_items:]
    rng = np.random.default_rng(seed + 1)
    figures: dict[str, float] = {}
    for label, n_ex in (("plain", 0), ("excluding", n_excluded)):
        times = []
        for q in queries:
            exclude = rng.choice(n_items, size=n_ex, replace=False).tolist() if n_ex else ()
            t0 = time.perf_counter()
            index.search(q, k, exclude=exclude)
            times.append(time.perf_counter() - t0)
        figures[f"{label}_median_ms"] = 1e3 * float(np.median(times))
        figures[f"{label}_p95_ms"] = 1e3 * float(np.percentile(times, 95))
    return figures


def _load_default_model():
    try:
        from encore.similarity.model import SimilarityModel

        return SimilarityModel.default(), None
    except Exception as exc:
        return None, exc


def run_bench(args: argparse.Namespace) -> int:
    """Print the nearest-neighbour figures, then the shipped model's embedding speed."""
    import torch

    threads = getattr(args, "threads", 1) or 0
    if threads > 0:
        torch.set_num_threads(threads)
    quick = getattr(args, "quick", False)
    model, error = _load_default_model()
    dims = {}
    if model is not None:
        c = model.config
        dims = {"codebook_size": c.codebook_size, "embedding_dim": c.embedding_dim,
                "feature_dim": c.feature_dim, "alpha": c.alpha}
    n_queries = 100 if quick else 500
    figures = bench_index(n_queries=n_queries, **dims)
    dim = dims.get("codebook_size", 512) + dims.get("embedding_dim", 64)
    print(f"similarity index: exact top-10 over 10000 items (search vectors of {dim} floats), "
          f"{n_queries} queries")
    print(f"  median {figures['plain_median_ms']:.2f} ms  p95 {figures['plain_p95_ms']:.2f} ms")
    print(f"  with 100 excluded ids: median {figures['excluding_median_ms']:.2f} ms  "
          f"p95 {figures['excluding_p95_ms']:.2f} ms  (target ≤ 10 ms)")
    if model is None:
        print(f"similarity model not loaded ({error}); skipping embedding speed")
        return 0
    rng = np.random.default_rng(0)
    h, w = model.config.image_height, model.config.image_width
    song = rng.integers(0, 256, size=(10, h, w), dtype=np.uint8)
    seconds = 10 * w / model.mel_config.frames_per_second
    sr = model.mel_config.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    for label, call in (("represent (10 slices)", lambda: model.represent(song)),
                        (f"represent_audio ({seconds:.0f} s, mel included)",
                         lambda: model.represent_audio(audio, sr))):
        call()  # warm-up
        times = []
        for _ in range(3 if quick else 10):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        print(f"{label}: {1e3 * float(np.median(times)):.0f} ms (median, {torch.get_num_threads()} thread(s))")
    return 0
