"""``encore bench vocoder``: the torch vocoder against librosa, side by side in one run.

Both invert the same spectrogram image of a synthetic musical clip
(:func:`encore.audio.synth.demo_music`): librosa exactly as ``diffusers.Mel.image_to_audio``
does (``mel_to_audio`` with 32 iterations on the float64 power spectrogram), and
:class:`encore.audio.vocoder.GriffinLim`. Runs alternate (librosa, fast, librosa, …) so
that both see the same machine load; times are medians, spectral convergence (mel
magnitude, see :func:`encore.audio.vocoder.spectral_convergence`) is the mean over runs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from encore.audio.mel import MelConfig, audio_slice_to_image, image_to_mel_power
from encore.audio.synth import demo_music

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocoderTiming:
    """One vocoder's figures: median seconds per clip and mean spectral convergence."""

    name: str
    seconds: float
    convergence: float
    runs: int


@dataclass(frozen=True)
class VocoderBench:
    """The benchmark's result."""

    clip_seconds: float
    frames: int
    y_res: int
    device: str
    threads: int
    librosa: VocoderTiming
    fast: VocoderTiming
    fast_same_iter: VocoderTiming
    fast_cold_seconds: float

    @property
    def speedup(self) -> float:
        return self.librosa.seconds / self.fast.seconds


def bench_vocoder(
    seconds: float = 5.9,
    *,
    repeats: int = 5,
    device: str = "cpu",
    n_iter: int | None = None,
    seed: int = 0,
    config: MelConfig | None = None,
    threads: int | None = 1,
) -> VocoderBench:
    """Time and score librosa's ``mel_to_audio`` (32 iterations) and :class:`GriffinLim`.

    Parameters
    ----------
    seconds : float
        Length of the reconstructed clip (the image has ``ceil(seconds·sr/hop)`` frames).
    repeats : int
        Timed runs of each vocoder (after one warm-up run each).
    device : str
        Torch device of the fast vocoder.
    n_iter : int or None
        Iterations of the fast vocoder (``None``: its default).
    seed : int
        Seed of the synthetic music.
    config : MelConfig or None
        Mel settings (default: the 256 format); ``x_res`` is replaced to fit ``seconds``.
    threads : int or None
        CPU threads for *both* vocoders during the run (torch intra-op threads and the
        BLAS under numpy/scipy, via threadpoolctl). ``None``: each with its own default
        (librosa: numpy's BLAS threads; GriffinLim: its ``threads`` default, 1).

    Returns
    -------
    VocoderBench
    """
    import torch

    previous_threads = torch.get_num_threads()
    limiter = None
    if threads is not None:
        torch.set_num_threads(threads)
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=threads)
        except ImportError:  # pragma: no cover - a scikit-learn dependency, normally present
            logger.warning("threadpoolctl missing: numpy/BLAS threads are not limited")
    try:
        return _bench(seconds, repeats, device, n_iter, seed, config, threads)
    finally:
        if threads is not None:
            torch.set_num_threads(previous_threads)
        if limiter is not None:
            limiter.restore_original_limits()


