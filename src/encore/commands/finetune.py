"""``encore finetune``: fine-tune a model version on the curated dataset (a training job)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from encore.commands._context import service_context
from encore.errors import InvalidInput


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model version on the curated dataset (a new draft version)",
        description=(
            "Start a fine-tuning run: the top-N clips of the curated dataset, weighted by their "
            "confidence, with a share of base-corpus crops in every batch (replay; the parent's "
            "own generations when no corpus is configured). The run is a job on the training "
            "queue (a running `encore serve` or `encore worker --queue train` executes it); with "
            "--wait it runs here, with a progress bar. The result is a draft version: activate "
            "it with `encore versions activate NAME --weight W`. --method dpo or kto trains on "
            "listeners' preferences instead (Diffusion-DPO on pairs, Diffusion-KTO on liked / "
            "disliked clips; docs/finetune.md). Started by torchrun with --wait (python -m "
            "torch.distributed.run --nproc_per_node N -m encore.cli finetune --wait ...) the run "
            "trains data-parallel in N processes; rank 0 records and publishes it (docs/training.md)."
        ),
    )
    p.add_argument("--method", choices=("paper", "dpo", "kto"), default=None,
                   help="paper: confidence-weighted loss on the top-N dataset clips; dpo: Diffusion-DPO "
                        "on pairs one listener rated for the same songs; kto: Diffusion-KTO on clips "
                        "rated above/below the listener's mean (default: ENCORE_FINETUNE_METHOD)")
    p.add_argument("--beta", type=float, default=None,
                   help="β of the dpo / kto loss (default: ENCORE_FINETUNE_DPO_BETA / _KTO_BETA)")
    p.add_argument("--conditioned", action="store_true", default=None,
                   help="dpo / kto: a taste-conditioned child (one UNet embedding per taste group of the "
                        "listeners, label dropout; default: ENCORE_FINETUNE_CONDITIONED)")
    p.add_argument("--parent", default=None,
                   help="version to start from (default: the newest active version)")
    p.add_argument("--top-n", type=int, default=None, help="dataset clips to train on (default 100)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default from settings)")
    p.add_argument("--replay", type=float, default=None, metavar="FRACTION",
                   help="share of each batch from the corpus, in [0, 1) (default from settings)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default from settings)")
    p.add_argument("--minutes", type=float, default=None, help="wall-time guard (default from settings)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--wait", action="store_true", help="run the fine-tune here and wait for it")
    p.add_argument("--status", type=int, default=None, metavar="RUN", help="show a run and exit")
    p.add_argument("--list", action="store_true", help="list the fine-tuning runs and exit")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.set_defaults(handler=run)
    actions = p.add_subparsers(dest="finetune_action", metavar="ACTION")
    c = actions.add_parser(
        "compare", help="fine-tune each method from one parent on the same data and gate each child (one table)",
        description=(
            "Fine-tune the parent with each method on the same data (every method's examples are read "
            "once, before any training), judge every child against the parent on one gating panel (the "
            "same songs, seeds, held-out gating taste model and taste groups) and print one table: "
            "examples, training time, Δ predicted stars per taste group with its 95 %% interval, diversity, "
            "similarity to the input, quality within noise or not, the gate's verdict. Nothing is "
            "published or activated: the children are model folders under data_dir/compare/<stamp>/ "
            "(register one with `encore versions import DIR`), with comparison.json beside them."),
    )
    c.add_argument("--methods", default="paper,dpo,kto,dpo+conditioned",
                   help="comma-separated: paper, dpo, kto, dpo+conditioned, kto+conditioned "
                        "(default %(default)s)")
    c.add_argument("--parent", default=None, help="version to start from (default: the newest active version)")
    c.add_argument("--steps", type=int, default=None, help="optimiser steps of every method (default from settings)")
    c.add_argument("--minutes", type=float, default=None, help="wall-time guard of each method's training")
    c.add_argument("--eval-clips", type=int, default=None,
                   help="clips per set of the quality evaluation (0 = skip; default from settings)")
    c.add_argument("--top-n", type=int, default=None, help="dataset clips of the paper method (default 100)")
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="also write the comparison to FILE: CSV when it ends in .csv, else JSON")
    c.set_defaults(handler=compare)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {"steps": "steps", "replay": "replay_fraction", "lr": "lr", "minutes": "max_minutes",
             "seed": "seed", "method": "method", "conditioned": "conditioned"}
    out = {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not None}
    if args.beta is not None:  # whichever preference method runs
        out["dpo_beta"] = out["kto_beta"] = args.beta
    return out


def _parent(ctx: Any, name: str | None) -> Any:
    from encore.errors import Conflict
    from encore.services import versions
    from encore.store import VersionStatus

    if name is not None:
        return versions.version_by_name(ctx, name)
    versions.ensure_base_version(ctx)
    active = [v for v in versions.list_versions(ctx) if v.status is VersionStatus.ACTIVE]
    if not active:
        raise Conflict("no version is active; name one with --parent")
    return active[-1]


def run(args: argparse.Namespace) -> int:
    from encore.services import finetune

    if args.list:
        ctx = service_context(queues=False)
        print(f"{'run':>4} {'status':<8} {'parent':<7} {'version':<8} {'clips':>5} {'progress':>8}  created")  # noqa: T201
        for view in finetune.list_runs(ctx):
            print(f"{view.run_id:4d} {view.status:<8} {view.parent:<7} {view.version or '-':<8} "  # noqa: T201
                  f"{view.n_clips:5d} {view.progress:8.0%}  {view.created_at:%Y-%m-%d %H:%M}"
                  + (f"  error: {view.error.splitlines()[0][:80]}" if view.error else ""))
        return 0
    if args.status is not None:
        view = finetune.training_status(service_context(queues=False), args.status)
        if args.json:
            print(json.dumps(view.to_dict(), indent=2))  # noqa: T201
        else:
            _print_view(view)
        return 0

    from encore.diffusion.training import distributed

    ctx = service_context(queues=not args.wait)
    if not distributed.launched():
        run_id = _start(ctx, args)
        return _run_here(ctx, run_id) if args.wait else 0
    if not args.wait:
        raise InvalidInput("under torchrun, encore finetune trains in the launched processes: pass --wait")
    from encore.diffusion.device import pick_device

    with distributed.process_group(pick_device(ctx.settings.device)):  # data-parallel (docs/training.md)
        run_id = distributed.on_main(lambda: _start(ctx, args))  # rank 0 makes the run's row
        if not distributed.is_main():
            finetune.run_finetune(ctx, run_id)  # trains; rank 0 records and publishes
            return 0
        return _run_here(ctx, run_id)


def _start(ctx: Any, args: argparse.Namespace) -> int:
    """Make the run (queued unless ``--wait``) and say so; its id."""
    from encore.services import finetune

    parent = _parent(ctx, args.parent)
    run_row = finetune.start_finetune(ctx, parent_version_id=parent.id, settings=_overrides(args),
                                      top_n=args.top_n, enqueue=not args.wait)
    method = run_row.settings.get("method", "paper")
    unit = {"paper": "clips", "dpo": "preference pairs", "kto": "labelled clips"}[method]
    tag = "" if method == "paper" else f" ({method})"
    print(f"fine-tuning run {run_row.id}{tag}: {parent.name} on {len(run_row.training_set)} {unit}")  # noqa: T201
    if not args.wait:
        print(f"queued on the training queue; follow it with `encore finetune --status {run_row.id}`")  # noqa: T201
    return int(run_row.id)


def _run_here(ctx: Any, run_id: int) -> int:
    """Run the fine-tune in this process with a progress bar; print the outcome."""
    from encore.services import finetune

    bar, progress = _progress_bar()
    try:
        finetune.run_finetune(ctx, run_id, progress)
    except KeyboardInterrupt:
        finetune.abandon_run(ctx, run_id, "interrupted (Ctrl-C)")
        raise
    finally:
        bar.close()
    _print_view(finetune.training_status(ctx, run_id))
    return 0


def _progress_bar() -> tuple[Any, Any]:
    """A tqdm bar in percent and the ``progress(fraction, message)`` callback that moves it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}] {postfix}")

    def progress(fraction: float, message: str | None = None) -> None:
        bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    return bar, progress


