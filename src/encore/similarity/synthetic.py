"""Synthetic "genres" of mel spectrograms, for tests and development without a corpus.

Each genre is a timbre and register: a pitch range, a partial profile (harmonic or
bell-like), an envelope, note lengths and polyphony. Mel spectrograms are drawn directly
(partials as Gaussian bumps on the mel axis), in dB relative to the piece's maximum, in
the corpus format of :mod:`encore.similarity.data`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encore.audio.mel import MelConfig


@dataclass(frozen=True)
class ToneGenre:
    """A synthetic genre: where its notes lie and what they sound like."""

    name: str
    midi_range: tuple[int, int]
    partials: tuple[float, ...]  # frequency ratios of the partials
    rolloff: float  # partial k has amplitude ratio_k ** -rolloff
    decay_frames: float  # exponential amplitude decay time constant
    note_frames: tuple[int, int]
    polyphony: int = 1


def _harmonic(n: int) -> tuple[float, ...]:
    return tuple(float(k) for k in range(1, n + 1))


GENRES: tuple[ToneGenre, ...] = (
    ToneGenre("pluck_low", (36, 55), _harmonic(14), 1.4, 6.0, (4, 10)),
    ToneGenre("flute_high", (72, 91), _harmonic(3), 2.5, 200.0, (10, 28)),
    ToneGenre("organ_chords", (48, 72), _harmonic(10), 1.0, 400.0, (20, 44), polyphony=3),
    ToneGenre("bell", (60, 84), (1.0, 2.76, 5.40, 8.93, 13.34), 0.8, 30.0, (12, 30)),
    ToneGenre("saw_mid", (55, 74), _harmonic(24), 1.0, 60.0, (6, 14)),
)


def synthetic_mel(genre: ToneGenre, frames: int, config: MelConfig, rng: np.random.Generator) -> np.ndarray:
    """A ``(config.y_res, frames)`` float32 dB mel of random notes in ``genre``, max 0 dB."""
    import librosa

    n_mels = config.y_res
    centres = librosa.hz_to_mel(
        librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=config.sample_rate / 2)[1:-1]
    )
    width = (centres[-1] - centres[0]) / n_mels * 0.8
    power = np.full((n_mels, frames), 1e-9, dtype=np.float64)
    t = 0
    while t < frames:
        length = int(rng.integers(genre.note_frames[0], genre.note_frames[1] + 1))
        gain = 10 ** rng.uniform(-1.0, 0.0)
        for _ in range(genre.polyphony):
            midi = rng.uniform(*genre.midi_range)
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            spectrum = np.zeros(n_mels)
            for ratio in genre.partials:
                f = f0 * ratio
                if f >= config.sample_rate / 2:
                    break
                m = librosa.hz_to_mel(f)
                spectrum += ratio ** -genre.rolloff * np.exp(-0.5 * ((centres - m) / width) ** 2)
            span = min(length, frames - t)
            env = np.exp(-np.arange(span) / genre.decay_frames)
            env[: min(2, span)] *= np.linspace(0.3, 1.0, min(2, span))
            power[:, t : t + span] += gain * np.outer(spectrum, env) ** 2
        t += length
    power *= 1 + 0.05 * rng.standard_normal(power.shape) ** 2
    db = 10 * np.log10(power / power.max())
    return np.maximum(db, -config.top_db).astype(np.float32)


def write_synthetic_corpus(
    directory: str | Path,
    *,
    genres: tuple[ToneGenre, ...] = GENRES,
    pieces_per_genre: int = 8,
    heldout_per_genre: int = 2,
    frames: int = 512,
    width: int = 128,
    n_mels: int = 128,
    seed: int = 0,
) -> Path:
    """Write a corpus folder (manifest, mel_config.json, mels) of synthetic genres.

    The last ``heldout_per_genre`` pieces of each genre get ``split="heldout"``.
    """
    root = Path(directory)
    (root / "mels").mkdir(parents=True, exist_ok=True)
    config = MelConfig(x_res=width, y_res=n_mels)
    config.save(root)
    rng = np.random.default_rng(seed)
    lines = []
    for genre in genres:
        for i in range(pieces_per_genre):
            piece_id = f"{genre.name}-{i:03d}"
            n_frames = int(frames * rng.uniform(0.75, 1.25))
            mel = synthetic_mel(genre, n_frames, config, rng)
            rel = f"mels/{piece_id}.npy"
            np.save(root / rel, mel.astype(np.float16))
            split = "heldout" if i >= pieces_per_genre - heldout_per_genre else "train"
            lines.append(json.dumps({
                "piece_id": piece_id, "collection": genre.name, "genre": genre.name,
                "split": split, "mel": rel, "slices": list(range(0, n_frames - width + 1, width)),
            }))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root
