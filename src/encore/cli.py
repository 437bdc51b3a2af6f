"""The ``encore`` command.

Each area keeps its sub-commands in ``encore/commands/<area>.py`` with a
``register(subparsers)`` function; this module imports them by name (a new area adds its
module to :data:`COMMANDS`), assembles them, sets up logging and maps
:class:`encore.errors.EncoreError` to a one-line message and exit status 2. Heavy imports
(torch, diffusers) happen inside the command handlers, so ``encore --help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from encore.commands import (
    backup,
    bench,
    blobs,
    corpus,
    dataset,
    db,
    finetune,
    generate,
    report,
    serve,
    similarity,
    simulate,
    taste,
    train,
    users,
    versions,
    worker,
)
from encore.commands import eval as evaluate
from encore.errors import EncoreError

# Order here is the order in ``encore --help``.
COMMANDS = (
    serve,
    corpus,
    generate,
    train,
    evaluate,
    similarity,
    finetune,
    versions,
    report,
    taste,
    simulate,
    bench,
    worker,
    users,
    blobs,
    dataset,
    db,
    backup,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encore", description="Music generation that learns from its listeners."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from encore import logs  # a request id in every line; ENCORE_LOG_FORMAT=json for JSON lines

    logs.install("json" if os.environ.get("ENCORE_LOG_FORMAT", "").lower() == "json" else "text")
    if not args.verbose:
        for noisy in ("alembic", "httpx", "huey"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except EncoreError as exc:
        print(f"encore {args.command}: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
