"""The music21 collections the corpus is built from, their genre labels and instruments.

Each :class:`CollectionSpec` names folders of the corpus that the ``music21`` package
ships (enumerated with :func:`music21.corpus.getComposer`) and the genre label its pieces
get. Each :class:`GenreSpec` holds a palette of General-MIDI programs (0-based, as in
``pretty_midi``) that are plausible for the repertoire, a few ensemble line-ups (applied to
the score's parts from top to bottom) and the ranges of the tempo and transposition
variation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from encore.errors import InvalidInput

#: Score formats the builder parses. ``.rntxt`` (Roman-numeral analyses), ``.mus`` and
#: ``.musx`` (Finale) in the music21 corpus are not rendered.
SCORE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


@dataclass(frozen=True)
class GenreSpec:
    """How pieces of one genre are orchestrated and varied.

    Attributes
    ----------
    name : str
        The genre label (manifest ``genre``).
    palette : tuple of int
        General-MIDI programs (0–127) drawn for single instruments.
    ensembles : tuple of tuple of int
        Line-ups assigned to the parts in score order (top part first); parts beyond the
        line-up repeat its last program.
    p_unison : float
        Probability that all parts play one program from ``palette``.
    p_ensemble : float
        Probability of an ensemble line-up (otherwise each part draws from ``palette``).
    tempo_range : tuple of float
        Uniform range of the tempo scale (1.1 = 10 % faster).
    transpose_range : tuple of int
        Inclusive range of the transposition in semitones.
    """

    name: str
    palette: tuple[int, ...]
    ensembles: tuple[tuple[int, ...], ...] = ()
    p_unison: float = 0.5
    p_ensemble: float = 0.2
    tempo_range: tuple[float, float] = (0.85, 1.15)
    transpose_range: tuple[int, int] = (-3, 3)

    def __post_init__(self) -> None:
        programs = list(self.palette) + [p for e in self.ensembles for p in e]
        if not self.palette or any(not 0 <= p <= 127 for p in programs):
            raise InvalidInput(f"genre {self.name!r}: programs must be 0..127, got {programs}")
        if not 0 <= self.p_unison + self.p_ensemble <= 1:
            raise InvalidInput(f"genre {self.name!r}: p_unison + p_ensemble must be in [0, 1]")


@dataclass(frozen=True)
class CollectionSpec:
    """A collection of the music21 corpus.

    Attributes
    ----------
    name : str
        Collection name (manifest ``collection``, ``--collections`` argument).
    genre : str
        Genre label of its pieces.
    composers : tuple of str
        music21 corpus folders (``music21.corpus.getComposer`` names).
    books : bool
        The ABC files are song books: split them into single tunes (on ``X:``) before
        parsing.
    max_kb : int or None
        Skip files larger than this (kB): known-slow huge scores.
    """

    name: str
    genre: str
    composers: tuple[str, ...]
    books: bool = False
    max_kb: int | None = None


# General-MIDI programs used below (0-based): 0 piano, 1 bright piano, 6 harpsichord,
# 15 dulcimer, 19 church organ, 20 reed organ, 21 accordion, 22 harmonica, 23 tango
# accordion, 24 nylon guitar, 25 steel guitar, 40 violin, 41 viola, 42 cello, 43 contrabass,
# 46 harp, 48/49 string ensembles, 52 choir aahs, 53 voice oohs, 56 trumpet, 57 trombone,
# 58 tuba, 60 French horn, 61 brass section, 64 soprano sax, 68 oboe, 69 English horn,
# 70 bassoon, 71 clarinet, 72 piccolo, 73 flute, 74 recorder, 75 pan flute, 105 banjo,
# 109 bagpipe, 110 fiddle.
GENRES: dict[str, GenreSpec] = {
    g.name: g
    for g in (
        GenreSpec(
            "bach_chorale",
            palette=(19, 20, 52, 53, 48, 49, 0, 6, 61, 68, 71),
            ensembles=((40, 40, 41, 42), (73, 68, 71, 70), (56, 60, 57, 58), (52, 52, 53, 53),
                       (68, 69, 60, 70)),
            p_unison=0.45, p_ensemble=0.35,
        ),
        GenreSpec(
            "renaissance",
            palette=(52, 53, 19, 20, 74, 48, 49, 41, 42, 70),
            ensembles=((74, 74, 74, 74), (40, 41, 42, 42), (52, 53, 53, 53), (68, 69, 57, 70)),
            p_unison=0.5, p_ensemble=0.3, tempo_range=(0.9, 1.25),
        ),
        GenreSpec(
            "madrigal",
            palette=(52, 53, 6, 24, 46, 40, 41, 42, 74, 48),
            ensembles=((40, 40, 41, 42, 42), (52, 52, 53, 53, 53), (74, 74, 41, 42, 6),
                       (73, 68, 24, 46, 42)),
            p_unison=0.4, p_ensemble=0.3, tempo_range=(0.9, 1.2),
        ),
        GenreSpec(
            "medieval",
            palette=(74, 73, 75, 24, 46, 6, 109, 110, 41, 52, 20, 68),
            ensembles=((110, 74, 24), (68, 74, 46), (52, 53, 20), (73, 110, 42)),
            p_unison=0.35, p_ensemble=0.3,
        ),
        GenreSpec(
            "fiddle_tune",
            palette=(110, 40, 73, 72, 74, 21, 22, 23, 109, 105, 24, 25, 15, 46),
            ensembles=((110, 24), (73, 21), (40, 105)),
            p_unison=0.9, p_ensemble=0.1, tempo_range=(0.85, 1.2), transpose_range=(-2, 2),
        ),
        GenreSpec(
            "folk_song",
            palette=(0, 73, 74, 71, 68, 21, 24, 25, 40, 52, 53, 46, 22, 64),
            ensembles=((52, 24), (73, 0), (40, 46)),
            p_unison=0.9, p_ensemble=0.1,
        ),
        GenreSpec(
            "classical",
            palette=(0, 1, 6, 40, 41, 42, 48, 49, 68, 71, 73, 70, 60),
            ensembles=((40, 40, 41, 42), (73, 68, 71, 70), (0, 0, 0, 0), (40, 42, 0, 0),
                       (48, 48, 48, 43)),
            p_unison=0.35, p_ensemble=0.45, transpose_range=(-2, 2),
        ),
    )
}

COLLECTIONS: dict[str, CollectionSpec] = {
    c.name: c
    for c in (
        CollectionSpec("bach", "bach_chorale", ("bach",)),
        CollectionSpec("palestrina", "renaissance", ("palestrina", "josquin")),
        CollectionSpec("monteverdi", "madrigal", ("monteverdi",)),
        CollectionSpec("trecento", "medieval", ("trecento", "ciconia")),
        CollectionSpec("oneills1850", "fiddle_tune", ("oneills1850",), books=True),
        CollectionSpec("ryansMammoth", "fiddle_tune", ("ryansMammoth",), books=True),
        CollectionSpec("airdsAirs", "fiddle_tune", ("airdsAirs",), books=True),
        CollectionSpec("essenFolksong", "folk_song", ("essenFolksong",), books=True),
        CollectionSpec(
            "classical",
            "classical",
            ("beethoven", "mozart", "haydn", "schubert", "schumann_robert", "schumann_clara",
             "handel", "corelli", "cpebach", "weber", "joplin", "chopin", "beach"),
            max_kb=1000,
        ),
    )
}

DEFAULT_COLLECTIONS: tuple[str, ...] = tuple(COLLECTIONS)


def resolve_collections(names: list[str] | tuple[str, ...] | None) -> tuple[CollectionSpec, ...]:
    """The specs for ``names`` (all collections when None), in the given order.

    Raises
    ------
    InvalidInput
        If a name is not a known collection.
    """
    if not names:
        names = DEFAULT_COLLECTIONS
    unknown = [n for n in names if n not in COLLECTIONS]
    if unknown:
        raise InvalidInput(
            f"unknown collection(s) {', '.join(map(repr, unknown))}; known: {', '.join(COLLECTIONS)}"
        )
    return tuple(COLLECTIONS[n] for n in dict.fromkeys(names))


def music21_corpus_root() -> Path:
    """The folder of the corpus shipped inside the ``music21`` package."""
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def collection_paths(spec: CollectionSpec) -> list[Path]:
    """Score files of a collection (absolute, sorted), size rule applied.

    Uses :func:`music21.corpus.getComposer` per folder and keeps :data:`SCORE_EXTENSIONS`.
    """
    from music21 import corpus

    paths: list[Path] = []
    for composer in spec.composers:
        for p in corpus.getComposer(composer):
            p = Path(p)
            if p.suffix.lower() not in SCORE_EXTENSIONS:
                continue
            if spec.max_kb is not None and p.stat().st_size > spec.max_kb * 1000:
                continue
            paths.append(p)
    return sorted(set(paths))
