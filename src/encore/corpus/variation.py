"""Seeded choices: instruments, tempo and transposition per piece; the held-out split.

Every choice is a pure function of the build seed and a stable string (the piece id or
the source file), so it does not depend on the order in which workers finish.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from encore.corpus.collections import GenreSpec

HELDOUT = "heldout"
TRAIN = "train"


def stable_int(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is stable across processes and runs."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A numpy generator determined by the seed and ``parts``."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stable_int(*parts)])


@dataclass(frozen=True)
class Variation:
    """How one piece is rendered.

    Attributes
    ----------
    programs : tuple of int
        General-MIDI program (0–127) per part with notes, in score order.
    tempo_scale : float
        Playback speed factor (1.1 = 10 % faster, 10 % shorter).
    transpose : int
        Semitones added to every note.
    mode : str
        ``"unison"``, ``"ensemble"`` or ``"mixed"`` (how ``programs`` were drawn).
    """

    programs: tuple[int, ...]
    tempo_scale: float
    transpose: int
    mode: str


def choose_tempo_transpose(genre: GenreSpec, rng: np.random.Generator) -> tuple[float, int]:
    """Draw the tempo scale (3 decimals) and the transposition (semitones) of a piece."""
    lo, hi = genre.tempo_range
    tempo = round(float(rng.uniform(lo, hi)), 3)
    t_lo, t_hi = genre.transpose_range
    return tempo, int(rng.integers(t_lo, t_hi + 1))


def choose_programs(genre: GenreSpec, n_parts: int, rng: np.random.Generator) -> tuple[tuple[int, ...], str]:
    """Draw a General-MIDI program per part and the mode (unison, ensemble or mixed)."""
    n_parts = max(1, int(n_parts))
    u = rng.random()
    palette = genre.palette
    if u < genre.p_unison or not genre.ensembles and u < genre.p_unison + genre.p_ensemble:
        return (int(palette[rng.integers(len(palette))]),) * n_parts, "unison"
    if u < genre.p_unison + genre.p_ensemble:
        line_up = genre.ensembles[int(rng.integers(len(genre.ensembles)))]
        return tuple(int(line_up[min(i, len(line_up) - 1)]) for i in range(n_parts)), "ensemble"
    return tuple(int(p) for p in rng.choice(palette, size=n_parts)), "mixed"


def choose_variation(genre: GenreSpec, n_parts: int, seed: int, piece_id: str) -> Variation:
    """The variation of a piece: a pure function of (genre, part count, seed, piece id).

    Tempo and transposition come from their own stream (they are needed before the part
    count is known, to cut long scores); the programs from another.

    Parameters
    ----------
    genre : GenreSpec
        Palette, ensembles and ranges.
    n_parts : int
        Parts (MIDI instruments with notes), ≥ 1.
    seed : int
    piece_id : str

    Returns
    -------
    Variation
    """
    tempo, transpose = choose_tempo_transpose(genre, rng_for(seed, "tempo", piece_id))
    programs, mode = choose_programs(genre, n_parts, rng_for(seed, "programs", piece_id))
    return Variation(programs=programs, tempo_scale=tempo, transpose=transpose, mode=mode)


def assign_splits(
    sources_by_collection: dict[str, dict[str, int]],
    seed: int,
    fraction: float = 0.1,
) -> dict[str, str]:
    """Train/held-out split *by source file*, deterministic from the seed.

    In each collection the sources are ranked by a hash of (seed, collection, source) and
    held out in that order until they hold at least ``fraction`` of the collection's pieces
    (so a song book with hundreds of tunes weighs as much as hundreds of single files). At
    least one source is held out when the collection has two or more. All pieces (tunes) of
    one source therefore share a split.

    Parameters
    ----------
    sources_by_collection : dict
        Collection name → {source id: number of pieces in it}.
    seed : int
    fraction : float
        Target share of pieces held out, in [0, 1).

    Returns
    -------
    dict
        Source id → ``"train"`` or ``"heldout"``.
    """
    splits: dict[str, str] = {}
    for collection, counts in sources_by_collection.items():
        ranked = sorted(counts, key=lambda s: (stable_int("split", seed, collection, s), s))
        total = sum(max(1, int(n)) for n in counts.values())
        held_items = 0
        for i, source in enumerate(ranked):
            need_more = held_items < fraction * total and i < len(ranked) - 1
            if len(ranked) >= 2 and (i == 0 or need_more):
                splits[source] = HELDOUT
                held_items += max(1, int(counts[source]))
            else:
                splits[source] = TRAIN
    return splits
