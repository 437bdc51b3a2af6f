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
    from encore.errors import InvalidInput
    from encore.jobs.worker import run_worker

    if args.workers < 1:
        raise InvalidInput(f"--workers must be at least 1, got {args.workers}")
    run_worker(
        get_settings(),
        queue=args.queue,
        workers=args.workers,
        worker_type=args.worker_type,
        periodic=not args.no_periodic,
        imports=args.imports,
    )
    return 0
