"""``encore backup --out DIR`` and ``encore restore DIR``: the database and the blobs, with a
manifest and checksums (``encore.store.backup``). A backup can be taken while encore runs;
a restore goes into an empty installation (stop encore first)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from encore.commands import options


def register(subparsers: Any) -> None:
    b = subparsers.add_parser(
        "backup", help="back up the database and every blob into a new folder (online)"
    )
    options.add_out(b, help="a new (or empty) folder")
    b.set_defaults(handler=run_backup)
    r = subparsers.add_parser(
        "restore", help="restore a backup folder into an empty installation, then verify it"
    )
    r.add_argument("dir", type=Path, help="a folder made by encore backup")
    r.add_argument("--verify-only", action="store_true",
                   help="only check the backup's checksums; write nothing")
    r.set_defaults(handler=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.store.backup import backup, blob_store_for

    settings = get_settings()
    manifest = backup(settings.resolved_database_url, blob_store_for(settings), args.out)
    rows = manifest["database"]["rows"]
    print(f"backup in {args.out}: {manifest['database']['backend']} database at revision "  # noqa: T201
          f"{manifest['database']['revision']}, {sum(rows.values())} rows "
          f"({rows.get('songs', 0)} songs, {rows.get('clips', 0)} clips, "
          f"{rows.get('ratings', 0)} ratings, {rows.get('model_versions', 0)} versions), "
          f"{len(manifest['blobs'])} blobs ({manifest['blob_bytes'] / 1e6:.1f} MB)")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from encore.config import get_settings
    from encore.store.backup import blob_store_for, restore, verify

    if args.verify_only:
        manifest = verify(args.dir)
        print(f"{args.dir}: every checksum matches ({len(manifest['blobs'])} blobs)")  # noqa: T201
        return 0
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    report = restore(settings.resolved_database_url, blob_store_for(settings), args.dir)
    print(f"restored {args.dir}: {sum(report.rows.values())} rows, {report.blobs} blobs "  # noqa: T201
          f"({report.blob_bytes / 1e6:.1f} MB); row counts and checksums match the backup")
    return 0
