"""``SpectrogramDataset``: training crops from a corpus folder, as torch tensors.

Items are the manifest's slices (non-silent ``x_res``-frame windows). A crop is normalised
to its own maximum, clipped at ``-top_db`` and mapped linearly to [-1, 1] — the per-slice
normalisation of audio-diffusion (:func:`encore.audio.mel.normalize_db_crop`), without its
uint8 rounding. The mel arrays are memory-mapped, so the dataset's memory stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encore.audio.mel import MelConfig, normalize_db_crop
from encore.corpus.crops import CropTensor
from encore.corpus.manifest import PieceRecord, load_manifest
from encore.errors import InvalidInput

TRAIN_SPLIT = "train"


class SpectrogramDataset:
    """Map-style torch dataset over the slices of one split of a corpus.

    Parameters
    ----------
    corpus_dir : path
        A folder written by ``encore corpus build``.
    split : str
        ``"train"`` or ``"heldout"`` (any split named in the manifest).
    width : int
        Crop width in frames (128 = 2.97 s at 22 050 Hz, hop 512).
    seed : int
        Seeds the random crop offsets (a private ``torch.Generator``; its state is in
        :meth:`state_dict` so that training resumes exactly).
    genres : sequence of str, optional
        Keep only these genres, and number them in this order. Default: every genre of
        the manifest (all splits), sorted, so train and held-out share the numbering.
    random_offset : bool, optional
        Shift each crop by a random offset of up to ``width // 2`` frames either way
        (clipped to the piece) for augmentation. Default: on for ``"train"``, off otherwise
        (held-out crops are then fixed: exactly the manifest's slices).

    Attributes
    ----------
    genres : list of str
        Genre names; an item's label indexes this list.
    mel_config : MelConfig
        The corpus's spectrogram settings (``mel_config.json``).
    pieces : list of PieceRecord
        Pieces of the split (with at least one slice of ``width`` frames).

    Notes
    -----
    ``dataset[i]`` returns ``(image, genre_index)``: ``image`` float32 tensor
    ``(1, n_mels, width)`` in [-1, 1] with maximum exactly 1, ``genre_index`` an int.
    """

    def __init__(
        self,
        corpus_dir: str | Path,
        *,
        split: str = TRAIN_SPLIT,
        width: int = 128,
        seed: int = 0,
        genres: Sequence[str] | None = None,
        random_offset: bool | None = None,
    ) -> None:
        import torch

        self.root = Path(corpus_dir)
        self.split = split
        self.width = int(width)
        if self.width <= 0:
            raise InvalidInput(f"width={width!r} must be a positive number of frames")
        self.seed = int(seed)
        self.mel_config = MelConfig.load(self.root)
        records = load_manifest(self.root)
        all_genres = sorted({r.genre for r in records})
        if genres is None:
            self.genres = all_genres
        else:
            unknown = [g for g in genres if g not in all_genres]
            if unknown:
                raise InvalidInput(f"genre(s) {unknown} not in corpus {self.root} ({all_genres})")
            self.genres = list(dict.fromkeys(genres))
        self._genre_index = {g: i for i, g in enumerate(self.genres)}
        self.random_offset = (split == TRAIN_SPLIT) if random_offset is None else bool(random_offset)

        self.pieces: list[PieceRecord] = []
        piece_of: list[int] = []
        starts: list[int] = []
        for record in records:
            if record.split != split or record.genre not in self._genre_index:
                continue
            usable = [s for s in record.slices if s + self.width <= record.n_frames]
            if not usable and record.n_frames >= self.width:
                usable = [0]
            if not usable:
                continue
            self.pieces.append(record)
            piece_of.extend([len(self.pieces) - 1] * len(usable))
            starts.extend(usable)
        self._piece_of = np.asarray(piece_of, dtype=np.int64)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._mels: dict[int, np.ndarray] = {}
        self._generator = torch.Generator().manual_seed(self.seed)
        self._worker_id: int | None = None

    # --- torch Dataset protocol -------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        index = int(index) % len(self)
        p = int(self._piece_of[index])
        record = self.pieces[p]
        mel = self._mel(p)
        n_frames = mel.shape[1]
        start = int(self._starts[index])
        if self.random_offset:
            half = self.width // 2
            shift = int(torch.randint(-half, half + 1, (1,), generator=self._gen()).item())
            start = min(max(0, start + shift), n_frames - self.width)
        crop = np.asarray(mel[:, start : start + self.width], dtype=np.float32)
        image = normalize_db_crop(crop, self.mel_config)
        return torch.from_numpy(image[None, :, :].copy()), self._genre_index[record.genre]

    # --- helpers ------------------------------------------------------------------------

    def genre_of(self, index: int) -> str:
        """Genre name of item ``index``."""
        return self.pieces[int(self._piece_of[index])].genre

    def slice_start(self, index: int) -> tuple[str, int]:
        """``(piece_id, start frame)`` of item ``index`` before any random offset."""
        return self.pieces[int(self._piece_of[index])].piece_id, int(self._starts[index])

    def crop_tensor(self, device: Any = "cpu") -> CropTensor:
        """This split's frames in one tensor on ``device``, cropped a batch at a time the
        way :meth:`__getitem__` crops one item (:class:`~encore.corpus.crops.CropTensor`)."""
        return CropTensor([self._mel(p) for p in range(len(self.pieces))], self._piece_of,
                          self._starts, width=self.width, top_db=self.mel_config.top_db,
                          random_offset=self.random_offset, device=device)

    def state_dict(self) -> dict[str, Any]:
        """The crop generator's state (checkpointed by the trainer)."""
        return {"generator": self._generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])

    def _gen(self) -> Any:
        # In DataLoader worker processes each worker gets its own stream.
        import torch

        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_id != info.id:
            self._worker_id = info.id
            self._generator = torch.Generator().manual_seed(self.seed * 1_000_003 + info.id + 1)
        return self._generator

    def _mel(self, p: int) -> np.ndarray:
        mel = self._mels.get(p)
        if mel is None:
            path = self.root / self.pieces[p].mel
            try:
                mel = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"cannot read mel {path}: {exc}") from exc
            self._mels[p] = mel
        return mel

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each worker process; the generator travels as state.
        state = self.__dict__.copy()
        state["_mels"] = {}
        state["_generator"] = self._generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import torch

        generator = torch.Generator()
        generator.set_state(state.pop("_generator"))
        self.__dict__.update(state)
        self._generator = generator
