"""Loading an audio-diffusion model folder (the teticio/audio-diffusion-256 layout)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from encore.diffusion.folder import load_model_folder
from encore.diffusion.sampling import generate

# unet/config.json of teticio/audio-diffusion-256 (audio_diffusion.md §1.5)
AUDIO_DIFFUSION_256_UNET = {
    "_class_name": "UNet2DModel",
    "_diffusers_version": "0.8.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "center_input_sample": False,
    "down_block_types": [
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 1,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 1,
    "sample_size": 256,
    "time_embedding_type": "positional",
    "up_block_types": [
        "UpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    ],
}
SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.8.0.dev0",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_small",
}
MEL = {
    "_class_name": "Mel",
    "hop_length": 512,
    "n_fft": 2048,
    "n_iter": 32,
    "sample_rate": 22050,
    "top_db": 80,
    "x_res": 256,
    "y_res": 256,
}


def _write_audio_diffusion_folder(root: Path) -> Path:
    from diffusers import UNet2DModel

    config = {k: v for k, v in AUDIO_DIFFUSION_256_UNET.items() if not k.startswith("_")}
    torch.manual_seed(0)
    unet = UNet2DModel(**config)
    unet.save_pretrained(root / "unet")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (root / "mel").mkdir()
    (root / "mel" / "mel_config.json").write_text(json.dumps(MEL))
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "AudioDiffusionPipeline",
                "mel": ["diffusers", "Mel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
                "unet": ["diffusers", "UNet2DModel"],
            }
        )
    )
    return root


def test_audio_diffusion_256_folder_loads_with_ddim_and_runs(tmp_path: Path) -> None:
    from diffusers import DDIMScheduler, DDPMScheduler

    folder = _write_audio_diffusion_folder(tmp_path / "audio-diffusion-256")
    model = load_model_folder(folder, device="cpu")

    assert model.denoiser.config.layout == "plain"
    assert model.denoiser.num_parameters() == 113_668_609
    assert model.mel_config.y_res == 256 and model.mel_config.x_res == 256
    assert model.mel_config.slice_samples == 256 * 512 - 1
    # DDPM swapped for DDIM with the same betas
    assert type(model.scheduler) is DDIMScheduler
    ddpm = DDPMScheduler.from_config(SCHEDULER)
    assert torch.equal(model.scheduler.betas, ddpm.betas)
    assert model.scheduler.config.clip_sample is True
    assert model.meta == {}

    # Two DDIM steps through the engine at a reduced size (64×64; the full 256×256 forward
    # takes ~4 s on 2 CPU cores): the convolutional UNet runs at any multiple of 32.
    small = dataclasses.replace(model, mel_config=model.mel_config.replace(x_res=64, y_res=64))
    out = generate(small, width=64, seed=0, steps=2)
    assert out.images.shape == (1, 1, 64, 64)
    assert torch.isfinite(out.images).all()
    assert model.denoiser.width_multiple == 32