def _print_view(view: Any) -> None:
    from encore.services import gating, versions

    print(f"run {view.run_id}: {view.status} ({view.progress:.0%}) — {view.parent} → {view.version or '-'}, "  # noqa: T201
          f"{view.n_clips} clips" + (f"; {view.message}" if view.message else ""))
    if view.error:
        print(f"error: {view.error}")  # noqa: T201
    if view.version is None:
        return
    metrics = versions.version_by_name(service_context(queues=False), view.version).metrics
    ft = metrics.get("finetune", {})
    cond = ft.get("conditioning")
    if cond:  # a taste-conditioned child
        print(f"  conditioned on {cond['num_groups']} taste groups (label dropout {cond['dropout']}); "  # noqa: T201
              f"examples per group {cond['examples_per_group'][:-1]}, without a group {cond['examples_per_group'][-1]}")
    for key, pair in ft.items():  # (parent, new) figures: losses; for dpo / kto the rewards too
        if isinstance(pair, dict) and pair.get("parent") is not None and pair.get("finetuned") is not None:
            print(f"  {key:<18} {pair['parent']:.4f} → {pair['finetuned']:.4f}")  # noqa: T201
    print(f"  steps {ft.get('steps')} of {ft.get('planned_steps')} ({ft.get('stop_reason')}), "  # noqa: T201
          f"best step {ft.get('best_step')}, training {ft.get('wall_seconds')} s, "
          f"whole job {metrics.get('wall_seconds')} s; replay: {metrics.get('replay_source')}")
    if "eval" in metrics:
        new, old = metrics["eval"]["scores"], metrics["parent_eval"]["scores"]
        print("  normalised score (0 = real music, 1 = untrained), parent → new:")  # noqa: T201
        for task in new:
            print(f"    {task:<9} {old.get(task, float('nan')):.3f} → {new[task]:.3f}")  # noqa: T201
    elif "eval_skipped" in metrics:
        print(f"  no evaluation: {metrics['eval_skipped']}")  # noqa: T201
    print(f"  {gating.summary(metrics.get('gate'))}")  # noqa: T201


