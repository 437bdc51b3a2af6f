"""``encore blobs gc``: delete song and clip blobs that no row refers to, and the report's
plots that nobody drew for a while."""

from __future__ import annotations

import argparse
from typing import Any

from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("blobs", help="blob storage upkeep (operators)")
    sub = parser.add_subparsers(dest="blobs_command", metavar="ACTION", required=True)
    gc = sub.add_parser(
        "gc", help="delete song and clip blobs no row refers to (failed writes, deletions) "
        "and report plots not drawn for --min-age"
    )
    gc.add_argument(
        "--min-age", type=float, default=3600.0,
        help="only blobs older than this many seconds (default 3600; 0 = any age, for remote "
        "stores, run when nothing is being uploaded or generated)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list, do not delete")
    gc.set_defaults(handler=collect)


def collect(args: argparse.Namespace) -> int:
    from encore.services import report_blobs, songs

    ctx = service_context(queues=False)
    keys = songs.collect_orphan_blobs(ctx, min_age_seconds=args.min_age, dry_run=args.dry_run)
    plots = report_blobs.prune_report_plots(ctx, older_than=args.min_age, dry_run=args.dry_run)
    for key in keys + plots:
        print(key)  # noqa: T201
    verb = "would be deleted" if args.dry_run else "deleted"
    print(f"{len(keys)} orphan blobs {verb}")  # noqa: T201
    print(f"{len(plots)} report plots not drawn for {args.min_age:g} s {verb}")  # noqa: T201
    return 0
