"""A planted rater population for the quality-control tests (known truth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encore.feedback import RatingSet

GRID = np.arange(1.0, 5.01, 0.5)


@dataclass(frozen=True)
class Population:
    """A simulated rating campaign with known truth."""

    data: RatingSet
    quality: dict  # clip_id -> planted ψ
    bias: dict  # rater_id -> planted Δ (honest and constant-bias minority raters)
    kind: dict  # rater_id -> "honest" | "minority_bias" | "minority_group" | "max_low_listen" | "random"
    clip_groups: dict  # clip_id -> group


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 2) / 2, 1.0, 5.0)


def _listen(opinion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Honest listening: longer for clips the rater likes, never below the unlock point."""
    return np.clip(0.68 + 0.12 * (opinion - 3.0) + rng.normal(0, 0.12, opinion.shape), 0.5, 1.0)


def simulate_population(
    seed: int,
    *,
    n_clips: int = 60,
    n_groups: int = 4,
    n_honest: int = 26,
    n_minority_bias: int = 2,
    n_minority_group: int = 2,
    n_max_low_listen: int = 5,
    n_random: int = 5,
    density: float = 1.0,
) -> Population:
    """Every rater rates a random ``density`` share of the clips (all of them by default)."""
    rng = np.random.default_rng(seed)
    clips = np.arange(n_clips)
    psi = rng.uniform(1.9, 4.1, n_clips)
    group = clips % n_groups
    kinds = (["honest"] * n_honest + ["minority_bias"] * n_minority_bias
             + ["minority_group"] * n_minority_group + ["max_low_listen"] * n_max_low_listen
             + ["random"] * n_random)
    raters, clip_col, ratings, listened = [], [], [], []
    bias, kind = {}, {}
    for r, k in enumerate(kinds):
        rid = f"r{r:02d}"
        kind[rid] = k
        seen = clips[rng.random(n_clips) < density] if density < 1 else clips
        m = seen.shape[0]
        if k in ("honest", "minority_group"):
            delta = rng.uniform(-0.5, 0.5)
            sd = rng.uniform(0.2, 0.5)
            opinion = psi[seen] + delta + rng.normal(0, sd, m)
            if k == "minority_group":  # loves one group, dislikes another
                opinion = opinion + 1.5 * (group[seen] == r % n_groups) \
                    - 1.5 * (group[seen] == (r + 1) % n_groups)
            else:
                bias[rid] = delta
            u = _quantise(opinion)
            lis = _listen(opinion, rng)
        elif k == "minority_bias":  # consistently harsher or kinder than everyone
            delta = 0.9 if r % 2 else -0.9
            bias[rid] = delta
            opinion = psi[seen] + delta + rng.normal(0, rng.uniform(0.2, 0.5), m)
            u = _quantise(opinion)
            lis = _listen(opinion, rng)
        elif k == "max_low_listen":  # top marks, skips to the rating button
            u = np.where(rng.random(m) < 0.9, 5.0, 4.5)
            lis = rng.uniform(0.5, 0.56, m)
        else:  # random ratings, unrelated listening
            u = rng.choice(GRID, m)
            lis = rng.uniform(0.5, 1.0, m)
        raters += [rid] * m
        clip_col += seen.tolist()
        ratings += u.tolist()
        listened += lis.tolist()
    data = RatingSet(np.array(raters), np.array(clip_col), np.array(ratings), np.array(listened))
    return Population(data, dict(zip(clips.tolist(), psi.tolist(), strict=True)), bias, kind,
                      dict(zip(clips.tolist(), group.tolist(), strict=True)))