def _bench(
    seconds: float,
    repeats: int,
    device: str,
    n_iter: int | None,
    seed: int,
    config: MelConfig | None,
    threads: int | None,
) -> VocoderBench:
    import librosa
    import torch

    from encore.audio.vocoder import DEFAULT_N_ITER, GriffinLim, spectral_convergence

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    base = config or MelConfig()
    frames = max(2, base.frames_for_seconds(seconds))
    cfg = base.replace(x_res=frames)
    audio = demo_music(cfg.slice_seconds, cfg.sample_rate, seed=seed)[: cfg.slice_samples]
    image = audio_slice_to_image(audio, cfg)
    power64 = image_to_mel_power(image, cfg)  # what diffusers.Mel hands to librosa
    power32 = power64.astype(np.float32)

    def run_librosa() -> np.ndarray:
        return librosa.feature.inverse.mel_to_audio(
            power64, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_iter=32
        )

    iters = DEFAULT_N_ITER if n_iter is None else n_iter
    # With a thread count set for both, the vocoder must not apply its own.
    own: dict[str, Any] = {} if threads is None else {"threads": None}
    fast = GriffinLim(cfg, n_iter=iters, device=device, **own)
    same = GriffinLim(cfg, n_iter=32, device=device, **own)

    def run_torch(vocoder: GriffinLim) -> np.ndarray:
        out = vocoder(power32)
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        return out.cpu().numpy()

    start = time.perf_counter()
    run_torch(fast)  # first call: builds the cached window, mel basis, pseudo-inverse
    cold = time.perf_counter() - start
    run_librosa()
    run_torch(same)

    times: dict[str, list[float]] = {"librosa": [], "fast": [], "same": []}
    scores: dict[str, list[float]] = {"librosa": [], "fast": [], "same": []}
    runners = {
        "librosa": run_librosa,
        "fast": lambda: run_torch(fast),
        "same": lambda: run_torch(same),
    }
    for _ in range(repeats):
        for key, runner in runners.items():
            start = time.perf_counter()
            out = runner()
            times[key].append(time.perf_counter() - start)
            scores[key].append(float(spectral_convergence(out, power64, cfg)[0]))

    def timing(key: str, name: str) -> VocoderTiming:
        return VocoderTiming(
            name=name,
            seconds=statistics.median(times[key]),
            convergence=float(np.mean(scores[key])),
            runs=repeats,
        )

    return VocoderBench(
        clip_seconds=(frames - 1) * cfg.hop_length / cfg.sample_rate,
        frames=frames,
        y_res=cfg.y_res,
        device=str(fast.device),
        threads=torch.get_num_threads() if threads is not None else 0,
        librosa=timing("librosa", "librosa mel_to_audio, 32 it (as diffusers.Mel)"),
        fast=timing("fast", f"encore GriffinLim, {iters} it"),
        fast_same_iter=timing("same", "encore GriffinLim, 32 it"),
        fast_cold_seconds=cold,
    )


def format_report(result: VocoderBench) -> str:
    """The benchmark as printed by ``encore bench vocoder``."""
    threads = (
        f"CPU threads {result.threads} (both)"
        if result.threads
        else "default CPU threads (librosa: BLAS default; encore: GriffinLim default)"
    )
    lines = [
        f"vocoder: {result.clip_seconds:.2f} s clip ({result.y_res} mels x {result.frames} "
        f"frames), device {result.device}, {threads}, "
        f"median of {result.librosa.runs} alternating runs",
    ]
    for t in (result.librosa, result.fast, result.fast_same_iter):
        lines.append(f"  {t.name:<48} {t.seconds * 1000:8.1f} ms   SC {t.convergence:.4f}")
    lines.append(
        f"  speed-up {result.speedup:.1f}x  (librosa {result.librosa.seconds * 1000:.1f} ms / "
        f"encore {result.fast.seconds * 1000:.1f} ms); encore at 32 it: "
        f"{result.librosa.seconds / result.fast_same_iter.seconds:.1f}x"
    )
    lines.append(
        f"  SC = mel-magnitude spectral convergence ||sqrt(B|STFT(y)|^2) - sqrt(M)||_F / "
        f"||sqrt(M)||_F, lower is better; first encore call (cold caches) "
        f"{result.fast_cold_seconds * 1000:.1f} ms"
    )
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    """Entry point of ``encore bench vocoder`` (see :mod:`encore.commands.bench`)."""
    repeats = getattr(args, "repeats", None) or (2 if getattr(args, "quick", False) else 5)
    result = bench_vocoder(
        seconds=getattr(args, "seconds", None) or 5.9,
        repeats=repeats,
        device=getattr(args, "device", None) or "cpu",
        n_iter=getattr(args, "n_iter", None),
        threads=getattr(args, "threads", 1) or None,
    )
    print(format_report(result))  # noqa: T201
    return 0
