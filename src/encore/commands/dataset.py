"""``encore dataset list|curate|purge`` (and ``encore purge``): the curated dataset *D*."""

from __future__ import annotations

import argparse
from typing import Any

from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dataset", help="the curated dataset: list, curate, purge")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list dataset entries (removed ones with their reason)")
    lst.add_argument("--active", action="store_true", help="only entries still in the dataset")
    lst.set_defaults(handler=list_dataset)
    cur = sub.add_parser("curate", help="assess raters, score clips, admit clips that beat d*")
    cur.set_defaults(handler=curate)
    pur = sub.add_parser("purge", help="run one purge cycle")
    pur.set_defaults(handler=purge)
    top = subparsers.add_parser("purge", help="run one purge cycle of the dataset")
    top.set_defaults(handler=purge)


def list_dataset(args: argparse.Namespace) -> int:
    from encore.services import curation

    rows = curation.list_dataset(service_context(queues=False), include_removed=not args.active)
    print(f"{'entry':>5} {'clip':>6} {'version':>7} {'R':>6} {'c':>6} {'n':>4}  added / removed")  # noqa: T201
    for r in rows:
        tail = f"removed {r.removed_at:%Y-%m-%d}: {r.removal_detail}" if r.removed_at else f"added {r.added_at:%Y-%m-%d %H:%M}"
        print(  # noqa: T201
            f"{r.entry_id:5d} {r.clip_id:6d} {r.version or '-':>7} {r.rating_score:6.3f} "
            f"{r.confidence:6.3f} {r.n_ratings:4d}  {tail}"
        )
    return 0


def curate(args: argparse.Namespace) -> int:
    from encore.services import curation

    result = curation.curate(service_context(queues=False))
    print(  # noqa: T201
        f"raters assessed {result.raters_assessed} (flagged {result.raters_flagged}); "
        f"clips scored {result.clips_scored}; admitted {len(result.admitted)}"
        f"{' (cold start)' if result.cold_start else ''}; rejected {result.rejected}; "
        f"waiting for ratings {result.pending}"
    )
    return 0


def purge(args: argparse.Namespace) -> int:
    from encore.services import curation

    result = curation.purge(service_context(queues=False))
    print(f"kept {result.kept}, removed {len(result.removed)}")  # noqa: T201
    for clip_id, reason, detail in result.removed:
        print(f"  clip {clip_id}: {reason} — {detail}")  # noqa: T201
    return 0