def compare(args: argparse.Namespace) -> int:
    """``encore finetune compare``: print (and write) the methods' table."""
    from encore.services import comparison

    specs = comparison.parse_methods(args.methods)  # bad names fail before the database is opened
    if args.out is not None and not args.out.parent.is_dir():
        raise InvalidInput(f"--out {args.out}: the folder {args.out.parent} does not exist")
    ctx = service_context(queues=False)
    parent = _parent(ctx, args.parent)
    names = {"steps": "steps", "minutes": "max_minutes", "eval_clips": "eval_clips", "seed": "seed"}
    settings = {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not None}
    print(f"comparing {', '.join(s.label for s in specs)} from {parent.name}")  # noqa: T201
    bar, progress = _progress_bar()
    try:
        report = comparison.compare_methods(ctx, parent_version_id=parent.id, methods=args.methods,
                                            settings=settings, top_n=args.top_n, progress=progress)
    finally:
        bar.close()
    print(f"parent {report['parent']}; panel: songs {report['panel']['songs']} × seeds "  # noqa: T201
          f"{report['panel']['seeds']}; gating taste model: {report['taste_model']['n_ratings']} of "
          f"{report['taste_model']['of_ratings']} ratings ({report['taste_model']['n_listeners']} listeners); "
          f"groups: {report['groups_from']}")
    print(comparison.table(report))  # noqa: T201
    for row in report["rows"]:
        if row.get("gate") and row["gate"]["reasons"]:
            print(f"{row['method']}: " + "; ".join(row["gate"]["reasons"]))  # noqa: T201
    print(f"children and comparison.json in {report['folder']} (nothing published; "  # noqa: T201
          f"{report['wall_seconds']:.0f} s)")
    if args.out is not None:
        _write_out(args.out, report, comparison.flat_rows(report))
        print(f"written to {args.out}")  # noqa: T201
    return 0


def _write_out(path: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    if path.suffix.lower() != ".csv":
        path.write_text(json.dumps(report, indent=2, default=str))
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
