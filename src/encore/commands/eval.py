"""``encore eval``: quality metrics of a model folder against a corpus's held-out clips."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from encore.commands import options
from encore.errors import InvalidInput

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="quality metrics of a model (FD/KD on audio features, normalised score)",
        description=(
            "Generate, vary (held-out clips at the default strength) and merge (held-out pairs) "
            "with the model and with a randomly initialised model of the same config; vocode "
            "them and held-out corpus clips through the same mel codec and Griffin-Lim; compare "
            "per-clip librosa features by Fréchet and kernel distance. The normalised score is "
            "(FD_model - FD_real) / (FD_untrained - FD_real): 0 = as close as two real sets, "
            "1 = no better than untrained."
        ),
    )
    options.add_model(p, help="model folder (default: the shipped base model)")
    options.add_corpus(p, help="corpus folder")
    p.add_argument("--n", type=int, default=32, help="clips per set (default 32)")
    p.add_argument("--steps", type=int, default=25, help="solver steps (default 25)")
    options.add_sampler(p, default="ddim", help="solver of generation and variation (default ddim)")
    p.add_argument("--merge-steps", type=int, default=None,
                   help="DDIM steps of the merges' inversion and decoding (default --steps)")
    p.add_argument("--compare", nargs="+", default=None, metavar="SAMPLER:STEPS[:MERGE]",
                   help="instead of one report: score and diversity of these sampler settings "
                        "on the same clips with paired bootstrap intervals, differences to the "
                        "first (e.g. ddim:50 dpmpp:12:20 unipc:12:20)")
    p.add_argument("--resamples", type=int, default=100, help="bootstrap draws for --compare")
    p.add_argument("--tasks", nargs="+", default=["generate", "vary", "merge"],
                   choices=("generate", "vary", "merge"), help="tasks of --compare")
    p.add_argument("--untrained-setting", default=None, metavar="SAMPLER:STEPS[:MERGE]",
                   help="--compare: one setting for the untrained baseline of every row "
                        "(default: each row's own)")
    p.add_argument("--strength", type=float, default=None, help="variation strength (default: settings)")
    options.add_seed(p)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    options.add_threads(p, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--pictures", type=Path, default=None, help="write spectrogram grids (PNG) here")
    p.add_argument("--save", action="store_true", help="record the metrics in the model's encore.json")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from encore.commands.train import heldout_split
    from encore.config import get_settings
    from encore.corpus.dataset import SpectrogramDataset
    from encore.diffusion.evaluate import evaluate_model, format_table
    from encore.diffusion.folder import load_model_folder, update_model_meta

    settings = get_settings()
    options.set_threads(args.threads)
    model_dir = args.model or settings.base_model_dir
    options.corpus_folder(args.corpus)
    if args.n < 4:
        raise InvalidInput(f"--n {args.n} must be at least 4")
    model = load_model_folder(model_dir, device="cpu")
    split = heldout_split(args.corpus)
    if split is None:
        raise InvalidInput(f"corpus {args.corpus} has no held-out split in manifest.jsonl")
    width = model.mel_config.x_res
    heldout = SpectrogramDataset(args.corpus, split=split, width=width, seed=args.seed)
    train = SpectrogramDataset(args.corpus, split="train", width=width, seed=args.seed)
    strength = args.strength if args.strength is not None else settings.default_strength
    if args.compare:
        from encore.diffusion.evaluate import SamplerConfig, compare_samplers, format_sampler_table

        configs = [SamplerConfig.parse(c) for c in args.compare]
        rows, seconds, fd_real = compare_samplers(
            model, heldout=heldout, train=train, configs=configs, n=args.n, strength=strength,
            seed=args.seed, precision=args.precision, resamples=args.resamples,
            tasks=tuple(args.tasks),
            untrained_config=(SamplerConfig.parse(args.untrained_setting)
                              if args.untrained_setting else None))
        print(f"model {model_dir}, corpus {args.corpus} (held-out split {split!r}); "  # noqa: T201
              f"FD real B vs real A {fd_real:.2f}; {seconds:.0f} s")
        print(format_sampler_table(rows, n=args.n, seed=args.seed))  # noqa: T201
        if args.json:
            args.json.write_text(json.dumps([
                {"task": r.task, "setting": r.config.label, "unet_calls": r.unet_calls,
                 **{k: [getattr(r, k).value, getattr(r, k).low, getattr(r, k).high]
                    for k in ("fd", "score", "diversity", "d_score", "d_diversity")}}
                for r in rows], indent=2) + "\n")
        return 0
    report = evaluate_model(model, heldout=heldout, train=train, n=args.n, steps=args.steps,
                            strength=strength, seed=args.seed, precision=args.precision,
                            pictures_dir=args.pictures, sampler=args.sampler,
                            merge_steps=args.merge_steps)
    print(f"model {model_dir}, corpus {args.corpus} (held-out split {split!r})")  # noqa: T201
    print(format_table(report))  # noqa: T201
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if args.save:
        update_model_meta(model_dir, metrics=report.to_dict())
    return 0
