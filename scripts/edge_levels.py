"""The level of the first and last 5 ms of served clips, without and with the edge fade.

Renders clips with the shipped base model (variations of corpus songs and clips from noise,
the service's defaults), encodes each as the generation service stores it (ogg/Vorbis,
peak-normalised), decodes the file again and prints, per clip and in summary, the peak and
RMS level (dBFS) of its first and last 5 ms — before (the raw clip) and after
:func:`encore.audio.fades.fade_edges`. Issue 19's target: below −40 dBFS.

    nice -n 19 .venv/bin/python scripts/edge_levels.py --songs data/corpus/audio -n 20
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np


def edge_levels(y: np.ndarray, sr: int, ms: float = 5.0) -> tuple[float, float, float, float]:
    """(peak, RMS) dBFS of the first ``ms`` and (peak, RMS) of the last ``ms``."""
    n = max(1, int(round(ms / 1000 * sr)))

    def db(x: float) -> float:
        return 20 * np.log10(max(x, 1e-12))

    head, tail = y[:n].astype(np.float64), y[-n:].astype(np.float64)
    return (db(np.abs(head).max()), db(np.sqrt(np.mean(head**2))),
            db(np.abs(tail).max()), db(np.sqrt(np.mean(tail**2))))


def served(audio: np.ndarray, sr: int) -> np.ndarray:
    """Encode as the service stores clips and decode the file again."""
    import soundfile as sf

    from encore.audio.encode import encode_audio

    y, file_sr = sf.read(io.BytesIO(encode_audio(audio, sr=sr, format="ogg")), dtype="float32")
    assert file_sr == sr
    return y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=Path, help="folder of songs to vary (wav/flac/ogg/mp3)")
    parser.add_argument("-n", type=int, default=20, help="clips in all (half from noise "
                        "when --songs is given, else all)")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()

    from encore.audio.fades import FADE_POWER, FADE_SECONDS, fade_edges
    from encore.config import get_settings
    from encore.diffusion.engine import Engine

    settings = get_settings()
    engine = Engine(args.model)
    sr = engine.sample_rate
    clips = []
    n_songs = 0
    if args.songs is not None:
        files = sorted(p for p in args.songs.iterdir() if p.suffix.lower() in
                       (".wav", ".flac", ".ogg", ".mp3"))
        files = files[:: max(1, len(files) // (args.n // 2))][: args.n // 2]
        n_songs = len(files)
        for k, f in enumerate(files):
            clips += [("vary " + f.name, c.audio) for c in engine.vary_batch(
                f, settings.default_strength, seeds=[k], seconds=settings.clip_seconds)]
    n_noise = args.n - n_songs
    if n_noise:
        clips += [(f"noise seed {c.params['seed']}", c.audio) for c in engine.generate_batch(
            seeds=list(range(n_noise)), seconds=settings.clip_seconds)]

    print(f"{len(clips)} clips ({n_songs} variations, {n_noise} from noise), "  # noqa: T201
          f"{settings.clip_seconds} s at {sr} Hz; fade {FADE_SECONDS * 1000:.0f} ms, power "
          f"{FADE_POWER:g}; levels of the served ogg, first / last 5 ms, dBFS (peak, RMS)")
    rows = {"before": [], "after": []}
    for name, audio in clips:
        before = edge_levels(served(audio, sr), sr)
        after = edge_levels(served(fade_edges(audio, sr), sr), sr)
        rows["before"].append(before)
        rows["after"].append(after)
        print(f"  {name[:40]:40s} before {before[0]:6.1f} {before[1]:6.1f} / "  # noqa: T201
              f"{before[2]:6.1f} {before[3]:6.1f}   after {after[0]:6.1f} {after[1]:6.1f} / "
              f"{after[2]:6.1f} {after[3]:6.1f}")
    for label, data in rows.items():
        a = np.array(data)
        peaks = np.concatenate([a[:, 0], a[:, 2]])
        rms = np.concatenate([a[:, 1], a[:, 3]])
        print(f"{label:6s}: edge peak max {peaks.max():6.1f} dBFS, median {np.median(peaks):6.1f}; "  # noqa: T201
              f"edge RMS max {rms.max():6.1f} dBFS, median {np.median(rms):6.1f}; "
              f"{int(np.sum(peaks < -40))}/{peaks.size} edges with peak < -40 dBFS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
