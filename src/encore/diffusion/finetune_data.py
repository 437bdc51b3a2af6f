"""Data for fine-tuning: clip images, crops, samplers, fixed evaluation batches, replay sets.

Helpers of :mod:`encore.diffusion.finetune`: clips come as mel images of any width (a
clip is ~5.9 s ≈ 254 frames; the model trains on crops of its native width, 128 for the
base model); the replay set is a corpus ``SpectrogramDataset`` or, without a corpus, an
:class:`ImageSet` of the parent's own generations (:func:`parent_replay_set`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encore.diffusion import sampling
from encore.diffusion.folder import LoadedModel
from encore.diffusion.train import CropSampler, heldout_loss
from encore.diffusion.training import WeightedBatch, bf16_supported
from encore.diffusion.training.objectives import fixed_predictions, per_sample_mse
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)


def clip_tensor(image: Any, height: int) -> torch.Tensor:
    """A clip's mel image as ``(1, H, W)`` float32 in [-1, 1].

    Parameters
    ----------
    image : array or tensor
        uint8 grey levels ``(H, W)`` (as clips store them) or floats in [-1, 1] ``(H, W)`` /
        ``(1, H, W)``.
    height : int
        The model's mel bins; the image must have that many rows.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    x = x.float()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise InvalidInput(f"a clip image must be (H, W) or (1, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] != height:
        raise InvalidInput(f"a clip image has {x.shape[0]} mel bins; the model needs {height}")
    if not torch.isfinite(x).all():
        raise InvalidInput("a clip image contains NaN or infinite values")
    return x.clamp(-1.0, 1.0).unsqueeze(0).contiguous()


def pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    """Pad ``(1, H, W)`` on the right with silence (-1) up to ``width`` frames."""
    if x.shape[-1] >= width:
        return x
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]), value=-1.0)


