"""``encore bench blend``: does a blend contain every input? Figures per merge method.

For ``n`` blends of two real songs (held-out pieces of a corpus folder, or any folder of audio
files), each input ``X`` of a blend is compared with the blend, and, as yardsticks, with

* **its own variation** at the same strength (the upper reference: what "this clip comes
  from X" looks like at that strength), and
* **an unrelated song's variation** at the same strength (the lower reference: a song that is
  in neither input, made by the same model the same way),

by three similarities, each computed on the audio (the inputs as the model sees them: their
window's spectrogram vocoded by the same Griffin-Lim as every clip):

``embedding``
    ``S(a, b)`` of the shipped similarity model (:mod:`encore.similarity`), in [0, 1].
``chroma``
    Pearson correlation of the two clips' mean 12-bin chroma vectors (harmony).
``envelope``
    Spectral envelope distance: RMS difference, in dB, of the two clips' time-averaged
    64-band mel spectra after removing each one's mean level (timbre, brightness). Lower is
    closer; the fraction below uses its negative.

The target (issue 19): each input's similarity to the blend at least halfway between the
unrelated song's and its own variation's, i.e. the *halfway fraction*
``f = (s_blend − s_unrelated) / (s_own − s_unrelated) ≥ 0.5``. The bench prints, per method and
metric, the mean of the three similarities, the share of inputs with ``f ≥ 0.5``, the share
of blends where both inputs make it, the mean ``f`` (each ``f`` clipped to [−1, 2] so one
input with a near-zero yardstick cannot dominate) and its median. Inputs whose own variation
is no closer than the unrelated song (no yardstick) are counted apart. It also prints the
share of energy above 4 kHz of the inputs and of the blends (the issue's symptom).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encore.errors import InvalidInput, NotFound

# ruff: noqa: T201  (a benchmark prints its figures)

METRICS = ("embedding", "chroma", "envelope")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_N_FFT, _HOP, _N_MELS = 2048, 512, 64


@dataclass
class Features:
    """What the metrics need of one clip."""

    representation: Any
    chroma: np.ndarray
    envelope_db: np.ndarray
    high_share: float


def features(y: np.ndarray, sr: int, sim_model: Any) -> Features:
    """Similarity representation, mean chroma, level-free mel envelope (dB), energy > 4 kHz."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    power = np.abs(librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP)) ** 2
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=_N_FFT, hop_length=_HOP,
                                         tuning=0.0).mean(axis=1)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=_N_FFT, n_mels=_N_MELS).mean(axis=1)
    env = 10.0 * np.log10(np.maximum(mel, 1e-10 * max(float(mel.max()), 1e-20)))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=_N_FFT)
    total = float(power.sum())
    high = float(power[freqs > 4000.0].sum()) / total if total > 0 else 0.0
    return Features(sim_model.represent_audio(y, sr), chroma, env - env.mean(), high)


def similarities(a: Features, b: Features, sim_model: Any) -> dict[str, float]:
    """The three similarities of two clips (``envelope``: the dB distance, lower = closer)."""
    ca, cb = a.chroma - a.chroma.mean(), b.chroma - b.chroma.mean()
    denom = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    return {
        "embedding": float(sim_model.similarity(a.representation, b.representation)),
        "chroma": float(ca @ cb / denom) if denom > 0 else 0.0,
        "envelope": float(np.sqrt(np.mean((a.envelope_db - b.envelope_db) ** 2))),
    }


def halfway_fraction(metric: str, blend: float, own: float, unrelated: float) -> float | None:
    """``(blend − unrelated) / (own − unrelated)`` (signs flipped for the distance); None when
    the own variation is no closer than the unrelated song."""
    if metric == "envelope":
        blend, own, unrelated = -blend, -own, -unrelated
    span = own - unrelated
    if span <= 1e-9:
        return None
    return (blend - unrelated) / span


@dataclass
class InputResult:
    """One input of one blend: its three similarities per metric."""

    song: str
    blend: dict[str, float]
    own: dict[str, float]
    unrelated: dict[str, float]

    def fraction(self, metric: str) -> float | None:
        return halfway_fraction(metric, self.blend[metric], self.own[metric],
                                self.unrelated[metric])


@dataclass
class MethodResult:
    method: str
    inputs: list[list[InputResult]] = field(default_factory=list)  # per blend
    seconds: list[float] = field(default_factory=list)
    high_share: list[float] = field(default_factory=list)  # per blend


