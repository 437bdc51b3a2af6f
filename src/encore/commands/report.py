"""``encore report [--out DIR]``: the versions compared fairly (paired deliveries, else fresh
clips in the same rounds, with 95 % intervals), the gain's decomposition, the baselines apart,
the served clips' guards (diversity as ``encore eval`` measures it, median S to the input,
each version against v0), then the paper's Table 1 pooled with per-iteration changes and
the split by dispatch branch; plots (PNG), the CSV of every rating and ``served.csv`` (every
served clip with its S and descriptors: enough to recompute the guards)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from encore.commands import options
from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="ratings per song and version, with intervals")
    parser.add_argument("--out", type=Path, help="folder for the plots, ratings.csv and served.csv")
    options.add_seed(parser, help="bootstrap seed")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--eval-features", action="store_true",
                        help="measure the guards' diversity over encore eval's own features of "
                             "the served audio (decodes every served clip) instead of the "
                             "stored descriptors")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from encore.errors import InvalidInput
    from encore.services import report

    if args.resamples < 100:
        raise InvalidInput(f"--resamples {args.resamples} is too few for a 95 % interval (≥ 100)")
    ctx = service_context(queues=False)
    result = report.build_report(ctx, seed=args.seed, n_resamples=args.resamples,
                                 guard_space="eval" if args.eval_features else "descriptors")
    if result is None:
        print("no counted ratings yet")  # noqa: T201
        return 0
    print(report.format_report(result))  # noqa: T201
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ratings.csv").write_text(report.ratings_csv(ctx))
        (args.out / "served.csv").write_text(report.served_csv(ctx))
        paths = report.report_plots(ctx, args.out, report=result)
        print(f"\nwrote {args.out / 'ratings.csv'}, served.csv and "  # noqa: T201
              f"{', '.join(p.name for p in paths)}")
    return 0
