"""``CropTensor``: a split's mel frames in one tensor, cropped and normalised a batch at a time.

:class:`~encore.corpus.dataset.SpectrogramDataset` cuts one crop per ``__getitem__`` call in
numpy — fine for a CPU that trains a few samples a second, far too slow to keep a GPU busy.
A ``CropTensor`` holds every frame of the split's pieces in one float16 tensor ``(n_mels,
total_frames)`` on a device (the 10-hour corpus's training split is about 360 MB) and cuts a
whole batch with one gather: the same slices, the same offset rule (clipped to the piece) and
the same per-crop normalisation as the dataset (:func:`encore.audio.mel.normalize_db_crop`),
on the CPU or on the GPU alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from encore.errors import InvalidInput


class CropTensor:
    """The frames of some pieces and the slices to crop from them.

    Parameters
    ----------
    mels : sequence of arrays
        One ``(n_mels, frames)`` dB array per piece (float16 or float32).
    item_pieces, item_starts : arrays of int
        Per item: the index of its piece in ``mels`` and its start frame.
    width : int
        Crop width in frames.
    top_db : float
        Crops are normalised to their own maximum and clipped ``top_db`` below it.
    random_offset : bool
        Whether batches shift their crops by up to ``width // 2`` frames (training).
    device : torch.device or str
        Where the frames live and the crops are cut.
    """

    def __init__(
        self,
        mels: Sequence[np.ndarray],
        item_pieces: np.ndarray,
        item_starts: np.ndarray,
        *,
        width: int,
        top_db: float,
        random_offset: bool,
        device: Any = "cpu",
    ) -> None:
        import torch  # deferred: corpus modules import without torch

        if not mels:
            raise InvalidInput("no pieces to crop from")
        heights = {m.shape[0] for m in mels}
        if len(heights) != 1:
            raise InvalidInput(f"pieces have different numbers of mel bands: {sorted(heights)}")
        lengths = np.asarray([m.shape[1] for m in mels], dtype=np.int64)
        if int(lengths.min()) < width:
            raise InvalidInput(f"a piece is shorter than the crop width {width}")
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        pieces = np.asarray(item_pieces, dtype=np.int64)
        self.device = torch.device(device)
        self.width, self.top_db, self.random_offset = int(width), float(top_db), bool(random_offset)
        frames = np.concatenate([np.asarray(m, dtype=np.float16) for m in mels], axis=1)
        self.frames = torch.from_numpy(frames).to(self.device)
        # per item, on the CPU (indexing them is cheap; only the gather runs on the device)
        self.starts = torch.from_numpy(np.asarray(item_starts, dtype=np.int64))
        self.piece_offset = torch.from_numpy(offsets[pieces])
        self.piece_frames = torch.from_numpy(lengths[pieces])
        self._columns = torch.arange(self.width, device=self.device)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.frames.numel() * self.frames.element_size())

    def crops(self, index: Any, shifts: Any = None) -> Any:
        """Images ``(B, 1, n_mels, width)`` float32 in [-1, 1] on the device.

        ``index``: item numbers ``(B,)``; ``shifts``: frames to move each crop by (``(B,)``,
        None = the slices themselves), clipped so that the crop stays inside its piece.
        """
        import torch

        index = torch.as_tensor(index, dtype=torch.long).cpu()
        start = self.starts[index]
        if shifts is not None:
            start = start + torch.as_tensor(shifts, dtype=torch.long).cpu()
        start = torch.minimum(start.clamp_min(0), self.piece_frames[index] - self.width)
        first = (self.piece_offset[index] + start).to(self.device, non_blocking=True)
        columns = first[:, None] + self._columns[None, :]  # (B, width)
        db = self.frames[:, columns].permute(1, 0, 2).float()  # (B, n_mels, width)
        db = db - db.amax(dim=(1, 2), keepdim=True)
        db = db.clamp_min(-self.top_db)
        return ((db + self.top_db) * (2.0 / self.top_db) - 1.0)[:, None]
