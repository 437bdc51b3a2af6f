"""Work items: one score (or one tune of a song book) to render.

Song books (ABC files holding many ``X:`` tunes: Essen, O'Neill's, Ryan's, Aird's) are
split into single tunes *as text* before parsing, so that one bad tune costs one tune
rather than the whole book, and a tune's parse time stays small.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from encore.corpus.collections import CollectionSpec, collection_paths, music21_corpus_root

_TUNE_START = re.compile(r"(?m)^[ \t]*X:")
_HEADER_FIELD = re.compile(r"^[A-Za-z]:")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class WorkItem:
    """One piece to render.

    Attributes
    ----------
    piece_id : str
        Unique, file-name-safe id (``<collection>-<file>[-tNNNN]``).
    collection, genre : str
    source : str
        The score file relative to the music21 corpus folder (posix), e.g.
        ``essenFolksong/altdeu10.abc``; all tunes of one file share it (and their split).
    tune : int or None
        0-based position of the tune in a song book; None for a whole file.
    path : str
        Absolute path of the file (parsed when ``text`` is None).
    text : str or None
        The tune's ABC text (book tunes only).
    """

    piece_id: str
    collection: str
    genre: str
    source: str
    tune: int | None
    path: str
    text: str | None = None


def split_abc_book(text: str) -> list[str]:
    """Split an ABC song book into single-tune ABC texts.

    Each tune runs from its ``X:`` line to the next one. Header fields of the file header
    (``M:``, ``L:``, … lines before the first ``X:``) are repeated at the top of every tune
    body (after its ``X:`` line) so that file-wide defaults still apply; comments are dropped.

    Parameters
    ----------
    text : str
        The whole ABC file.

    Returns
    -------
    list of str
        One text per tune, in file order (empty if the file has no ``X:`` line).
    """
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    if not starts:
        return []
    header = [
        line.strip() for line in text[: starts[0]].splitlines() if _HEADER_FIELD.match(line.strip())
    ]
    tunes = []
    bounds = starts + [len(text)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = text[a:b].strip()
        if header:
            first, _, rest = block.partition("\n")
            block = "\n".join([first, *header, rest]) if rest else "\n".join([first, *header])
        tunes.append(block + "\n")
    return tunes


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "x"


def piece_id_for(collection: str, source: str, tune: int | None) -> str:
    """The file-name-safe piece id of a file (or of a tune of a book).

    ``<collection>-<path without extension>[-tNNNN]``, with the collection's own folder
    dropped from the path (``bach/bwv1.6.mxl`` → ``bach-bwv1.6``).
    """
    stem = source.rsplit(".", 1)[0]
    head, _, rest = stem.partition("/")
    if head == collection and rest:
        stem = rest
    pid = f"{collection}-{_slug(stem.replace('/', '_'))}"
    return pid if tune is None else f"{pid}-t{tune:04d}"


def _relative_source(path: Path) -> str:
    root = music21_corpus_root()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def items_for_file(spec: CollectionSpec, path: Path, source: str | None = None) -> list[WorkItem]:
    """Work items of one score file (one per tune for song books).

    Parameters
    ----------
    spec : CollectionSpec
    path : Path
        The score file.
    source : str, optional
        Its id in the manifest (default: the path relative to the music21 corpus).
    """
    source = source or _relative_source(path)
    if spec.books and path.suffix.lower() == ".abc":
        text = path.read_text(encoding="utf-8", errors="replace")
        tunes = split_abc_book(text)
        return [
            WorkItem(piece_id_for(spec.name, source, i if len(tunes) > 1 else None), spec.name,
                     spec.genre, source, i, str(path), tune_text)
            for i, tune_text in enumerate(tunes)
        ]
    return [WorkItem(piece_id_for(spec.name, source, None), spec.name, spec.genre, source, None,
                     str(path))]


def collection_items(spec: CollectionSpec) -> list[WorkItem]:
    """All work items of a collection, in file order."""
    items: list[WorkItem] = []
    for path in collection_paths(spec):
        items.extend(items_for_file(spec, path))
    return dedupe_ids(items)


def dedupe_ids(items: Iterable[WorkItem]) -> list[WorkItem]:
    """Make piece ids unique (a colliding id gets a short hash of its source appended)."""
    seen: set[str] = set()
    out = []
    for item in items:
        pid = item.piece_id
        if pid in seen:
            digest = hashlib.sha1(f"{item.source}#{item.tune}".encode()).hexdigest()[:8]
            pid = f"{pid}-{digest}"
            item = WorkItem(pid, item.collection, item.genre, item.source, item.tune, item.path,
                            item.text)
        seen.add(pid)
        out.append(item)
    return out
