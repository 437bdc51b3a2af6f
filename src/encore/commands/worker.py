"""``encore worker``: consume the job queues (generation/embedding, training)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from encore.jobs.worker import add_arguments

    parser = subparsers.add_parser(
        "worker",
        help="run background jobs (generation, embedding, fine-tuning)",
        description="Consume encore's job queues until interrupted (Ctrl-C stops gracefully).",
    )
    add_arguments(parser)
    parser.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.jobs.worker import run_from_args

    return run_from_args(get_settings(), args)
