"""``encore versions list|activate|gate|weight|retire|import|export|purge``: the model versions and
their A/B mix. A version's files live in the blob store (``encore.store.folders``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from encore.commands._context import service_context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "versions", help="model versions: list, activate, A/B weight, retire, import, export, purge"
    )
    sub = parser.add_subparsers(dest="versions_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="every version with its status, weight, parent and figures")
    lst.set_defaults(handler=list_versions)
    act = sub.add_parser("activate", help="serve a version (alongside the other active ones)")
    act.add_argument("name")
    act.add_argument("--weight", type=float, default=1.0, help="A/B weight (default 1)")
    act.add_argument("--force", action="store_true",
                     help="activate a draft that failed its gate against its parent")
    act.set_defaults(handler=activate)
    gate = sub.add_parser("gate", help="gate a draft against its parent (panel, taste groups, "
                                       "diversity, quality) and store the verdict")
    gate.add_argument("name")
    gate.set_defaults(handler=gate_version)
    wt = sub.add_parser("weight", help="change the A/B weight of a version (0 = not served)")
    wt.add_argument("name")
    wt.add_argument("weight", type=float)
    wt.set_defaults(handler=weight)
    ret = sub.add_parser("retire", help="stop serving a version for good")
    ret.add_argument("name")
    ret.set_defaults(handler=retire)
    imp = sub.add_parser(
        "import",
        help="make a local model folder (encore or audio-diffusion layout) a draft version",
    )
    imp.add_argument("dir", type=Path)
    imp.add_argument("--no-copy", action="store_true",
                     help="point the version at DIR (this host only) instead of publishing its "
                          "files to the blob store")
    imp.add_argument("--notes", default=None)
    imp.set_defaults(handler=import_version)
    exp = sub.add_parser("export", help="copy a version's files into a new local folder")
    exp.add_argument("name")
    exp.add_argument("dir", type=Path)
    exp.set_defaults(handler=export_version)
    pur = sub.add_parser(
        "purge", help="delete a retired version's files from the blob store (its row stays)"
    )
    pur.add_argument("name")
    pur.set_defaults(handler=purge_version)
    prune = sub.add_parser(
        "cache-prune",
        help="delete this host's cached copies of retired or purged versions (ENCORE_MODEL_CACHE_DIR)",
    )
    prune.set_defaults(handler=cache_prune)


def _shares(rows: list[Any]) -> dict[int, float]:
    from encore.store import VersionStatus

    active = {v.id: v.ab_weight for v in rows if v.status is VersionStatus.ACTIVE and v.ab_weight > 0}
    total = sum(active.values())
    return {k: w / total for k, w in active.items()} if total else {}


def list_versions(args: argparse.Namespace) -> int:
    from encore.errors import NotFound
    from encore.services import gating, versions

    ctx = service_context(queues=False)
    try:
        versions.ensure_base_version(ctx)
    except NotFound as exc:
        print(f"(no base model registered: {exc})")  # noqa: T201
    rows = versions.list_versions(ctx)
    names = {v.id: v.name for v in rows}
    shares = _shares(rows)
    print(f"{'name':<8} {'status':<8} {'weight':>7} {'share':>6} {'parent':<7} {'created':<16}  notes")  # noqa: T201
    for v in rows:
        share = f"{shares[v.id]:6.0%}" if v.id in shares else f"{'-':>6}"
        print(f"{v.name:<8} {str(v.status):<8} {v.ab_weight:7.2f} {share} "  # noqa: T201
              f"{names.get(v.parent_id, '-') if v.parent_id else '-':<7} {v.created_at:%Y-%m-%d %H:%M}  "
              f"{v.notes or ''}")
        scores = (v.metrics or {}).get("eval", {}).get("scores")
        if scores:
            print("         score " + ", ".join(f"{k} {s:.3f}" for k, s in scores.items()))  # noqa: T201
        if v.parent_id:
            print(f"         {gating.summary((v.metrics or {}).get('gate'))}")  # noqa: T201
        print(f"         {v.folder}")  # noqa: T201
    return 0


def _named(args: argparse.Namespace) -> tuple[Any, int]:
    """A service context and the id of the version ``args.name`` names (raises if none)."""
    from encore.services import versions

    ctx = service_context(queues=False)
    return ctx, versions.version_by_name(ctx, args.name).id


def activate(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx, version_id = _named(args)
    v = versions.activate_version(ctx, version_id=version_id, ab_weight=args.weight,
                                  force=args.force)
    print(f"{v.name} is active with weight {v.ab_weight:g}")  # noqa: T201
    return 0


def gate_version(args: argparse.Namespace) -> int:
    """Gate a draft; exit 0 when it passed, 1 when it failed (the verdict is stored)."""
    from encore.services import gating

    ctx, version_id = _named(args)
    verdict = gating.gate_version(ctx, version_id)
    print(f"{args.name} vs {verdict.get('parent')}: {gating.summary(verdict)}")  # noqa: T201
    for g in verdict.get("groups", []):
        print(f"  group {g['group']} ({g['listeners']} listeners): predicted stars "  # noqa: T201
              f"{g['parent']:.3f} -> {g['child']:.3f}, {g['delta']:+.3f} "
              f"[{g['interval'][0]:+.3f}, {g['interval'][1]:+.3f}] {'pass' if g['passed'] else 'FAIL'}")
    return 0 if verdict.get("passed") else 1


def weight(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx, version_id = _named(args)
    v = versions.set_ab_weight(ctx, version_id=version_id, ab_weight=args.weight)
    print(f"{v.name}: weight {v.ab_weight:g} ({v.status})")  # noqa: T201
    return 0


def retire(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx, version_id = _named(args)
    v = versions.retire_version(ctx, version_id=version_id)
    print(f"{v.name} is retired")  # noqa: T201
    return 0


def import_version(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx = service_context(queues=False)
    v = versions.import_version(ctx, args.dir, copy=not args.no_copy, notes=args.notes)
    print(f"imported {args.dir} as {v.name} (draft), files at {v.folder}; "  # noqa: T201
          f"serve it with `encore versions activate {v.name} --weight W`")
    return 0


def export_version(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx, version_id = _named(args)
    target = versions.export_version(ctx, version_id=version_id, target=args.dir)
    print(f"exported {args.name} to {target}")  # noqa: T201
    return 0


def purge_version(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx, version_id = _named(args)
    deleted = versions.purge_version(ctx, version_id=version_id)
    print(f"purged the files of {args.name} ({deleted} blobs deleted)")  # noqa: T201
    return 0


def cache_prune(args: argparse.Namespace) -> int:
    from encore.services import versions

    ctx = service_context(queues=False)
    removed = versions.prune_model_cache(ctx)
    print(f"removed {len(removed)} cached version(s) from "  # noqa: T201
          f"{ctx.settings.resolved_model_cache_dir}")
    return 0
