"""``encore finetune`` and ``encore versions`` on a configured installation (env settings)."""

from __future__ import annotations

from pathlib import Path

import torch

from encore import cli
from encore.services import versions

from .finetune_helpers import add_dataset_clips


def test_finetune_wait_then_versions_activate_weight_and_import(installation, capsys, tmp_path) -> None:
    ctx = installation
    add_dataset_clips(ctx, [0.9, 0.6, 0.8], [1.0, 0.5, 0.8])
    assert cli.main(["finetune", "--wait", "--steps", "3", "--top-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning run 1: v0 on 2 clips" in out
    assert "run 1: done (100%) — v0 → v1, 2 clips" in out
    assert "train_clip_loss" in out and "no evaluation: no corpus configured" in out
    # no rating yet: the child could not be gated, stays a draft, and the CLI says why
    assert "gate FAILED: could not be gated: no counted rating" in out
    assert cli.main(["versions", "activate", "v1", "--weight", "3"]) == 2
    err = capsys.readouterr().err
    assert "v1 failed its gate against its parent (could not be gated" in err and "--force" in err
    assert cli.main(["versions", "list"]) == 0
    assert "gate FAILED: could not be gated" in capsys.readouterr().out
    assert cli.main(["versions", "gate", "v1"]) == 1  # rerun: same verdict, exit 1
    assert "v1 vs v0: gate FAILED" in capsys.readouterr().out

    assert cli.main(["versions", "activate", "v1", "--weight", "3", "--force"]) == 0
    assert cli.main(["versions", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("v")}
    assert lines["v0"].split()[1:4] == ["active", "1.00", "25%"]
    assert lines["v1"].split()[1:5] == ["active", "3.00", "75%", "v0"]

    assert cli.main(["versions", "weight", "v0", "0"]) == 0
    assert cli.main(["versions", "retire", "v1"]) == 2  # the only version still served
    assert "only active version" in capsys.readouterr().err

    # an audio-diffusion-layout folder (unet/, mel/mel_config.json, DDPM scheduler) imports
    from diffusers import DDPMScheduler

    from encore.diffusion.folder import load_model_folder

    base = load_model_folder(ctx.settings.base_model_dir, device="cpu")
    external = tmp_path / "audio-diffusion-tiny"
    base.denoiser.unet.save_pretrained(external / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(external / "scheduler")
    (external / "mel").mkdir()
    base.mel_config.replace(x_res=16).save(external / "mel")
    # the tiny base model is unshuffled; the import reads the layout from the folder, so a
    # plain UNet with 4 channels is not a valid audio-diffusion model and is refused
    assert cli.main(["versions", "import", str(external)]) == 2
    assert "plain layout needs a UNet with 1 input" in capsys.readouterr().err
    from encore.diffusion.folder import build_random_model
    from encore.diffusion.model import tiny_config

    plain = build_random_model(tiny_config("plain", height=16), base.mel_config, seed=3)
    plain.denoiser.unet.save_pretrained(external / "unet")
    assert cli.main(["versions", "import", str(external)]) == 0
    assert "as v2 (draft)" in capsys.readouterr().out
    v2 = versions.version_by_name(ctx, "v2")
    assert v2.folder.startswith("blob:models/")  # the files went to the blob store
    assert load_model_folder(versions.local_folder(ctx, v2), device="cpu").denoiser.config.layout == "plain"


def test_finetune_without_wait_queues_a_job(installation, capsys) -> None:
    ctx = installation
    add_dataset_clips(ctx, [0.9], [1.0])
    assert cli.main(["finetune", "--parent", "v0", "--steps", "2"]) == 0
    assert "queued on the training queue" in capsys.readouterr().out
    assert cli.main(["finetune", "--status", "1"]) == 0
    assert "run 1: queued (0%) — v0 → -, 1 clips" in capsys.readouterr().out
    assert cli.main(["finetune", "--parent", "v0"]) == 2
    assert "already queued or running" in capsys.readouterr().err


def test_finetune_wait_under_torchrun_trains_what_one_process_trains(installation, capsys) -> None:
    """``torchrun --nproc_per_node 2 encore finetune --wait``: one run, made and published by rank
    0, whose weights are the single-process run's on the same clips and settings."""
    import os
    import subprocess
    import sys

    from encore.diffusion.folder import load_model_folder

    ctx = installation
    add_dataset_clips(ctx, [0.9, 0.6, 0.8, 0.7], [1.0, 0.5, 0.8, 0.9])
    args = ["finetune", "--wait", "--steps", "3", "--top-n", "4", "--parent", "v0", "--seed", "2", "--lr", "3e-3"]
    assert cli.main(args) == 0
    assert "run 1: done (100%) — v0 → v1" in capsys.readouterr().out
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "encore.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("fine-tuning run 2: v0 on 4 clips") == 1  # rank 0 alone makes the run
    assert "run 2: done (100%) — v0 → v2" in done.stdout
    assert [v.name for v in versions.list_versions(ctx)] == ["v0", "v1", "v2"]
    parent, one, two = (
        load_model_folder(versions.local_folder(ctx, versions.version_by_name(ctx, name)), device="cpu").denoiser
        for name in ("v0", "v1", "v2"))
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 300, 600, 950])
    with torch.no_grad():
        start, ref, out = parent(x, t), one(x, t), two(x, t)
    # the CPU here computes in bf16 (precision "auto"): per-row round-off differs with the rows a
    # process holds, so "equal" is within bf16 round-off, far below what the fine-tune moved
    moved, apart = float((ref - start).abs().max()), float((out - ref).abs().max())
    assert moved > 1e-2 and apart < 0.05 * moved
