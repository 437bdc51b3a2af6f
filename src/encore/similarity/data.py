"""Reading a spectrogram corpus for the similarity model.

The corpus folder (built by ``encore corpus build``) holds ``manifest.jsonl`` (one piece
per line: ``piece_id``, ``collection``, ``genre``, ``split``, ``mel``, ``slices``),
``mel_config.json`` and the mel arrays: float16 ``(n_mels, frames)`` in dB relative to the
piece's maximum. A slice image is a ``width``-frame crop normalised to its own maximum
(the audio-diffusion convention, :func:`encore.audio.mel.normalize_db_crop`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encore.audio.mel import MelConfig, normalize_db_crop
from encore.corpus.manifest import MANIFEST_FILE, read_manifest
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusPiece:
    """One piece of the corpus (a manifest line)."""

    piece_id: str
    genre: str
    split: str
    mel_path: Path
    slices: tuple[int, ...]


@dataclass(frozen=True)
class Corpus:
    """A spectrogram corpus: its pieces, genre names (sorted) and mel settings."""

    root: Path
    pieces: tuple[CorpusPiece, ...]
    genres: tuple[str, ...]
    mel_config: MelConfig
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def split(self, name: str) -> list[CorpusPiece]:
        return [p for p in self.pieces if p.split == name]

    def genre_index(self, genre: str) -> int:
        return self.genres.index(genre)

    def mel(self, piece: CorpusPiece) -> np.ndarray:
        """The piece's dB mel ``(n_mels, frames)`` (float16, memory-mapped, cached)."""
        key = piece.piece_id
        if key not in self._cache:
            try:
                self._cache[key] = np.load(piece.mel_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"cannot read mel {piece.mel_path}: {exc}") from exc
        return self._cache[key]


def load_corpus(corpus_dir: str | Path) -> Corpus:
    """Read a corpus folder's manifest and mel settings.

    Raises
    ------
    NotFound
        If the folder has no ``manifest.jsonl``.
    """
    root = Path(corpus_dir)

    def piece(row: dict[str, Any]) -> CorpusPiece:
        return CorpusPiece(
            piece_id=str(row["piece_id"]),
            genre=str(row.get("genre") or row["collection"]),
            split=str(row["split"]),
            mel_path=root / row["mel"],
            slices=tuple(int(s) for s in row.get("slices", ())),
        )

    pieces = read_manifest(root, piece)
    if not pieces:
        raise InvalidInput(f"{root / MANIFEST_FILE} lists no pieces")
    genres = tuple(sorted({p.genre for p in pieces}))
    mel_config = MelConfig.load(root) if (root / "mel_config.json").is_file() else MelConfig()
    return Corpus(root=root, pieces=tuple(pieces), genres=genres, mel_config=mel_config)


def piece_images(corpus: Corpus, piece: CorpusPiece, width: int,
                 max_slices: int | None = None) -> np.ndarray:
    """The piece's slice images ``(n, n_mels, width)`` float32 in [-1, 1].

    Slices start at the manifest's ``slices`` frames (or every ``width`` frames if the
    manifest has none); with ``max_slices`` an evenly spaced subset is taken.
    """
    mel = corpus.mel(piece)
    frames = mel.shape[1]
    starts = [s for s in piece.slices if s + width <= frames] or list(range(0, frames - width + 1, width))
    if not starts:
        raise InvalidInput(f"piece {piece.piece_id} has {frames} frames, fewer than one slice ({width})")
    if max_slices is not None and len(starts) > max_slices:
        pick = np.linspace(0, len(starts) - 1, max_slices).round().astype(int)
        starts = [starts[i] for i in pick]
    crops = np.stack([np.asarray(mel[:, s : s + width], dtype=np.float32) for s in starts])
    return normalize_db_crop(crops, corpus.mel_config)


class CropSampler:
    """Random ``width``-frame crops around the pieces' slices, with their genre labels.

    A crop starts at one of the manifest's (non-silent) slice starts, chosen uniformly over
    all slices of all pieces, shifted by a random offset of up to half a slice (clipped to
    the piece), so crops are not tied to the slice grid.

    Parameters
    ----------
    corpus : Corpus
    pieces : sequence of CorpusPiece
    width : int
        Crop width in frames.
    seed : int
    """

    def __init__(self, corpus: Corpus, pieces: Sequence[CorpusPiece], width: int, seed: int = 0) -> None:
        self.corpus = corpus
        self.width = width
        starts, owners = [], []
        self.pieces = []
        for piece in pieces:
            frames = corpus.mel(piece).shape[1]
            if frames < width:
                continue
            grid = [s for s in piece.slices if s + width <= frames] or list(range(0, frames - width + 1, width))
            starts += grid
            owners += [len(self.pieces)] * len(grid)
            self.pieces.append(piece)
        if not self.pieces:
            raise InvalidInput(f"no piece has at least {width} frames")
        self._starts = np.asarray(starts, dtype=np.int64)
        self._owners = np.asarray(owners, dtype=np.int64)
        self._frames = np.array([corpus.mel(p).shape[1] for p in self.pieces], dtype=np.int64)
        self._labels = np.array([corpus.genre_index(p.genre) for p in self.pieces], dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Crops ``(batch_size, n_mels, width)`` float32 in [-1, 1] and their genre indices."""
        pick = self.rng.integers(0, self._starts.size, size=batch_size)
        owners = self._owners[pick]
        shift = self.rng.integers(-(self.width // 2), self.width // 2 + 1, size=batch_size)
        starts = np.clip(self._starts[pick] + shift, 0, self._frames[owners] - self.width)
        out = []
        for i, start in zip(owners, starts, strict=True):
            mel = self.corpus.mel(self.pieces[i])
            out.append(np.asarray(mel[:, start : start + self.width], dtype=np.float32))
        return normalize_db_crop(np.stack(out), self.corpus.mel_config), self._labels[owners]
