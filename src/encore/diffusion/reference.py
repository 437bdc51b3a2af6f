"""diffusers' own DDIM sampler run on an encore model: the reference our loop is checked against.

:func:`diffusers_generate` runs :class:`diffusers.DDIMPipeline` unchanged. For the ``plain``
layout the pipeline gets the model's ``UNet2DModel`` itself; for other layouts it gets a thin
adapter that presents the :class:`~encore.diffusion.model.SpectrogramDenoiser` with the
attributes the pipeline reads (``config.sample_size``, ``config.in_channels``, ``dtype``,
``forward(x, t).sample``), so that the pipeline's loop, noise and scheduler calls are used as
they are.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from encore.diffusion.folder import LoadedModel


class _DenoiserAsUNet(nn.Module):
    """Presents a SpectrogramDenoiser as a UNet2DModel to DDIMPipeline."""

    def __init__(self, denoiser: nn.Module, height: int, width: int) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.config = SimpleNamespace(sample_size=(height, width), in_channels=1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def forward(self, sample: torch.Tensor, timestep: Any) -> SimpleNamespace:
        return SimpleNamespace(sample=self.denoiser(sample, timestep))


@torch.inference_mode()
def diffusers_generate(
    model: LoadedModel,
    *,
    batch: int = 1,
    width: int | None = None,
    seed: int = 0,
    steps: int = 50,
    eta: float = 0.0,
) -> torch.Tensor:
    """Images from ``DDIMPipeline`` with one ``torch.Generator`` seeded ``seed``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` in [-1, 1] (the pipeline's [0, 1] output mapped back), on the CPU.
        For ``batch == 1`` this equals ``encore.diffusion.sampling.generate(seed=seed)``.
    """
    from diffusers import DDIMPipeline, DDIMScheduler

    height = model.mel_config.y_res
    width = int(width if width is not None else model.mel_config.x_res)
    denoiser = model.denoiser
    if denoiser.config.layout == "plain" and tuple(_size(denoiser.unet.config.sample_size)) == (
        height,
        width,
    ):
        unet: nn.Module = denoiser.unet
    else:
        unet = _DenoiserAsUNet(denoiser, height, width)
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        batch_size=batch,
        generator=torch.Generator(device="cpu").manual_seed(seed),
        eta=eta,
        num_inference_steps=steps,
        output_type="pt",
    ).images
    if out.shape[-1] == 1 and out.ndim == 4 and out.shape[1] != 1:  # numpy-style NHWC
        out = out.permute(0, 3, 1, 2)
    return (out.float().cpu() * 2 - 1).clamp(-1, 1)


def _size(size: Any) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
