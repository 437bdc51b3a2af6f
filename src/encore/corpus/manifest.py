"""The corpus folder's manifest (``manifest.jsonl``) and build summary (``build.json``).

Layout of a corpus folder::

    audio/<piece_id>.flac   22 050 Hz mono, 16-bit
    mel/<piece_id>.npy      float16 (n_mels, frames), dB relative to the piece's max,
                            floored at -100
    mel_config.json         the MelConfig (x_res = training crop width in frames)
    manifest.jsonl          one PieceRecord per line
    build.json              totals, failures by reason, settings, wall time
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from encore.errors import InvalidInput, NotFound

MANIFEST_FILE = "manifest.jsonl"
BUILD_FILE = "build.json"
READY_FILE = "READY"


@dataclass(frozen=True)
class PieceRecord:
    """One rendered piece (a manifest line).

    Attributes
    ----------
    piece_id : str
    collection, genre : str
    source : str
        Score file relative to the music21 corpus folder.
    tune : int or None
        0-based tune position in a song book (None for whole files).
    programs : tuple of int
        General-MIDI program per part (0-based).
    tempo_scale : float
        Playback speed factor.
    transpose : int
        Semitones.
    seconds : float
        Audio duration.
    n_frames : int
        Mel frames (``1 + n_samples // hop_length``).
    split : str
        ``"train"`` or ``"heldout"``.
    audio, mel : str
        Paths relative to the corpus folder.
    slices : tuple of int
        Start frames of the non-overlapping, non-silent ``x_res``-frame windows.
    """

    piece_id: str
    collection: str
    genre: str
    source: str
    tune: int | None
    programs: tuple[int, ...]
    tempo_scale: float
    transpose: int
    seconds: float
    n_frames: int
    split: str
    audio: str
    mel: str
    slices: tuple[int, ...]

    def to_json(self) -> str:
        row: dict[str, Any] = asdict(self)
        row["source"] = {"path": self.source, "tune": self.tune}
        del row["tune"]
        row["programs"] = list(self.programs)
        row["slices"] = list(self.slices)
        return json.dumps(row, sort_keys=True)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PieceRecord:
        source = row["source"]
        if isinstance(source, dict):
            path, tune = str(source["path"]), source.get("tune")
        else:
            path, tune = str(source), row.get("tune")
        return cls(
            piece_id=str(row["piece_id"]),
            collection=str(row["collection"]),
            genre=str(row["genre"]),
            source=path,
            tune=None if tune is None else int(tune),
            programs=tuple(int(p) for p in row["programs"]),
            tempo_scale=float(row["tempo_scale"]),
            transpose=int(row["transpose"]),
            seconds=float(row["seconds"]),
            n_frames=int(row["n_frames"]),
            split=str(row["split"]),
            audio=str(row["audio"]),
            mel=str(row["mel"]),
            slices=tuple(int(s) for s in row["slices"]),
        )


def write_manifest(path: str | Path, records: list[PieceRecord]) -> Path:
    """Write records as JSON lines (atomically: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r.to_json() + "\n" for r in records))
    tmp.replace(path)
    return path


T = TypeVar("T")


def read_manifest(corpus_dir: str | Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    """Each line of a corpus folder's manifest as ``parse`` makes it of the line's JSON
    object, in manifest order (blank lines skipped).

    Raises
    ------
    NotFound
        If the folder has no ``manifest.jsonl``.
    InvalidInput
        If a line is not JSON or ``parse`` cannot read it (KeyError, TypeError, ValueError;
        the message names the line).
    """
    manifest = Path(corpus_dir) / MANIFEST_FILE
    if not manifest.is_file():
        raise NotFound(f"no {MANIFEST_FILE} in corpus folder {corpus_dir}")
    items = []
    for line_no, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(parse(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{manifest}:{line_no}: bad manifest line: {exc}") from exc
    return items


def load_manifest(corpus_dir: str | Path) -> list[PieceRecord]:
    """The pieces of a corpus folder, in manifest order (see :func:`read_manifest`)."""
    return read_manifest(corpus_dir, PieceRecord.from_row)


def load_build_summary(corpus_dir: str | Path) -> dict[str, Any]:
    """The ``build.json`` of a corpus folder."""
    path = Path(corpus_dir) / BUILD_FILE
    if not path.is_file():
        raise NotFound(f"no {BUILD_FILE} in corpus folder {corpus_dir}")
    return json.loads(path.read_text())
