"""``encore train <what>``: the training commands.

``encore train base`` trains a diffusion model from scratch on a corpus; ``encore train
similarity`` (:mod:`encore.commands.train_similarity`) the similarity model. Another
``encore train <what>`` is a module with ``register(group)`` added to :data:`EXTENSIONS`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from encore.commands import command_group, options, train_similarity
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

# Modules that add sub-commands to ``encore train`` (each exposes ``register(group)``).
EXTENSIONS = (train_similarity,)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "train", help="train models (base diffusion model, …)")
    register_base(group)
    register_export(group)
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
            "the run's total (a larger total extends it). Started by torchrun (python -m "
            "torch.distributed.run --nproc_per_node N -m encore.cli train base ...) it trains "
            "data-parallel: --batch stays the global batch, each process computes 1/N of it, rank 0 "
            "writes the run folder (docs/training.md)."
        ),
    )
    options.add_corpus(p, help="corpus folder (mel_config.json, manifest.jsonl)")
    options.add_out(p, help="run folder")
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
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 5e-4 × √(batch/16): 5e-4 at 16, 2e-3 at 256)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (default 200)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (default 0.999)")
    options.add_seed(p)
    options.add_threads(p, default=2, help="torch threads (default 2; per process under torchrun)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast where the CPU or GPU computes in bf16")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="cpu, cuda, cuda:N or auto (default: CUDA if this torch sees a GPU, else "
                        "the CPU). On CUDA: bf16 autocast, channels-last, crops cut on the GPU")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="train through torch.compile (backend inductor unless named)")
    p.add_argument("--data", choices=("auto", "tensor", "items"), default="auto",
                   help="tensor: the split's frames in one tensor on the device, a batch cut at "
                        "once (default for a corpus); items: one crop per dataset item")
    p.add_argument("--eval-every", type=int, default=250, help="held-out loss every N steps (default 250)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--tiny", action="store_true", help="a tiny model (smoke tests)")
    options.add_no_progress(p)
    p.set_defaults(handler=run_base)


def register_export(group: argparse._SubParsersAction) -> None:
    p = group.add_parser(
        "export",
        help="a base-training run as a shippable model folder (fp16, card, curve, pictures)",
        description=(
            "Write the EMA weights of a run folder of `encore train base` (RUN/model) as fp16 "
            "safetensors into a new model folder, with the run's train_config.json and loss "
            "curve, the pictures of an evaluation and a MODEL_CARD.md written from the run's "
            "records (and the `encore eval --json` report, when given)."
        ),
    )
    p.add_argument("--run", required=True, type=Path, help="run folder of `encore train base`")
    options.add_out(p, help="model folder to write (replaced if it exists)")
    p.add_argument("--name", default=None, help="model name (default: the folder name)")
    p.add_argument("--eval", type=Path, default=None, metavar="JSON", help="report of `encore eval --json`")
    p.add_argument("--pictures", type=Path, default=None, metavar="DIR",
                   help="PNGs of `encore eval --pictures` to include")
    p.add_argument("--note", action="append", default=[], metavar="KEY=VALUE",
                   help="a fact for the card's run table (repeatable)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from encore.diffusion.release import export_run, load_eval_report

    notes = {}
    for item in args.note:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--note {item!r} must be KEY=VALUE")
        notes[key.strip()] = value.strip()
    report = load_eval_report(args.eval) if args.eval is not None else None
    folder = export_run(args.run, args.out, name=args.name, eval_report=report,
                        pictures=args.pictures, notes=notes)
    print(f"model folder {folder} (fp16){' with the evaluation' if report else ''}")  # noqa: T201
    return 0


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
    from encore.audio.mel import MelConfig
    from encore.corpus.dataset import SpectrogramDataset
    from encore.diffusion.train import TrainConfig, scaled_lr, train, training_device
    from encore.diffusion.training import distributed

    device = training_device(args.device)  # a clear error for cuda without CUDA, before any work
    corpus = options.corpus_folder(args.corpus)
    if args.init is not None and args.resume:
        raise InvalidInput("--init starts a new run and --resume continues one: pass only one of them")
    options.set_threads(args.threads)
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
    mel_config = MelConfig.load(corpus)
    cfg = TrainConfig(
        tiny=args.tiny,
        width=mel_config.x_res,  # the corpus's training crop width
        batch_size=args.batch,
        lr=args.lr if args.lr is not None else scaled_lr(args.batch),
        warmup_steps=args.warmup,
        ema_decay=args.ema,
        seed=args.seed,
        threads=args.threads,
        precision=args.precision,
        max_minutes=minutes,
        max_steps=args.steps,
        checkpoint_minutes=args.checkpoint_minutes,
        eval_every=args.eval_every,
        device=str(device),
        data=args.data,
        compile=args.compile,
        model_config=model_config,
        init_from=str(args.init) if args.init is not None else None,
    )
    dataset = SpectrogramDataset(corpus, split="train", width=cfg.width, seed=cfg.seed)
    if len(dataset) == 0:
        raise InvalidInput(f"corpus {corpus} has no training pieces")
    split = heldout_split(corpus)
    heldout = SpectrogramDataset(corpus, split=split, width=cfg.width, seed=cfg.seed + 1) if split else None
    if heldout is None:
        logger.warning("corpus %s has no held-out split; no held-out loss", corpus)
    with distributed.process_group(device):  # torchrun: one process of a data-parallel run
        result = train(cfg, dataset=dataset, heldout=heldout, out_dir=args.out, mel_config=mel_config,
                       resume=args.resume, progress=not args.no_progress, init_state_dict=init_state)
        if not distributed.is_main():
            return 0
    print(  # noqa: T201
        f"trained {result.steps} steps ({result.samples_seen} samples) in "
        f"{result.wall_seconds / 60:.1f} min; loss {result.final_loss:.4f}; held-out "
        f"{result.heldout_loss if result.heldout_loss is None else round(result.heldout_loss, 4)}; "
        f"model folder {result.model_dir}"
    )
    return 0
