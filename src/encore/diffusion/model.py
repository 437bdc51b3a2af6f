"""The denoiser: a diffusers ``UNet2DModel`` wrapped for mel-spectrogram images.

Every layout maps a noisy spectrogram ``(B, 1, H, W)`` in [-1, 1] and integer timesteps to the
predicted noise ε of the same shape (epsilon prediction, as audio-diffusion).

Layouts
-------
``"plain"``
    The UNet runs on the 1×H×W image itself: the audio-diffusion layout (e.g.
    ``teticio/audio-diffusion-256``). Any diffusers ``UNet2DModel`` folder with one input and
    one output channel loads into it.
``"unshuffle"``
    The image is folded by pixel-unshuffle ×2 (1×128×W → 4×64×W/2), the UNet runs at half the
    resolution (4× cheaper on a CPU, ``cpu_base_model.md`` §2), and its 4 output channels are
    unfolded by pixel-shuffle. Unshuffling alone leaves a 2×2 checkerboard (each of the four
    pixel phases is predicted by its own output channel, so their errors differ; §4), so a
    small full-resolution *head* follows the shuffle: two 3×3 convolutions over
    ``[ε_shuffled, x_t]`` whose output is added to ε (a residual branch whose last convolution
    starts at zero, so a fresh head is the identity). Its 3×3 kernels straddle the 2×2 blocks
    and can even out the phases. An optional 3×3 *stem* (``stem_channels > 0``) adds feature
    channels before the unshuffle; it is off by default because the UNet's first 3×3
    convolution at half resolution already sees a 6×6 full-resolution window.

Taste groups
------------
A *conditioned* denoiser's UNet has a class embedding (diffusers' ``num_class_embeds``,
``class_embed_type=None``) of ``k + 1`` rows: one per taste group and, last, the *null label*
(no group). diffusers adds the row to the timestep embedding (``emb = emb + class_emb``) before
any block sees it, so a zero row changes nothing: :func:`conditioned_denoiser` turns an
unconditioned parent into a conditioned child whose rows are all zero and which therefore
reproduces the parent exactly, whatever the label. ``forward`` without labels uses the null
label; an unconditioned denoiser refuses labels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from encore.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

Layout = Literal["plain", "unshuffle"]
LAYOUTS: tuple[str, ...] = ("plain", "unshuffle")

UNET_DIR = "unet"
HEAD_FILE = "head.safetensors"
META_FILE = "encore.json"


@dataclass(frozen=True)
class DenoiserConfig:
    """Everything needed to rebuild a :class:`SpectrogramDenoiser` (weights aside).

    Attributes
    ----------
    layout : {"plain", "unshuffle"}
    unet : dict
        Keyword arguments of ``diffusers.UNet2DModel``.
    stem_channels : int
        ``unshuffle`` only: channels of the 3×3 stem before the unshuffle (0 = no stem).
    head_channels : int
        ``unshuffle`` only: hidden channels of the full-resolution head (0 = no head).
    """

    layout: str
    unet: Mapping[str, Any] = field(default_factory=dict)
    stem_channels: int = 0
    head_channels: int = 16

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidInput(
                f"unknown denoiser layout {self.layout!r}; expected one of {LAYOUTS}"
            )
        if self.stem_channels < 0 or self.head_channels < 0:
            raise InvalidInput(
                f"stem_channels={self.stem_channels} and head_channels={self.head_channels} "
                "must be >= 0"
            )
        object.__setattr__(self, "unet", dict(self.unet))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unet"] = _jsonable(dict(self.unet))
        if self.layout == "plain":
            data.pop("stem_channels")
            data.pop("head_channels")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DenoiserConfig:
        known = {"layout", "unet", "stem_channels", "head_channels"}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Guidance:
    """Sample for taste group ``group`` with classifier-free guidance of weight ``scale``:
    ``ε = ε_null + scale · (ε_group − ε_null)`` (:func:`encore.diffusion.sampling.predict_noise`;
    ``scale = 1`` is the conditional prediction alone, one UNet call)."""

    group: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.group, bool) or not isinstance(self.group, int) or self.group < 0:
            raise InvalidInput(f"group={self.group!r} must be a whole number >= 0")
        if not (isinstance(self.scale, int | float) and 0.0 <= float(self.scale) < float("inf")):
            raise InvalidInput(f"guidance scale={self.scale!r} must be a finite number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "scale": float(self.scale)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def default_base_config() -> DenoiserConfig:
    """The shipped base model's architecture (``cpu_base_model.md`` model B, unshuffled).

    128 mel bins folded into 4×64×(W/2); block_out_channels (32, 64, 128, 128), one resnet
    per level, self-attention at the 3rd down / 2nd up level (and in the mid block), about
    4.3 M parameters plus a ~3 k-parameter head. Widths must be multiples of 16 (pixel
    unshuffle ×2, then three ×2 downsamplings).
    """
    return DenoiserConfig(
        layout="unshuffle",
        unet={
            "sample_size": (64, 64),
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (32, 64, 128, 128),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        stem_channels=0,
        head_channels=16,
    )


def tiny_config(layout: str = "unshuffle", *, height: int = 16) -> DenoiserConfig:
    """A ~12 k-parameter denoiser for tests (same code paths as the real one)."""
    channels = 4 if layout == "unshuffle" else 1
    side = height // 2 if layout == "unshuffle" else height
    return DenoiserConfig(
        layout=layout,
        unet={
            "sample_size": (side, side),
            "in_channels": channels,
            "out_channels": channels,
            "block_out_channels": (4, 8),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
            "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": 4,
            "norm_num_groups": 4,
        },
        stem_channels=0,
        head_channels=4,
    )


class SpectrogramDenoiser(nn.Module):
    """ε-prediction network over mel-spectrogram images.

    Parameters
    ----------
    config : DenoiserConfig
    unet : diffusers.UNet2DModel, optional
        A ready UNet (e.g. loaded from a folder); built from ``config.unet`` when omitted.
    """

    def __init__(self, config: DenoiserConfig, unet: nn.Module | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config
        self.unet = unet if unet is not None else UNet2DModel(**config.unet)
        ucfg = self.unet.config
        self.stem: nn.Module | None = None
        self.head: nn.Module | None = None
        if config.layout == "plain":
            if ucfg.in_channels != 1 or ucfg.out_channels != 1:
                raise InvalidInput(
                    f"plain layout needs a UNet with 1 input and 1 output channel, got "
                    f"in_channels={ucfg.in_channels}, out_channels={ucfg.out_channels}"
                )
        else:
            expected_in = 4 * max(config.stem_channels, 1)
            if ucfg.in_channels != expected_in or ucfg.out_channels != 4:
                raise InvalidInput(
                    f"unshuffle layout with stem_channels={config.stem_channels} needs a UNet "
                    f"with in_channels={expected_in} and out_channels=4, got "
                    f"in_channels={ucfg.in_channels}, out_channels={ucfg.out_channels}"
                )
            if config.stem_channels > 0:
                self.stem = nn.Sequential(
                    nn.Conv2d(1, config.stem_channels, 3, padding=1), nn.SiLU()
                )
            if config.head_channels > 0:
                last = nn.Conv2d(config.head_channels, 1, 3, padding=1)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                self.head = nn.Sequential(
                    nn.Conv2d(2, config.head_channels, 3, padding=1), nn.SiLU(), last
                )

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        layout: str | DenoiserConfig,
        unet_kwargs: Mapping[str, Any] | None = None,
        **options: int,
    ) -> SpectrogramDenoiser:
        """Build a randomly initialised denoiser.

        ``from_config("unshuffle", {...unet kwargs...}, head_channels=16)`` or
        ``from_config(default_base_config())``.
        """
        if isinstance(layout, DenoiserConfig):
            return cls(layout)
        return cls(DenoiserConfig(layout=layout, unet=dict(unet_kwargs or {}), **options))

    # -- geometry --------------------------------------------------------------------------

    @property
    def width_multiple(self) -> int:
        """Image heights and widths must be multiples of this (2**downsamplings, ×2 unshuffle)."""
        levels = len(self.unet.config.block_out_channels) - 1
        return (2**levels) * (2 if self.config.layout == "unshuffle" else 1)

    @property
    def sample_height(self) -> int:
        """The image height (mel bins) the UNet was configured for."""
        size = self.unet.config.sample_size
        h = size if isinstance(size, int) else size[0]
        return int(h) * (2 if self.config.layout == "unshuffle" else 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- taste groups ----------------------------------------------------------------------

    @property
    def num_groups(self) -> int:
        """Taste groups the UNet is conditioned on (0: an unconditioned denoiser)."""
        n = self.unet.config.get("num_class_embeds")
        if not n or self.unet.config.get("class_embed_type") is not None:
            return 0
        return int(n) - 1

    @property
    def null_label(self) -> int | None:
        """The class label meaning "no group" (``num_groups``); None when unconditioned."""
        return self.num_groups if self.num_groups else None

    def _labels(self, labels: torch.Tensor | int | None, batch: int,
                device: torch.device) -> torch.Tensor | None:
        k = self.num_groups
        if k == 0:
            if labels is not None:
                raise InvalidInput("this denoiser is not conditioned on taste groups; it takes no labels")
            return None
        if labels is None:
            return torch.full((batch,), k, dtype=torch.long, device=device)
        out = torch.as_tensor(labels, device=device).long().reshape(-1)
        if out.numel() == 1:
            out = out.expand(batch)
        if out.shape[0] != batch:
            raise InvalidInput(f"{out.shape[0]} group labels for a batch of {batch}")
        if bool(((out < 0) | (out > k)).any()):
            raise InvalidInput(f"group labels must lie in [0, {k}] ({k} = no group), got {out.tolist()}")
        return out

    # -- forward ---------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor | int,
        class_labels: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Predict the noise.

        Parameters
        ----------
        sample : torch.Tensor
            ``(B, 1, H, W)`` noisy spectrograms (model scale, [-1, 1] for clean images).
            H and W must be multiples of :attr:`width_multiple`.
        timesteps : torch.Tensor or int
            Training-schedule timesteps, a scalar or ``(B,)``.
        class_labels : torch.Tensor or int, optional
            Conditioned denoisers only: taste group per item (``(B,)`` or one for all) in
            ``[0, num_groups]``; None is the null label (``num_groups``).

        Returns
        -------
        torch.Tensor
            ε, ``(B, 1, H, W)``.
        """
        if sample.ndim != 4 or sample.shape[1] != 1:
            raise InvalidInput(f"expected a (B, 1, H, W) sample, got shape {tuple(sample.shape)}")
        m = self.width_multiple
        if sample.shape[2] % m or sample.shape[3] % m:
            raise InvalidInput(
                f"sample height and width {tuple(sample.shape[2:])} must be multiples of {m}"
            )
        labels = self._labels(class_labels, sample.shape[0], sample.device)
        if self.config.layout == "plain":
            return self.unet(sample, timesteps, class_labels=labels).sample
        x = self.stem(sample) if self.stem is not None else sample
        eps = F.pixel_shuffle(
            self.unet(F.pixel_unshuffle(x, 2), timesteps, class_labels=labels).sample, 2
        )
        if self.head is not None:
            eps = eps + self.head(torch.cat([eps, sample.to(eps.dtype)], dim=1))
        return eps

    # -- persistence -----------------------------------------------------------------------

    def extra_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights outside the UNet (stem, head), keyed ``stem.*`` / ``head.*``."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("unet.")}

    def save(self, directory: str | Path, *, dtype: torch.dtype | None = None) -> None:
        """Write ``unet/`` (safetensors), ``head.safetensors`` and the layout into ``directory``.

        The layout is merged into ``encore.json`` (created if missing), so a folder saved by
        this method alone loads back with :meth:`load`.

        Parameters
        ----------
        directory : path
        dtype : torch.dtype, optional
            Store weights in this dtype (e.g. ``torch.float16`` for a shipped model); the
            in-memory model is not changed.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        unet = self.unet
        if dtype is not None and dtype != self.dtype:
            import copy

            unet = copy.deepcopy(self.unet).to(dtype)
        unet.save_pretrained(directory / UNET_DIR, safe_serialization=True)
        extra = self.extra_state_dict()
        if extra:
            tensors = {
                k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous()
                for k, v in extra.items()
            }
            save_file(tensors, str(directory / HEAD_FILE), metadata={"format": "pt"})
        meta_path = directory / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta["layout"] = self.config.layout
        meta["denoiser"] = {
            k: v for k, v in self.config.to_dict().items() if k not in ("layout", "unet")
        }
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(
        cls, directory: str | Path, *, device: torch.device | str | None = None
    ) -> SpectrogramDenoiser:
        """Load a denoiser saved by :meth:`save`, or a plain diffusers ``UNet2DModel`` folder.

        Weights are always loaded as float32 (fp16 shipped weights are upcast).

        Raises
        ------
        NotFound
            If ``directory`` holds no ``unet/`` (or is itself not a UNet folder).
        """
        from diffusers import UNet2DModel

        directory = Path(directory)
        unet_dir = directory / UNET_DIR
        if not (unet_dir / "config.json").is_file():
            if (directory / "config.json").is_file():
                unet_dir = directory  # a bare UNet2DModel folder
            else:
                raise NotFound(f"no UNet in {directory} (expected {unet_dir / 'config.json'})")
        meta_path = directory / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        layout = meta.get("layout", "plain")
        options = dict(meta.get("denoiser", {}))
        # low_cpu_mem_usage=False is what diffusers falls back to without `accelerate`; asking
        # for it spares every load a five-line warning that recommends installing accelerate
        unet = UNet2DModel.from_pretrained(unet_dir, torch_dtype=torch.float32,
                                           low_cpu_mem_usage=False)
        unet_cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
        config = DenoiserConfig(layout=layout, unet=unet_cfg, **options)
        model = cls(config, unet=unet)
        head_path = directory / HEAD_FILE
        if model.extra_state_dict():
            if not head_path.is_file():
                raise NotFound(f"layout {layout!r} needs {head_path}, which is missing")
            from safetensors.torch import load_file

            tensors = {k: v.float() for k, v in load_file(str(head_path)).items()}
            missing, unexpected = model.load_state_dict(tensors, strict=False)
            missing = [k for k in missing if not k.startswith("unet.")]
            if missing or unexpected:
                raise InvalidInput(
                    f"{head_path} does not match layout {layout!r}: missing {missing}, "
                    f"unexpected {unexpected}"
                )
        model.eval()
        if device is not None:
            model.to(device)
        logger.info(
            "loaded %s denoiser from %s (%.2f M parameters)",
            layout,
            directory,
            model.num_parameters() / 1e6,
        )
        return model


def conditioned_denoiser(parent: SpectrogramDenoiser, num_groups: int) -> SpectrogramDenoiser:
    """A copy of ``parent`` whose UNet also takes a taste group (module docstring).

    The UNet gets ``num_groups + 1`` class embeddings (the last is the null label); every other
    weight is copied. The new rows start as the parent's null row — zero for an unconditioned
    parent — so the child's output equals the parent's (unconditioned) output for every label
    until it is trained. ``parent`` is not changed; the child has its device, dtype and mode.

    Raises
    ------
    InvalidInput
        ``num_groups`` below 1.
    """
    if not isinstance(num_groups, int) or num_groups < 1:
        raise InvalidInput(f"num_groups={num_groups!r} must be a whole number >= 1")
    unet_kwargs = {**dict(parent.config.unet), "num_class_embeds": num_groups + 1,
                   "class_embed_type": None}
    config = DenoiserConfig(layout=parent.config.layout, unet=unet_kwargs,
                            stem_channels=parent.config.stem_channels,
                            head_channels=parent.config.head_channels)
    with torch.random.fork_rng(devices=[]):  # the fresh weights are all overwritten
        child = SpectrogramDenoiser(config)
    state = {k: v for k, v in parent.state_dict().items() if k != "unet.class_embedding.weight"}
    missing, unexpected = child.load_state_dict(state, strict=False)
    if missing != ["unet.class_embedding.weight"] or unexpected:
        raise InvalidInput(f"cannot condition this denoiser: missing {missing}, unexpected {unexpected}")
    embedding = child.unet.class_embedding
    assert embedding is not None
    with torch.no_grad():
        if parent.num_groups:
            null = parent.unet.class_embedding.weight[parent.num_groups]
            embedding.weight.copy_(null.expand_as(embedding.weight))
        else:
            embedding.weight.zero_()
    return child.to(device=parent.device, dtype=parent.dtype).train(parent.training)
