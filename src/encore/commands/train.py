"""``encore train <what>``: the training commands.

``encore train base`` trains a diffusion model from scratch on a corpus; ``encore train
similarity`` (:mod:`encore.commands.train_similarity`) the similarity model. Another
``encore train <what>`` is a module with ``register(group)`` added to :data:`EXTENSIONS`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from encore.commands import train_similarity
from encore.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

# Modules that add sub-commands to ``encore train`` (each exposes ``register(group)``).
EXTENSIONS = (train_similarity,)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train models (base diffusion model, …)")
    group = parser.add_subparsers(dest="train_command", metavar="WHAT")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 1)[1])
    register_base(group)
    for module in EXTENSIONS:
        module.register(group)


def register_base(group: argparse._SubParsersAction) -> None:
    p = group.add_parser(
        "base",
        help="train a spectrogram diffusion model from scratch on a corpus",
        description=(
            "Train the base diffusion model on random 128-frame crops of a corpus built by "
            "`encore corpus build`. Writes checkpoint.pt, loss_log.jsonl, loss_curve.png and the "
            "EMA weights as a model folder (OUT/model). The learning rate warms up then decays "
            "along a cosine over the planned run (--minutes of wall time or --steps). With "
            "--resume the run continues exactly from OUT/checkpoint.pt; --minutes/--steps are "
            "the run's total (a larger total extends it)."
        ),
    )
    p.add_argument("--corpus", required=True, type=Path, help="corpus folder (mel_config.json, manifest.jsonl)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init", type=Path, metavar="MODEL_DIR",
        help="start a new run from the weights of this model folder (e.g. the shipped base model, "
             "to continue its training when its run folder is gone); its architecture is kept",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="wall-time budget of the whole run (default 60)")
    length.add_argument("--steps", type=int, help="number of optimiser steps of the whole run")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (default 200)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (default 0.999)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--tiny", action="store_true", help="a tiny model (smoke tests)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_base)


def heldout_split(corpus: Path) -> str | None:
    """The name of the corpus's held-out split ("val", "valid", "test", "heldout"), if any."""
    import json

    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        return None
    splits = set()
    for line in manifest.read_text().splitlines():
        if line.strip():
            splits.add(json.loads(line).get("split"))
    for name in ("val", "valid", "validation", "heldout", "test"):
        if name in splits:
            return name
    return None


def run_base(args: argparse.Namespace) -> int:
    import torch

    from encore.audio.mel import MelConfig
    from encore.corpus.dataset import SpectrogramDataset
    from encore.diffusion.train import TrainConfig, train

    corpus: Path = args.corpus
    if not corpus.is_dir():
        raise NotFound(f"corpus folder {corpus} does not exist")
    if args.init is not None and args.resume:
        raise InvalidInput("--init starts a new run and --resume continues one: pass only one of them")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    init_state, model_config = None, None
    if args.init is not None:
        from encore.diffusion.folder import load_model_folder

        loaded = load_model_folder(args.init, device="cpu")
        init_state = loaded.denoiser.state_dict()
        model_config = loaded.denoiser.config.to_dict()
        logger.info("starting from the weights of %s", args.init)
    minutes = args.minutes
    if minutes is None and args.steps is None:
        minutes = 60.0
    cfg = TrainConfig(
        tiny=args.tiny,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=args.warmup,
        ema_decay=args.ema,
        seed=args.seed,
        threads=args.threads,
        precision=args.precision,
        max_minutes=minutes,
        max_steps=args.steps,
        checkpoint_minutes=args.checkpoint_minutes,
        model_config=model_config,
        init_from=str(args.init) if args.init is not None else None,
    )
    mel_config = MelConfig.load(corpus)
    dataset = SpectrogramDataset(corpus, split="train", width=cfg.width, seed=cfg.seed)
    if len(dataset) == 0:
        raise InvalidInput(f"corpus {corpus} has no training pieces")
    split = heldout_split(corpus)
    heldout = SpectrogramDataset(corpus, split=split, width=cfg.width, seed=cfg.seed + 1) if split else None
    if heldout is None:
        logger.warning("corpus %s has no held-out split; no held-out loss", corpus)
    result = train(cfg, dataset=dataset, heldout=heldout, out_dir=args.out, mel_config=mel_config,
                   resume=args.resume, progress=not args.no_progress, init_state_dict=init_state)
    print(  # noqa: T201
        f"trained {result.steps} steps ({result.samples_seen} samples) in "
        f"{result.wall_seconds / 60:.1f} min; loss {result.final_loss:.4f}; held-out "
        f"{result.heldout_loss if result.heldout_loss is None else round(result.heldout_loss, 4)}; "
        f"model folder {result.model_dir}"
    )
    return 0
