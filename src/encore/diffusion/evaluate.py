"""Quality metrics for a spectrogram diffusion model, without downloaded weights.

Sets of clips are compared through per-clip audio features (:mod:`encore.diffusion.features`)
computed on *vocoded audio*: generated spectrograms and held-out corpus spectrograms alike go
through the model's mel codec and the same Griffin-Lim vocoder, so the comparison is fair
(the real clips carry the same vocoder artefacts as the generated ones).

Metrics (features standardised with the mean/std of the first real set):

- Fréchet distance (FD) between Gaussian fits of two sets;
- kernel distance (KD): unbiased MMD² with the polynomial kernel ``(x·y/d + 1)³``;
- the normalised score ``(FD_model − FD_real) / (FD_untrained − FD_real)``: 0 is as close as
  two disjoint real sets of the same size, 1 is as far as a randomly initialised model of the
  same config under the same sampler;
- diversity: mean pairwise Euclidean distance between the clips of a set;
- memorisation: each clip's nearest-neighbour RMS distance, in spectrogram pixels, to a sample of
  training crops (compared with the same figure for held-out real clips).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from encore.errors import InvalidInput

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# set statistics


def frechet_distance(a: np.ndarray, b: np.ndarray, *, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussian fits of two feature sets.

    ``|μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½)``.

    Parameters
    ----------
    a, b : np.ndarray
        ``(n_a, d)`` and ``(n_b, d)`` feature matrices, ``n ≥ 2``.
    eps : float
        Added to the covariance diagonals when the matrix square root is not finite
        (singular covariances, e.g. ``n < d``).

    Returns
    -------
    float
        ≥ 0 (up to rounding; clipped at 0).
    """
    from scipy import linalg

    a, b = _check_pair(a, b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "matrix is singular" for rank-deficient covariances
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            logger.debug("FD: singular product, adding %g to the diagonals", eps)
            offset = np.eye(cov_a.shape[0]) * eps
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(covmean.imag))
        if imag > 1e-3 * max(1.0, np.max(np.abs(covmean.real))):
            logger.warning("FD: sqrtm has a large imaginary part (%.3g)", imag)
        covmean = covmean.real
    fd = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def kernel_distance(a: np.ndarray, b: np.ndarray, *, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² with the polynomial kernel ``k(x, y) = (x·y / d + coef0) ** degree``.

    (The kernel inception distance's estimator, on our features.) Its expectation is 0 when
    both sets come from the same distribution, so it can be slightly negative.

    Parameters
    ----------
    a, b : np.ndarray
        ``(n_a, d)``, ``(n_b, d)``, ``n ≥ 2``.
    """
    a, b = _check_pair(a, b)
    d = a.shape[1]
    k_aa = (a @ a.T / d + coef0) ** degree
    k_bb = (b @ b.T / d + coef0) ** degree
    k_ab = (a @ b.T / d + coef0) ** degree
    m, n = a.shape[0], b.shape[0]
    term_aa = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    term_bb = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(term_aa + term_bb - 2.0 * k_ab.mean())


def normalised_score(fd_model: float, fd_real: float, fd_untrained: float) -> float:
    """``(FD_model − FD_real) / (FD_untrained − FD_real)``: 0 = real-vs-real, 1 = untrained.

    Raises
    ------
    InvalidInput
        If ``fd_untrained <= fd_real`` (the untrained model is no worse than real data: the
        score is undefined).
    """
    denom = fd_untrained - fd_real
    if denom <= 0:
        raise InvalidInput(
            f"normalised score undefined: FD_untrained={fd_untrained!r} <= FD_real={fd_real!r}"
        )
    return (fd_model - fd_real) / denom


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Diversity: mean Euclidean distance over all unordered pairs of rows of ``x`` ``(n, d)``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InvalidInput(f"need at least 2 rows, got shape {x.shape}")
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(x.shape[0], k=1)
    return float(np.sqrt(d2[iu]).mean())


def nearest_neighbour_distances(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each row of ``x`` ``(n, d)``, the RMS distance to its nearest row of ``reference``.

    RMS = Euclidean distance / sqrt(d) (for spectrogram pixels: in [-1, 1] units).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if x.shape[1] != ref.shape[1]:
        raise InvalidInput(f"dimension mismatch: {x.shape[1]} vs {ref.shape[1]}")
    best = np.full(x.shape[0], np.inf)
    ref_sq = np.sum(ref * ref, axis=1)
    for i in range(0, x.shape[0], 64):
        chunk = x[i : i + 64]
        d2 = np.sum(chunk * chunk, axis=1)[:, None] + ref_sq[None, :] - 2.0 * chunk @ ref.T
        best[i : i + 64] = np.maximum(d2, 0.0).min(axis=1)
    return np.sqrt(best / x.shape[1])


@dataclass(frozen=True)
class Standardiser:
    """Feature standardisation with a reference set's mean and std (std floored)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, reference: np.ndarray, floor: float = 1e-8) -> Standardiser:
        reference = np.asarray(reference, dtype=np.float64)
        return cls(reference.mean(axis=0), np.maximum(reference.std(axis=0), floor))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidInput(f"feature sets must be (n, d) with equal d, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise InvalidInput(f"each set needs at least 2 clips, got {a.shape[0]} and {b.shape[0]}")
    return a, b


# ----------------------------------------------------------------------------------------------
# evaluating a model folder against a corpus


@dataclass(frozen=True)
class SetMetrics:
    """Metrics of one set of clips against the reference real set.

    ``score`` is the normalised FD score (None for the real and untrained rows); ``nn_train``
    is the mean nearest-neighbour RMS pixel distance to the training sample.
    """

    name: str
    fd: float
    kd: float
    score: float | None
    diversity: float
    nn_train: float


@dataclass(frozen=True)
class EvalReport:
    """Everything ``encore eval`` prints (also stored in a model folder's ``encore.json``)."""

    rows: tuple[SetMetrics, ...]
    n: int
    steps: int
    width: int
    strength: float
    seed: int
    precision: str
    seconds: float
    scores: dict[str, float]  # task -> normalised score

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n, "steps": self.steps, "width": self.width, "strength": self.strength,
            "seed": self.seed, "precision": self.precision, "seconds": round(self.seconds, 1),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "rows": [
                {"name": r.name, "fd": round(r.fd, 4), "kd": round(r.kd, 5),
                 "score": None if r.score is None else round(r.score, 4),
                 "diversity": round(r.diversity, 4), "nn_train": round(r.nn_train, 4)}
                for r in self.rows
            ],
        }


def format_table(report: EvalReport) -> str:
    """A plain-text table of the report (one row per set)."""
    header = f"{'set':<22} {'FD':>9} {'KD':>9} {'score':>7} {'diversity':>10} {'NN-train':>9}"
    lines = [header, "-" * len(header)]
    for r in report.rows:
        score = "" if r.score is None else f"{r.score:7.3f}"
        lines.append(f"{r.name:<22} {r.fd:9.3f} {r.kd:9.4f} {score:>7} {r.diversity:10.3f} "
                     f"{r.nn_train:9.4f}")
    lines.append(
        f"n={report.n} clips per set, {report.width} frames, DDIM {report.steps} steps, "
        f"strength {report.strength}, precision {report.precision}, seed {report.seed}, "
        f"{report.seconds:.0f} s"
    )
    return "\n".join(lines)


def save_spectrogram_grid(
    images: torch.Tensor, path: str | Path, *, title: str = "", columns: int = 4
) -> Path:
    """Spectrogram images ``(B, 1, H, W)`` in [-1, 1] as a PNG grid (low frequencies at the bottom).

    Pixels are shown 1:1 scaled ×2 with nearest-neighbour interpolation, so fine artefacts such as
    a 2×2 checkerboard stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = images.detach().cpu().float().numpy()[:, 0]
    b, h, w = imgs.shape
    cols = min(columns, b)
    rows = (b + cols - 1) // cols
    scale = 2.0 / 100
    fig, axes = plt.subplots(rows, cols, figsize=(cols * w * scale + 0.2, rows * h * scale + 0.5),
                             dpi=100, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < b:
            ax.imshow(imgs[k], origin="lower", cmap="magma", vmin=-1, vmax=1,
                      interpolation="nearest", aspect="auto")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92 if title else 0.99,
                        wspace=0.03, hspace=0.03)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def sample_crops(dataset: object, n: int, *, seed: int) -> torch.Tensor:
    """``n`` crops ``(n, 1, H, W)`` from a dataset of ``(image, label)`` items, reproducibly."""
    import random

    import torch

    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InvalidInput("cannot sample crops from an empty dataset")
    with torch.random.fork_rng(devices=[]):
        state = (random.getstate(), np.random.get_state())
        try:
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            g = torch.Generator().manual_seed(seed)
            idx = torch.randint(0, len(dataset), (n,), generator=g).tolist()  # type: ignore[arg-type]
            items = [dataset[i] for i in idx]  # type: ignore[index]
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
    images = [torch.as_tensor(it[0] if isinstance(it, tuple | list) else it) for it in items]
    return torch.stack(images).float().reshape(n, 1, *images[0].shape[-2:])


def vocode(images: torch.Tensor, mel_config: object) -> np.ndarray:
    """Images ``(B, 1, H, W)`` in [-1, 1] → audio ``(B, samples)`` via the codec + Griffin-Lim."""
    from encore.audio.mel import image_to_audio, unit_to_images

    grey = unit_to_images(images[:, 0].detach().cpu().numpy())
    return np.asarray(image_to_audio(grey, mel_config))  # type: ignore[arg-type]


def clip_features(images: torch.Tensor, mel_config: object) -> np.ndarray:
    """The evaluation features of model images: vocoded, then
    :func:`encore.diffusion.features.features_for_clips`."""
    from encore.diffusion.features import features_for_clips

    audio = vocode(images.cpu().float(), mel_config)
    return features_for_clips(list(audio), mel_config.sample_rate)  # type: ignore[attr-defined]


def _untrained_like(model: object, seed: int) -> object:
    """The untrained model of the normalised score: ``model``'s architecture, random weights."""
    from encore.diffusion.folder import build_random_model

    return build_random_model(
        model.denoiser.config, model.mel_config, seed=seed + 1,  # type: ignore[attr-defined]
        scheduler=model.scheduler, device=model.device,  # type: ignore[attr-defined]
    )


def _real_halves(heldout: object, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sets of ``n`` held-out crops (real A, the reference, and real B)."""
    real = sample_crops(heldout, 2 * n, seed=seed + 101)
    return real[:n], real[n:]


def evaluate_model(
    model: object,
    *,
    heldout: object,
    train: object,
    n: int = 32,
    steps: int = 25,
    strength: float = 0.7,
    seed: int = 0,
    precision: str = "auto",
    n_train_reference: int = 256,
    untrained: object | None = None,
    pictures_dir: str | Path | None = None,
    sampler: str = "ddim",
    merge_steps: int | None = None,
) -> EvalReport:
    """Compare a model's generations, variations and merges with held-out real clips.

    Parameters
    ----------
    model : LoadedModel
        The model under test (its ``mel_config`` defines the codec).
    heldout, train : Dataset
        Held-out and training crops (items ``(image (1, H, W) in [-1, 1], label)``); the
        crop width is the dataset's.
    n : int
        Clips per set (≥ 4). Real sets A and B are disjoint draws of ``n`` held-out crops.
    steps : int
        DDIM steps (variations re-run ``round(strength·steps)`` of them; merges invert and
        denoise with ``steps`` each).
    strength : float
        Variation strength (the platform default).
    untrained : LoadedModel, optional
        The baseline; a randomly initialised model of the same config when None.
    pictures_dir : path, optional
        Write spectrogram grids (first 8 clips of every set) as PNGs here.
    sampler : {"ddim", "dpmpp", "unipc"}
        Solver of generation and variation (merges always use the DDIM pair).
    merge_steps : int, optional
        DDIM steps of the merges' inversion and decoding (default ``steps``).

    Returns
    -------
    EvalReport
        Rows: real B (vs real A), then for each task the model's and the untrained model's set.
        Generation is compared with real A; variations are of real B's clips and merges of
        pairs of real B's clips (B[i], B[i+1]); so a perfect copy of its inputs scores 0.
    """
    import time

    if n < 4:
        raise InvalidInput(f"n={n} must be at least 4")
    t0 = time.monotonic()
    mel = model.mel_config  # type: ignore[attr-defined]
    untrained = untrained if untrained is not None else _untrained_like(model, seed)
    real_a, real_b = _real_halves(heldout, n, seed)
    width = real_a.shape[-1]
    train_ref = sample_crops(train, n_train_reference, seed=seed + 202).reshape(n_train_reference, -1).numpy()

    sets: dict[str, torch.Tensor] = {"real A": real_a, "real B": real_b}
    for tag, m in (("model", model), ("untrained", untrained)):
        logger.info("eval: generating with the %s model", tag)
        sets.update(_task_sets(m, tag, real_b, n=n, width=width, steps=steps, strength=strength,
                               seed=seed, precision=precision, sampler=sampler,
                               merge_steps=merge_steps or steps))

    if pictures_dir is not None:
        for name, images in sets.items():
            slug = name.replace(" ", "_").replace("(", "").replace(")", "")
            save_spectrogram_grid(images[:8], Path(pictures_dir) / f"{slug}.png", title=name)
    logger.info("eval: vocoding and computing features of %d sets", len(sets))
    feats: dict[str, np.ndarray] = {}
    for name, images in sets.items():
        feats[name] = clip_features(images, mel)
    std = Standardiser.fit(feats["real A"])
    z = {name: std(f) for name, f in feats.items()}
    nn = {name: float(nearest_neighbour_distances(images.reshape(len(images), -1).numpy(), train_ref).mean())
          for name, images in sets.items()}

    ref = z["real A"]
    fd_real = frechet_distance(ref, z["real B"])
    rows = [SetMetrics("real A (reference)", 0.0, 0.0, None, mean_pairwise_distance(ref), nn["real A"]),
            SetMetrics("real B", fd_real, kernel_distance(ref, z["real B"]), 0.0,
                       mean_pairwise_distance(z["real B"]), nn["real B"])]
    scores: dict[str, float] = {}
    for task in ("generate", "vary", "merge"):
        fd_model = frechet_distance(ref, z[f"{task} (model)"])
        fd_untrained = frechet_distance(ref, z[f"{task} (untrained)"])
        try:
            score: float | None = normalised_score(fd_model, fd_real, fd_untrained)
        except InvalidInput:
            logger.warning("eval: %s: untrained FD %.3f <= real FD %.3f", task, fd_untrained, fd_real)
            score = None
        if score is not None:
            scores[task] = score
        for tag, fd, s in (("model", fd_model, score), ("untrained", fd_untrained, 1.0 if score is not None else None)):
            name = f"{task} ({tag})"
            rows.append(SetMetrics(name, fd, kernel_distance(ref, z[name]), s,
                                   mean_pairwise_distance(z[name]), nn[name]))
    return EvalReport(tuple(rows), n, steps, width, strength, seed, precision,
                      time.monotonic() - t0, scores)


def _task_sets(
    model: object, tag: str, real_b: torch.Tensor, *, n: int, width: int, steps: int,
    strength: float, seed: int, precision: str, sampler: str, merge_steps: int,
    tasks: tuple[str, ...] = ("generate", "vary", "merge"),
) -> dict[str, torch.Tensor]:
    """The generated sets of one model: generation, variations of real B, merges of B pairs."""
    import torch

    from encore.diffusion import sampling

    out: dict[str, torch.Tensor] = {}
    if "generate" in tasks:
        out[f"generate ({tag})"] = sampling.generate(
            model, batch=n, width=width, seed=seed + 1000, steps=steps, precision=precision,  # type: ignore[arg-type]
            sampler=sampler).images
    if "vary" in tasks:
        out[f"vary ({tag})"] = sampling.vary(
            model, real_b, strength=strength, seed=seed + 2000, steps=steps,  # type: ignore[arg-type]
            precision=precision, sampler=sampler).images
    if "merge" in tasks:
        out[f"merge ({tag})"] = sampling.merge(
            model, [real_b, torch.roll(real_b, -1, dims=0)], steps=merge_steps,  # type: ignore[arg-type]
            seed=seed + 3000, precision=precision).images
    return out


# ----------------------------------------------------------------------------------------------
# comparing samplers (the default sampler is chosen with this)


@dataclass(frozen=True)
class SamplerConfig:
    """A sampler setting: ``sampler`` at ``steps`` for generation and variation, merges by the
    DDIM pair at ``merge_steps``. Written ``"dpmpp:12"`` or ``"dpmpp:12:20"`` (merge steps
    default to ``steps``)."""

    sampler: str
    steps: int
    merge_steps: int

    @classmethod
    def parse(cls, text: str) -> SamplerConfig:
        from encore.diffusion.sampling import check_sampler

        parts = text.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            steps = int(parts[1])
            merge = int(parts[2]) if len(parts) == 3 else steps
        except ValueError:
            raise InvalidInput(
                f"sampler setting {text!r} must be SAMPLER:STEPS[:MERGE_STEPS], e.g. dpmpp:12:20"
            ) from None
        if steps < 1 or merge < 1:
            raise InvalidInput(f"sampler setting {text!r}: steps must be positive")
        return cls(check_sampler(parts[0]), steps, merge)

    @property
    def label(self) -> str:
        return f"{self.sampler}-{self.steps} / merge ddim-{self.merge_steps}"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:7.3f} [{self.low:6.3f}, {self.high:6.3f}]"


@dataclass(frozen=True)
class SamplerRow:
    """One setting's metrics on one task; ``d_*`` are paired differences to the first setting."""

    config: SamplerConfig
    task: str
    fd: Interval
    score: Interval
    diversity: Interval
    d_score: Interval
    d_diversity: Interval
    unet_calls: int


def _bootstrap_interval(values: np.ndarray, point: float, level: float) -> Interval:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(point), float(lo), float(hi))


def compare_samplers(
    model: object,
    *,
    heldout: object,
    train: object,
    configs: list[SamplerConfig],
    n: int = 64,
    strength: float = 0.7,
    seed: int = 0,
    precision: str = "auto",
    resamples: int = 100,
    level: float = 0.9,
    untrained: object | None = None,
    untrained_config: SamplerConfig | None = None,
    tasks: tuple[str, ...] = ("generate", "vary", "merge"),
) -> tuple[list[SamplerRow], float, float]:
    """Score and diversity of several sampler settings on the same clips, with intervals.

    Every setting works on the same real sets, seeds and starting noises as
    :func:`evaluate_model` (so the first setting ``ddim:50`` reproduces its numbers) and is
    normalised by the untrained model under that same setting, or, with ``untrained_config``,
    under that one setting for all (cheaper: then score differences are FD differences over
    one common scale). ``tasks`` limits the tasks. Intervals: a paired bootstrap
    over clips (the same resampled indices for every set: real A, real B and each setting's
    clips, made from the same noises), ``resamples`` draws, percentile interval at ``level``;
    ``d_score``/``d_diversity`` are the setting minus the first one, per draw.

    Returns
    -------
    (rows, seconds, fd_real)
    """
    import time

    if n < 4:
        raise InvalidInput(f"n={n} must be at least 4")
    if not configs:
        raise InvalidInput("give at least one sampler setting")
    t0 = time.monotonic()
    mel = model.mel_config  # type: ignore[attr-defined]
    untrained = untrained if untrained is not None else _untrained_like(model, seed)
    real_a, real_b = _real_halves(heldout, n, seed)
    width = real_a.shape[-1]
    del train  # nearest-neighbour distances are evaluate_model's business

    cache: dict[tuple[object, ...], np.ndarray] = {}

    def task_features(tag: str, m: object, task: str, cfg: SamplerConfig) -> np.ndarray:
        key = (tag, task, "ddim" if task == "merge" else cfg.sampler,
               cfg.merge_steps if task == "merge" else cfg.steps)
        if key not in cache:
            logger.info("compare: %s %s %s", tag, task, key[2:])
            sets = _task_sets(m, tag, real_b, n=n, width=width, steps=cfg.steps,
                              strength=strength, seed=seed, precision=precision,
                              sampler=cfg.sampler, merge_steps=cfg.merge_steps, tasks=(task,))
            cache[key] = clip_features(sets[f"{task} ({tag})"], mel)
        return cache[key]

    fa, fb = clip_features(real_a, mel), clip_features(real_b, mel)
    std = Standardiser.fit(fa)
    za, zb = std(fa), std(fb)
    bad = set(tasks) - {"generate", "vary", "merge"}
    if bad or not tasks:
        raise InvalidInput(f"tasks {list(tasks)} must be among generate, vary, merge")
    z: dict[tuple[int, str, str], np.ndarray] = {}
    for i, cfg in enumerate(configs):
        for task in tasks:
            z[(i, task, "model")] = std(task_features("model", model, task, cfg))
            z[(i, task, "untrained")] = std(
                task_features("untrained", untrained, task, untrained_config or cfg))

    rng = np.random.default_rng(seed + 404)
    draws = [(np.arange(n), np.arange(n))] + [
        (rng.integers(0, n, n), rng.integers(0, n, n)) for _ in range(resamples)
    ]
    # per draw: fd_real, then per (config, task): fd, score, diversity
    stats = np.zeros((len(draws), len(configs), len(tasks), 3))
    fd_reals = np.zeros(len(draws))
    for d, (ia, ib) in enumerate(draws):
        ref = za[ia]
        fd_real = frechet_distance(ref, zb[ib])
        fd_reals[d] = fd_real
        for i in range(len(configs)):
            for k, task in enumerate(tasks):
                fd_m = frechet_distance(ref, z[(i, task, "model")][ib])
                fd_u = frechet_distance(ref, z[(i, task, "untrained")][ib])
                score = (fd_m - fd_real) / (fd_u - fd_real) if fd_u > fd_real else np.nan
                stats[d, i, k] = (fd_m, score, mean_pairwise_distance(z[(i, task, "model")][ib]))
    rows: list[SamplerRow] = []
    for i, cfg in enumerate(configs):
        for k, task in enumerate(tasks):
            point, boot = stats[0, i, k], stats[1:, i, k]
            diff = stats[1:, i, k] - stats[1:, 0, k]
            calls = {"generate": cfg.steps, "vary": int(round(strength * cfg.steps)),
                     "merge": 2 * cfg.merge_steps}[task]
            rows.append(SamplerRow(
                cfg, task,
                fd=_bootstrap_interval(boot[:, 0], point[0], level),
                score=_bootstrap_interval(boot[:, 1], point[1], level),
                diversity=_bootstrap_interval(boot[:, 2], point[2], level),
                d_score=_bootstrap_interval(diff[:, 1], point[1] - stats[0, 0, k, 1], level),
                d_diversity=_bootstrap_interval(diff[:, 2], point[2] - stats[0, 0, k, 2], level),
                unet_calls=calls,
            ))
    return rows, time.monotonic() - t0, float(fd_reals[0])


def format_sampler_table(rows: list[SamplerRow], *, n: int, seed: int, level: float = 0.9) -> str:
    """A plain-text table of :func:`compare_samplers`'s rows."""
    header = (f"{'task':<9} {'setting':<28} {'UNet':>4} {'score [interval]':>24} "
              f"{'Δscore vs first':>24} {'diversity':>24} {'Δdiversity':>24}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.task:<9} {r.config.label:<28} {r.unet_calls:>4} {r.score!s:>24} "
                     f"{r.d_score!s:>24} {r.diversity!s:>24} {r.d_diversity!s:>24}")
    lines.append(f"n={n} clips per set, seed {seed}; intervals: {int(level * 100)} % paired bootstrap "
                 "over clips; Δ = setting − first setting (same noises)")
    return "\n".join(lines)