class ClipSampler:
    """Crops of the training clips in shuffled epochs, from its own generator (checkpointable)."""

    def __init__(self, images: Sequence[torch.Tensor], weights: Sequence[float], width: int,
                 seed: int) -> None:
        self.images = [pad_to(x, width) for x in images]
        self.weights = torch.tensor(list(weights), dtype=torch.float32)
        self.width = width
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.pos = 0

    def next_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` crops ``(n, 1, H, width)`` and their weights ``(n,)``."""
        crops, idx = [], []
        for _ in range(n):
            if self.pos >= len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.gen).tolist()
                self.pos = 0
            i = self.order[self.pos]
            self.pos += 1
            x = self.images[i]
            off = int(torch.randint(0, x.shape[-1] - self.width + 1, (1,), generator=self.gen))
            crops.append(x[..., off : off + self.width])
            idx.append(i)
        return torch.stack(crops), self.weights[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "order": list(self.order), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.order = list(state["order"])
        self.pos = int(state["pos"])


class ClipReplayBatches:
    """The fine-tune's batch source: clip crops with their confidences, then replay crops.

    ``n_replay`` of every batch's crops come from ``replay`` (a dataset of random crops) with
    the weight ``replay_weight`` (the training clips' mean confidence), the rest from
    ``clips``.
    """

    def __init__(self, clips: ClipSampler, n_clip: int, replay: Any, n_replay: int, *,
                 seed: int, height: int, replay_weight: float) -> None:
        self.clips, self.n_clip, self.n_replay = clips, n_clip, n_replay
        self.replay = CropSampler(replay, n_replay, seed) if n_replay else None
        self.height, self.replay_weight = height, replay_weight

    def next_batch(self) -> WeightedBatch:
        x_clip, w_clip = self.clips.next_batch(self.n_clip)
        if self.replay is None:
            return WeightedBatch(x_clip, w_clip)
        x_rep = self.replay.next_batch().reshape(self.n_replay, 1, self.height, -1)
        if x_rep.shape[-1] != self.clips.width:
            raise InvalidInput(f"replay crops are {x_rep.shape[-1]} frames wide; the fine-tune uses {self.clips.width}")
        return WeightedBatch(torch.cat([x_clip, x_rep.float()]),
                             torch.cat([w_clip, torch.full((self.n_replay,), self.replay_weight)]))

    def state_dict(self) -> dict[str, Any]:
        return {"clip_sampler": self.clips.state_dict(),
                "replay_sampler": self.replay.state_dict() if self.replay is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clips.load_state_dict(state["clip_sampler"])
        if self.replay is not None and state.get("replay_sampler") is not None:
            self.replay.load_state_dict(state["replay_sampler"])


def fixed_clip_batch(
    images: Sequence[torch.Tensor], weights: Sequence[float], width: int, n: int,
    num_train_timesteps: int, seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Fixed crops (cycling over the clips), timesteps spread over [0, T), noise and weights.

    Uses its own generator: the global RNG streams are not touched.
    """
    if not images:
        return None
    g = torch.Generator().manual_seed(seed)
    padded = [pad_to(x, width) for x in images]
    crops, ws = [], []
    for k in range(n):
        i = k % len(padded)
        x = padded[i]
        off = int(torch.randint(0, x.shape[-1] - width + 1, (1,), generator=g))
        crops.append(x[..., off : off + width])
        ws.append(float(weights[i]))
    batch = torch.stack(crops)
    t = torch.linspace(0, num_train_timesteps - 1, n).round().long()[torch.randperm(n, generator=g)]
    noise = torch.randn(batch.shape, generator=g)
    return batch, t, noise, torch.tensor(ws)


@torch.no_grad()
def weighted_fixed_loss(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    noise_scheduler: Any,
    *,
    use_bf16: bool,
    chunk: int = 16,
) -> float:
    """Confidence-weighted ε-MSE of ``model`` on a :func:`fixed_clip_batch`.

    bf16 autocast applies to the CPU only (``amp_device="cpu"``, as this figure always had
    it): on a GPU it is computed in float32 while the replay loss beside it is in bf16.
    """
    images, t, noise, w = batch
    num, den = 0.0, 0.0
    for rows, pred, eps in fixed_predictions(model, images, t, noise, noise_scheduler,
                                             use_bf16=use_bf16, chunk=chunk, amp_device="cpu"):
        per = per_sample_mse(pred, eps).cpu()
        ww = w[rows]
        num += float((per * ww).sum())
        den += float(ww.sum())
    return num / den if den > 0 else float("nan")


class ImageSet:
    """A dataset of fixed images ``(N, 1, H, W)``: items ``(image, 0)``, random crops of ``width``."""

    def __init__(self, images: torch.Tensor, width: int, mel_config: Any = None) -> None:
        if images.ndim != 4 or images.shape[1] != 1:
            raise InvalidInput(f"expected images (N, 1, H, W), got shape {tuple(images.shape)}")
        self.images = images.float()
        self.width = width
        self.mel_config = mel_config

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = pad_to(self.images[i], self.width)
        off = int(torch.randint(0, x.shape[-1] - self.width + 1, (1,)))
        return x[..., off : off + self.width].clone(), 0


def parent_replay_set(
    parent: LoadedModel, *, n: int = 32, steps: int = 25, seed: int = 0,
    precision: str = "auto", width: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> ImageSet:
    """The replay fallback when no corpus is installed: ``n`` generations of the parent.

    Training on them pulls the fine-tuned model back towards what the parent generates (a
    cheap anchor in the spirit of a KL term); it is not real data, so it cannot undo a
    parent's own drift — see ``docs/finetune.md``.
    """
    width = width or parent.mel_config.x_res
    prec = "bf16" if precision == "auto" and bf16_supported() else ("fp32" if precision == "auto" else precision)
    chunks = []
    done = 0
    for start in range(0, n, 8):
        b = min(8, n - start)
        chunks.append(sampling.generate(parent, batch=b, width=width, seed=seed + start,
                                        steps=steps, precision=prec).images)
        done += b
        if progress is not None:
            progress(done / n)
    return ImageSet(torch.cat(chunks), width, parent.mel_config)


def data_fingerprint(images: Sequence[torch.Tensor], weights: Sequence[float]) -> str:
    h = hashlib.sha256()
    for x, w in zip(images, weights, strict=True):
        h.update(np.asarray(x.shape).tobytes())
        h.update(x.numpy().astype(np.float32).tobytes())
        h.update(np.float64(w).tobytes())
    return h.hexdigest()[:16]



@dataclass(frozen=True)
class EvalSets:
    """The fixed (crops, t, noise[, weights]) batches a fine-tune is evaluated on."""

    train: tuple[torch.Tensor, ...] | None
    heldout: tuple[torch.Tensor, ...] | None
    replay: tuple[torch.Tensor, ...] | None


def evaluate_sets(
    model: torch.nn.Module, sets: EvalSets, noise_scheduler: Any, *, use_bf16: bool
) -> dict[str, float | None]:
    """``train_clip_loss``, ``heldout_clip_loss`` (confidence-weighted) and ``replay_loss``."""
    return {
        "train_clip_loss": weighted_fixed_loss(model, sets.train, noise_scheduler, use_bf16=use_bf16)
        if sets.train else None,
        "heldout_clip_loss": weighted_fixed_loss(model, sets.heldout, noise_scheduler, use_bf16=use_bf16)
        if sets.heldout else None,
        "replay_loss": heldout_loss(model, sets.replay, noise_scheduler, use_bf16=use_bf16)
        if sets.replay else None,
    }