def list_songs(corpus: Path | None, songs_dir: Path | None) -> list[Path]:
    """The held-out pieces' audio of a corpus folder, or the audio files of a folder, sorted."""
    if (corpus is None) == (songs_dir is None):
        raise InvalidInput("give one of --corpus (its held-out pieces) or --songs (a folder of audio files)")
    if corpus is not None:
        from encore.corpus.manifest import load_manifest

        if not corpus.is_dir():
            raise NotFound(f"corpus folder {corpus} does not exist")
        records = [r for r in load_manifest(corpus) if r.split == "heldout"]
        if not records:
            raise InvalidInput(f"corpus {corpus} has no held-out pieces")
        return sorted(corpus / r.audio for r in records)
    assert songs_dir is not None
    if not songs_dir.is_dir():
        raise NotFound(f"--songs {songs_dir}: no such folder")
    return sorted(p for p in songs_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def draw_blends(n_songs: int, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """``n`` blends ``(a, b, unrelated_a, unrelated_b)`` of song indices: pairs of distinct
    songs, each input with an unrelated song that is in neither (seeded)."""
    if n_songs < 3:
        raise InvalidInput(f"need at least 3 songs (two to blend, one unrelated), got {n_songs}")
    rng = random.Random(seed)
    order = list(range(n_songs))
    rng.shuffle(order)
    out: list[tuple[int, int]] = []
    for i in range(n):
        if 2 * n <= n_songs:  # disjoint pairs while there are songs enough
            a, b = order[2 * i], order[2 * i + 1]
        else:
            a, b = rng.sample(range(n_songs), 2)
        out.append((a, b))
    inputs = sorted({k for pair in out for k in pair})
    blends = []
    for a, b in out:
        # an unrelated song: preferably another blend's input, whose variation is made anyway
        others = [k for k in inputs if k not in (a, b)] or [
            k for k in range(n_songs) if k not in (a, b)]
        blends.append((a, b, rng.choice(others), rng.choice(others)))
    return blends


def measure(
    engine: Any,
    songs: Sequence[Path | np.ndarray],
    blends: Sequence[tuple[int, int, int, int]],
    *,
    methods: Sequence[str],
    strength: float,
    seconds: float,
    seed: int = 0,
    weights: Sequence[float] | None = None,
    sim_model: Any,
    merge_steps: int | None = None,
    log: Callable[[str], None] = lambda _s: None,
    on_method: Callable[[MethodResult, float], None] = lambda _r, _h: None,
) -> tuple[list[MethodResult], float, float]:
    """Run the blends of every method and the references; see the module docstring.

    Returns the per-method results, the inputs' mean energy share above 4 kHz, and the
    seconds spent on the references (variations and features). ``on_method`` is called with
    each method's result as soon as it is complete.
    """
    sr = engine.sample_rate
    t0 = time.perf_counter()
    used = sorted({k for blend in blends for k in blend})
    audio = {k: engine.load_song(songs[k]) for k in used}
    inputs: dict[int, Features] = {}
    own: dict[int, Features] = {}
    for start in range(0, len(used), 4):  # variations four to a UNet batch
        chunk = used[start:start + 4]
        clips = engine.vary_songs([audio[k] for k in chunk], strength, [seed] * len(chunk),
                                  seconds=seconds)
        for k, clip in zip(chunk, clips, strict=True):
            image, _ = engine.song_image(audio[k], seconds)
            frames, _ = engine.canvas(seconds)
            recon = engine.to_audio(image[None, :, :frames], seconds)[0]
            inputs[k] = features(recon, sr, sim_model)
            own[k] = features(clip.audio, sr, sim_model)
        log(f"references: {min(start + 4, len(used))}/{len(used)} songs")
    ref_seconds = time.perf_counter() - t0
    high = float(np.mean([inputs[k].high_share for k in used]))
    results = []
    for method in methods:
        res = MethodResult(method)
        for i, (a, b, ua, ub) in enumerate(blends):
            t = time.perf_counter()
            kwargs: dict[str, Any] = {"seconds": seconds, "seed": seed, "method": method}
            if method != "slerp":
                kwargs["strength"] = strength
            if method in ("slerp", "mix-inverted") and merge_steps is not None:
                kwargs["steps"] = merge_steps
            clip = engine.merge([audio[a], audio[b]], weights, **kwargs)
            blended = features(clip.audio, sr, sim_model)
            res.seconds.append(time.perf_counter() - t)
            res.high_share.append(blended.high_share)
            res.inputs.append([
                InputResult(
                    song=_name(songs[x]),
                    blend=similarities(inputs[x], blended, sim_model),
                    own=similarities(inputs[x], own[x], sim_model),
                    unrelated=similarities(inputs[x], own[u], sim_model),
                )
                for x, u in ((a, ua), (b, ub))
            ])
            log(f"{method}: blend {i + 1}/{len(blends)} in {res.seconds[-1]:.1f} s")
        results.append(res)
        on_method(res, high)
    return results, high, ref_seconds


def _name(song: Path | np.ndarray) -> str:
    return song.name if isinstance(song, Path) else "(array)"


def summary(res: MethodResult, metric: str) -> dict[str, float]:
    """Means, shares meeting the target and the halfway fraction of one method and metric."""
    flat = [r for blend in res.inputs for r in blend]
    fr = [r.fraction(metric) for r in flat]
    known = [f for f in fr if f is not None]
    both = [all((f := r.fraction(metric)) is not None and f >= 0.5 for r in blend)
            for blend in res.inputs]
    clipped = [min(max(f, -1.0), 2.0) for f in known]
    return {
        "blend": float(np.mean([r.blend[metric] for r in flat])),
        "own": float(np.mean([r.own[metric] for r in flat])),
        "unrelated": float(np.mean([r.unrelated[metric] for r in flat])),
        "meet": sum(f >= 0.5 for f in known) / len(flat),
        "both": float(np.mean(both)),
        "mean_f": float(np.mean(clipped)) if clipped else float("nan"),
        "median_f": float(np.median(known)) if known else float("nan"),
        "no_yardstick": float(len(flat) - len(known)),
    }


def all_metrics_share(res: MethodResult) -> float:
    """Share of inputs that meet the target on all three metrics."""
    flat = [r for blend in res.inputs for r in blend]
    ok = [all((f := r.fraction(m)) is not None and f >= 0.5 for m in METRICS) for r in flat]
    return float(np.mean(ok))


def format_report(results: Sequence[MethodResult], high_inputs: float) -> str:
    lines = [
        f"{'method':<13} {'metric':<10} {'blend':>7} {'own':>7} {'unrel.':>7} "
        f"{'inputs≥½':>9} {'blends≥½':>9} {'mean f':>7} {'median f':>9} {'no ref':>6}"
    ]
    for res in results:
        for metric in METRICS:
            s = summary(res, metric)
            lines.append(
                f"{res.method:<13} {metric:<10} {s['blend']:7.3f} {s['own']:7.3f} "
                f"{s['unrelated']:7.3f} {s['meet']:9.0%} {s['both']:9.0%} {s['mean_f']:7.2f} "
                f"{s['median_f']:9.2f} {int(s['no_yardstick']):6d}"
            )
        lines.append(
            f"{res.method:<13} all three: {all_metrics_share(res):.0%} of inputs; energy > 4 kHz "
            f"{np.mean(res.high_share):.2%} of the blends' (inputs {high_inputs:.2%}); "
            f"{np.median(res.seconds):.1f} s per blend (median)"
        )
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.diffusion.bench import load_average
    from encore.diffusion.blend import MERGE_METHODS, check_method
    from encore.diffusion.engine import Engine
    from encore.similarity.model import SimilarityModel

    settings = get_settings()
    n = args.n if args.n is not None else (8 if args.quick else 20)
    if n < 1:
        raise InvalidInput(f"--n {n} must be at least 1")
    strength = args.strength if args.strength is not None else settings.default_strength
    if not 0.0 < strength <= 1.0:
        raise InvalidInput(f"--strength {strength} must be in (0, 1]")
    methods = args.methods or ["slerp", "mix", "mix-inverted"]
    for m in methods:
        check_method(m)
    seconds = args.seconds if args.seconds is not None else settings.clip_seconds
    songs = list_songs(args.corpus, args.songs)
    blends = draw_blends(len(songs), n, args.seed)
    if args.weights is not None:
        from encore.diffusion.slerp import validate_weights

        validate_weights(args.weights, 2)
    engine = Engine(args.model, device=args.device)
    sim_model = SimilarityModel.default()
    print(f"encore bench blend: {n} blends of 2 songs from {len(songs)} "
          f"({args.corpus or args.songs}), model {engine.model.name}, strength {strength}, "
          f"{seconds} s clips, weights {args.weights or 'equal'}, seed {args.seed}; "
          f"methods {', '.join(methods)} (of {', '.join(MERGE_METHODS)}); variations "
          f"{settings.sampler}-{settings.inference_steps}, DDIM merges at "
          f"{args.merge_steps or settings.merge_steps} steps")
    print(f"before: load average {load_average()}", flush=True)
    def report(res: MethodResult, high: float) -> None:
        if len(methods) > 1:  # the figures of a finished method while the next one runs
            print(format_report([res], high) + f"\n  (load average {load_average()})", flush=True)

    results, high, ref_seconds = measure(
        engine, songs, blends, methods=methods, strength=strength, seconds=seconds,
        seed=args.seed, weights=args.weights, sim_model=sim_model,
        merge_steps=args.merge_steps,
        log=(lambda s: print("  " + s, flush=True)) if args.verbose else (lambda _s: None),
        on_method=report,
    )
    print(f"all methods; references (inputs, own and unrelated variations): {ref_seconds:.0f} s")
    print(format_report(results, high))
    print(f"after: load average {load_average()}")
    return 0
