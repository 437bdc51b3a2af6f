"""The denoiser wrapper and model folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from encore.audio.mel import MelConfig
from encore.diffusion.folder import (
    LoadedModel,
    load_model_folder,
    save_model_folder,
    update_model_meta,
)
from encore.diffusion.model import (
    SpectrogramDenoiser,
    default_base_config,
    tiny_config,
)
from encore.errors import InvalidInput, NotFound

MakeTiny = Callable[..., LoadedModel]
H = 16  # tiny models have 16 mel bins


def _eps(model: SpectrogramDenoiser, seed: int = 1, width: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, H, width, generator=g)
    with torch.inference_mode():
        return model(x, torch.tensor([10, 700]))


def test_default_base_config_is_model_b_sized() -> None:
    model = SpectrogramDenoiser.from_config(default_base_config())
    assert 4.0e6 < model.num_parameters() < 4.8e6
    assert model.width_multiple == 16
    assert model.sample_height == 128


@pytest.mark.parametrize("layout", ["plain", "unshuffle"])
def test_forward_keeps_shape_and_any_width_multiple(layout: str, make_tiny: MakeTiny) -> None:
    model = make_tiny(layout).denoiser
    for width in (model.width_multiple, 3 * model.width_multiple):
        assert _eps(model, width=width).shape == (2, 1, H, width)


def test_forward_rejects_width_off_the_multiple(make_tiny: MakeTiny) -> None:
    model = make_tiny("unshuffle").denoiser
    with pytest.raises(InvalidInput, match=r"\(16, 18\)"):
        model(torch.zeros(1, 1, 16, 18), 5)


def test_fresh_head_is_identity() -> None:
    torch.manual_seed(3)
    model = SpectrogramDenoiser.from_config(tiny_config("unshuffle")).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        direct = F.pixel_shuffle(model.unet(F.pixel_unshuffle(x, 2), 7).sample, 2)
        assert torch.equal(model(x, 7), direct)


def test_head_mixes_across_2x2_blocks(make_tiny: MakeTiny) -> None:
    """A perturbation of one pixel changes the head's output in the neighbouring 2×2 block."""
    model = make_tiny("unshuffle").denoiser
    x = torch.zeros(1, 1, 16, 16)
    y = x.clone()
    y[0, 0, 5, 5] = 1.0  # pixel (5,5) belongs to block (2,2); (5,6) to block (2,3)
    with torch.inference_mode():
        hx = model.head(torch.cat([torch.zeros_like(x), x], 1))
        hy = model.head(torch.cat([torch.zeros_like(y), y], 1))
    assert (hx - hy)[0, 0, 5, 6].abs() > 0


def test_layout_rejects_mismatched_unet() -> None:
    cfg = tiny_config("plain")
    with pytest.raises(InvalidInput, match="in_channels=4"):
        SpectrogramDenoiser.from_config("unshuffle", cfg.unet)


@pytest.mark.parametrize("layout", ["plain", "unshuffle"])
def test_folder_round_trip_is_exact_in_fp32(
    tmp_path: Path, layout: str, make_tiny: MakeTiny
) -> None:
    model = make_tiny(layout)
    out = save_model_folder(
        tmp_path / "m",
        model.denoiser,
        model.mel_config,
        scheduler=model.scheduler,
        name="v7",
        parent="v6",
        training={"steps": 12},
        metrics={"fd": 1.5},
    )
    loaded = load_model_folder(out, device="cpu")
    assert torch.equal(_eps(loaded.denoiser), _eps(model.denoiser))
    assert loaded.mel_config == model.mel_config
    assert loaded.meta["name"] == "v7" and loaded.meta["parent"] == "v6"
    assert loaded.meta["layout"] == layout
    assert loaded.meta["training"] == {"steps": 12}
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    assert torch.equal(loaded.scheduler.alphas_cumprod, model.scheduler.alphas_cumprod)
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_fp16_folder_loads_as_fp32_close_to_original(tmp_path: Path, make_tiny: MakeTiny) -> None:
    model = make_tiny("unshuffle")
    out = save_model_folder(tmp_path / "m", model.denoiser, model.mel_config, dtype=torch.float16)
    loaded = load_model_folder(out, device="cpu")
    assert loaded.denoiser.dtype == torch.float32
    assert torch.allclose(_eps(loaded.denoiser), _eps(model.denoiser), atol=5e-3)
    # the model in memory was not cast
    assert model.denoiser.dtype == torch.float32


def test_save_overwrites_atomically_and_leaves_no_temporaries(
    tmp_path: Path, make_tiny: MakeTiny
) -> None:
    a, b = make_tiny(seed=1), make_tiny(seed=2)
    target = tmp_path / "m"
    save_model_folder(target, a.denoiser, a.mel_config, name="a", extra_files={"README.md": "A"})
    save_model_folder(target, b.denoiser, b.mel_config, name="b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    loaded = load_model_folder(target, device="cpu")
    assert loaded.meta["name"] == "b"
    assert not (target / "README.md").exists()
    assert torch.equal(_eps(loaded.denoiser), _eps(b.denoiser))


def test_failed_save_keeps_the_old_folder(tmp_path: Path, make_tiny: MakeTiny) -> None:
    a = make_tiny(seed=1)
    target = tmp_path / "m"
    save_model_folder(target, a.denoiser, a.mel_config, name="a")
    with pytest.raises(InvalidInput, match="escapes"):
        save_model_folder(target, a.denoiser, a.mel_config, name="b", extra_files={"../x": "no"})
    assert json.loads((target / "encore.json").read_text())["name"] == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_update_model_meta(tmp_path: Path, make_tiny: MakeTiny) -> None:
    a = make_tiny()
    target = save_model_folder(tmp_path / "m", a.denoiser, a.mel_config)
    update_model_meta(target, metrics={"score": 0.3})
    assert load_model_folder(target, device="cpu").meta["metrics"] == {"score": 0.3}


def test_bare_unet_folder_loads_as_plain(tmp_path: Path, make_tiny: MakeTiny) -> None:
    model = make_tiny("plain")
    model.denoiser.unet.save_pretrained(tmp_path / "unet")
    MelConfig(x_res=16, y_res=16).save(tmp_path / "mel")
    loaded = load_model_folder(tmp_path, device="cpu")
    assert loaded.denoiser.config.layout == "plain"
    assert torch.equal(_eps(loaded.denoiser), _eps(model.denoiser))


def test_missing_folder_and_parts_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nowhere"):
        load_model_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="mel_config.json"):
        load_model_folder(tmp_path / "empty")
    MelConfig().save(tmp_path / "empty")
    with pytest.raises(NotFound, match="unet"):
        load_model_folder(tmp_path / "empty")


@pytest.mark.parametrize("steps", [10, 25, 50])
def test_default_schedule_never_samples_where_the_image_is_gone(steps: int) -> None:
    # With cosine betas, alpha-bar at t = 999 is 2.4e-9: a schedule that starts there
    # ("trailing" spacing) makes the last DDIM inversion step destroy the image, so that
    # inversion (and merges) reconstruct nothing. encore's own schedule must not reach it.
    from encore.diffusion.folder import default_scheduler

    scheduler = default_scheduler()
    scheduler.set_timesteps(steps)
    first = int(scheduler.timesteps.max())
    assert float(scheduler.alphas_cumprod[first]) > 1e-4, (first, steps)
