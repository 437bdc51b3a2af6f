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


# --------------------------------------------------------------------------------------
# platform-like campaigns (issue 15): listeners with hidden tastes over clip features


#: Listened fraction at the rating unlock of a default clip: (min(5, 0.5·5.9) + 0.15) / 5.9,
#: what a listener who stops as soon as it may rate reaches (as in ``encore.sim.listeners``).
UNLOCK_FRACTION = (min(5.0, 0.5 * 5.9) + 0.15) / 5.9

ADVERSARY_KINDS = ("random", "max_min_listen", "min_listen")


@dataclass(frozen=True)
class Campaign:
    """A simulated platform campaign: who rated what, with the hidden truth kept apart.

    ``kind`` is ``"honest"``, ``"disliker"`` (an honest listener whose taste makes most clips
    unappealing) or an adversarial kind of ``encore.sim.listeners``; ``taste_group`` is the
    honest listeners' group (adversaries: -1); ``appeal`` is the hidden appeal behind each
    rating (NaN for adversaries); ``clip_groups`` maps a clip to its input song and
    ``clip_features`` to its perceived features (what an embedding would show).
    """

    data: RatingSet
    kind: dict
    taste_group: dict
    appeal: np.ndarray
    clip_groups: dict
    clip_features: dict
    scenario: str

    def raters_of(self, *kinds: str) -> list:
        return [r for r, k in self.kind.items() if k in kinds]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def simulate_campaign(
    seed: int,
    scenario: str = "opposed",
    *,
    n_honest: int = 45,
    n_dislikers: int = 3,
    adversaries: tuple[str, ...] | None = None,
    rounds: int = 3,
    requests: int = 10,
    new_clip_share: float = 0.5,
    max_raters: int = 3,
    baseline_share: float = 0.0,
    n_baseline_clips: int = 60,
    cold_start_rounds: int = 0,
) -> Campaign:
    """Simulate ``rounds`` rounds of a platform like encore's, ``requests`` per listener each.

    Each request either generates a new clip from one of the listener's two songs (rated by
    it first), or serves an existing clip that has fewer than ``max_raters`` raters and that
    the listener has not rated (the review branch): clips end with 1-3 raters, most with one
    or two, like the platform's ~500 ratings per round. With ``baseline_share`` > 0 that share
    of requests serves one of ``n_baseline_clips`` dataset clips instead (the baseline branch),
    which therefore collect many raters each. The first ``cold_start_rounds`` rounds serve
    only dataset clips, as the platform's first round does (no model has been tuned yet).

    Scenarios (clip features are 4 standardised descriptors; the third is "noisiness"):

    ``"pilot"``
        Three taste groups anchored on their own songs, as in the shipped default population:
        a peak around the listener's songs on two features (a personal offset, a personal
        width) and a dislike of noisiness above a personal threshold. Bias ~ N(0, 0.4²),
        noise U(0.2, 0.6).
    ``"opposed"``
        Two groups that want opposite things: group 0's appeal rises along a feature
        direction, group 1's falls along it (each with a personal threshold), plus a weak
        shared dislike of noise. Bias ~ N(0, 0.6²), noise U(0.3, 0.7).

    Honest listeners: ``stars = half_stars(1 + 4·appeal + bias + noise·N(0, 1))``; listening
    as in ``encore.sim.listeners``: below a personal ``skip_below`` appeal they stop at the
    unlock point, above it they listen the longer the more they like the clip. The first
    ``n_dislikers`` honest listeners have a harsh taste (appeal scaled by 0.3–0.5): they
    dislike most clips and skip them. Adversaries (default: 2 ``random``, 2 ``max_min_listen``,
    1 ``min_listen``) behave as in ``encore.sim.listeners``; ``random_skip`` (uniform half
    stars after minimal listens, not one of the platform's simulated kinds) hides from the
    listening witness.
    """
    if scenario not in ("pilot", "opposed"):
        raise ValueError(f"unknown scenario {scenario!r}")
    rng = np.random.default_rng(seed)
    if adversaries is None:
        adversaries = ("random", "random", "max_min_listen", "max_min_listen", "min_listen")
    n_groups = 3 if scenario == "pilot" else 2
    bias_sd, noise_range = (0.4, (0.2, 0.6)) if scenario == "pilot" else (0.6, (0.3, 0.7))
    kinds = ["disliker"] * n_dislikers + ["honest"] * (n_honest - n_dislikers) + list(adversaries)
    n_listeners = len(kinds)
    rid = [f"L{i:02d}" for i in range(n_listeners)]
    group = np.array([i % n_groups for i in range(n_listeners)])
    # taste-group centres in feature space (dims 0, 1); noisiness (dim 2) is shared
    if scenario == "pilot":
        angle = 2 * np.pi * np.arange(3) / 3
        centres = 1.3 * np.column_stack([np.cos(angle), np.sin(angle)])
    else:
        centres = np.array([[1.0, 0.6], [-1.0, -0.6]])
    direction = np.array([1.0, 0.6]) / np.hypot(1.0, 0.6)
    songs = np.zeros((n_listeners, 2, 4))
    for i in range(n_listeners):
        songs[i, :, :2] = centres[group[i]] + rng.normal(0, 0.5, (2, 2))
        songs[i, :, 2] = rng.normal(-0.5, 0.4, 2)
        songs[i, :, 3] = rng.normal(0, 1, 2)
    # personal tastes
    bias = rng.normal(0, bias_sd, n_listeners)
    noise = rng.uniform(*noise_range, n_listeners)
    skip = rng.uniform(0.25, 0.45, n_listeners)
    offset = rng.normal(0, 0.3, (n_listeners, 2))
    width = rng.uniform(1.6, 2.8, n_listeners)
    noise_threshold = songs[:, :, 2].mean(axis=1) + rng.uniform(0.2, 0.6, n_listeners)
    threshold = rng.normal(0, 0.3, n_listeners)
    harsh = np.where(np.array(kinds) == "disliker", rng.uniform(0.3, 0.5, n_listeners), 1.0)
    fixed_stars = rng.integers(2, 11, n_listeners) / 2

    def appeal_of(i: int, x: np.ndarray) -> float:
        quiet = float(_sigmoid(-(x[2] - noise_threshold[i]) / 0.6))
        if scenario == "pilot":
            target = songs[i, :, :2].mean(axis=0) + offset[i]
            near = float(np.exp(-0.5 * np.sum((x[:2] - target) ** 2) / width[i] ** 2))
            a = (1.5 * quiet + 1.0 * near) / 2.5
        else:
            sign = 1.0 if group[i] == 0 else -1.0
            along = float(_sigmoid(sign * (x[:2] @ direction - threshold[i]) / width[i]))
            a = (0.4 * quiet + 1.0 * along) / 1.4
        return a * harsh[i]

    clip_x: list[np.ndarray] = []
    clip_song: list[str] = []
    raters_of: list[set] = []
    for b in range(n_baseline_clips if baseline_share > 0 or cold_start_rounds else 0):
        owner = int(rng.integers(n_listeners))
        clip_x.append(songs[owner, b % 2] + rng.normal(0, 0.6, 4))
        clip_song.append(f"{rid[owner]}/{b % 2}")
        raters_of.append(set())
    n_base = len(clip_x)
    open_list: list[int] = []  # generated clips with fewer than max_raters raters
    rows_r, rows_c, rows_u, rows_l, rows_a = [], [], [], [], []
    for round_no in range(rounds):
        share = 1.0 if round_no < cold_start_rounds else baseline_share
        queue = [i for i in range(n_listeners) for _ in range(requests)]
        rng.shuffle(queue)
        for i in queue:
            open_clips = [c for c in open_list if i not in raters_of[c]]
            unseen_base = [c for c in range(n_base) if i not in raters_of[c]]
            if unseen_base and rng.random() < share:
                c = int(unseen_base[rng.integers(len(unseen_base))])
            elif open_clips and rng.random() > new_clip_share:
                c = int(open_clips[rng.integers(len(open_clips))])
            else:
                s = int(rng.integers(2))
                x = songs[i, s] + rng.normal(0, 0.6, 4)
                clip_x.append(x)
                clip_song.append(f"{rid[i]}/{s}")
                raters_of.append(set())
                c = len(clip_x) - 1
                open_list.append(c)
            raters_of[c].add(i)
            if c >= n_base and len(raters_of[c]) >= max_raters:
                open_list.remove(c)
            k = kinds[i]
            if k in ("honest", "disliker"):
                a = appeal_of(i, clip_x[c])
                u = float(_quantise(np.array(1 + 4 * a + bias[i] + noise[i] * rng.normal())))
                if a < skip[i]:
                    lis = UNLOCK_FRACTION
                else:
                    interest = (a - skip[i]) / (1 - skip[i])
                    lis = UNLOCK_FRACTION + (1 - UNLOCK_FRACTION) * min(
                        1.0, interest * rng.uniform(0.8, 1.4))
            elif k == "random":
                a, u, lis = np.nan, float(rng.integers(2, 11)) / 2, rng.uniform(UNLOCK_FRACTION, 1)
            elif k == "random_skip":  # not in encore.sim: random stars after minimal listens
                a, u, lis = np.nan, float(rng.integers(2, 11)) / 2, UNLOCK_FRACTION
            elif k == "max_min_listen":
                a, u, lis = np.nan, 5.0 if rng.random() < 0.9 else 4.5, UNLOCK_FRACTION
            elif k == "min_listen":
                a, u, lis = np.nan, float(fixed_stars[i]), UNLOCK_FRACTION
            else:
                raise ValueError(f"unknown kind {k!r}")
            rows_r.append(rid[i])
            rows_c.append(c)
            rows_u.append(u)
            rows_l.append(float(lis))
            rows_a.append(a)
    data = RatingSet(np.array(rows_r), np.array(rows_c), np.array(rows_u), np.array(rows_l))
    adversarial = {"random", "max_min_listen", "min_listen", "random_skip"}
    return Campaign(
        data=data,
        kind=dict(zip(rid, kinds, strict=True)),
        taste_group={r: (-1 if k in adversarial else int(g))
                     for r, k, g in zip(rid, kinds, group, strict=True)},
        appeal=np.array(rows_a),
        clip_groups=dict(enumerate(clip_song)),
        clip_features={c: x.copy() for c, x in enumerate(clip_x)},
        scenario=scenario,
    )
