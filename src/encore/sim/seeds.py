"""Seed songs for simulated listeners: excerpts of corpus pieces, or synthetic music.

- :func:`corpus_seed_songs`: pieces of a built corpus (``manifest.jsonl`` with ``genre`` and
  ``split``; audio in ``audio/*.flac``), preferring pieces outside the training split (the
  base model never saw them), spread over the genres asked for, cut to an excerpt from the
  body of the piece (not its intro) and encoded as FLAC — what a user would upload.
- :func:`synthetic_seed_songs`: :func:`encore.audio.synth.demo_music` pieces in two
  registers (genres ``synthetic-low`` / ``synthetic-high``) at different tempi, for the CI
  pilot where no corpus exists (rendering music21 scores there would cost more than the
  whole tiny pilot).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from encore.errors import InvalidInput
from encore.sim.features import audio_features
from encore.sim.population import SeedSong

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050


def flac_bytes(y: np.ndarray, sr: int) -> bytes:
    """``y`` (mono float) encoded as 16-bit FLAC."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def synthetic_seed_songs(n: int, *, seconds: float = 4.0, seed: int = 0) -> list[SeedSong]:
    """``n`` synthetic songs alternating a low and a high register, at varied tempi.

    Parameters
    ----------
    n : int >= 1
    seconds : float
        Length of each song.
    seed : int
    """
    from encore.audio.synth import demo_music

    if n < 1:
        raise InvalidInput(f"n={n!r} seed songs: need at least one")
    rng = np.random.default_rng(seed)
    songs = []
    for i in range(n):
        low = i % 2 == 0
        tonic = float(rng.uniform(90, 160) if low else rng.uniform(330, 600))
        tempo = float(rng.uniform(70, 110) if low else rng.uniform(130, 180))
        y = demo_music(seconds, SAMPLE_RATE, seed=seed * 1000 + i, tempo_bpm=tempo,
                       tonic_hz=tonic, percussion=not low)
        songs.append(SeedSong(
            title=f"synth {i + 1:02d} ({'low' if low else 'high'}, {tempo:.0f} bpm)",
            genre="synthetic-low" if low else "synthetic-high",
            data=flac_bytes(y, SAMPLE_RATE),
            filename=f"synth-{i + 1:02d}.flac",
            features=audio_features(y, SAMPLE_RATE),
        ))
    return songs


def read_manifest(corpus_dir: Path) -> list[dict]:
    """The corpus manifest's rows (``manifest.jsonl``)."""
    path = Path(corpus_dir) / "manifest.jsonl"
    if not path.is_file():
        raise InvalidInput(f"corpus {corpus_dir} has no manifest.jsonl; build it with `encore corpus build`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def corpus_seed_songs(
    corpus_dir: str | Path,
    n: int,
    *,
    genres: Iterable[str] = (),
    seconds: float = 30.0,
    seed: int = 0,
) -> list[SeedSong]:
    """``n`` excerpts of corpus pieces, spread round-robin over ``genres`` (all if empty).

    Pieces outside the ``train`` split come first. The excerpt starts a fifth into the
    piece (bodies, not intros) and lasts ``seconds`` (or the whole piece if shorter).

    Raises
    ------
    InvalidInput
        No manifest, or no piece of the genres asked for.
    """
    from encore.audio.decode import load_audio

    corpus_dir = Path(corpus_dir)
    rows = [r for r in read_manifest(corpus_dir) if float(r.get("seconds", 0)) >= 8.0]
    available = {r["genre"] for r in rows}
    wanted = sorted(set(genres) & available) or sorted(available)  # unknown genres: any
    rng = np.random.default_rng(seed)
    by_genre: dict[str, list[dict]] = {}
    for g in wanted:
        pool = [r for r in rows if r["genre"] == g]
        held = [r for r in pool if r.get("split") != "train"]
        train = [r for r in pool if r.get("split") == "train"]
        by_genre[g] = [held[i] for i in rng.permutation(len(held))] + [
            train[i] for i in rng.permutation(len(train))
        ]
    if not any(by_genre.values()):
        raise InvalidInput(f"corpus {corpus_dir} has no pieces of genres {wanted}")
    chosen: list[dict] = []
    while len(chosen) < n and any(by_genre.values()):
        for g in wanted:
            if by_genre[g] and len(chosen) < n:
                chosen.append(by_genre[g].pop(0))
    songs = []
    for r in chosen:
        y = load_audio(corpus_dir / r["audio"], sr=SAMPLE_RATE, max_seconds=None)
        start = int(len(y) * 0.2)
        if len(y) - start < seconds * SAMPLE_RATE:
            start = max(0, len(y) - int(seconds * SAMPLE_RATE))
        y = y[start: start + int(seconds * SAMPLE_RATE)]
        songs.append(SeedSong(
            title=str(r.get("piece_id", Path(r["audio"]).stem)),
            genre=str(r["genre"]),
            data=flac_bytes(y, SAMPLE_RATE),
            filename=Path(r["audio"]).name,
            features=audio_features(y, SAMPLE_RATE),
        ))
    logger.info("%d seed songs from %s (%s)", len(songs), corpus_dir, ", ".join(wanted))
    return songs
