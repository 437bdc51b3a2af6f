"""Comparing fine-tuning methods on one installation's data (docs/finetune.md, "Comparing
methods": ``encore finetune compare``).

Every method asked for (``paper``, ``dpo``, ``kto``, each ``dpo`` / ``kto`` also
``+conditioned``) is fine-tuned from the **same parent** on the **same data**: the examples of
every method are read from the platform once, before any training starts
(:func:`encore.services.finetune.prepare_examples`, each method asked for by name, so none falls
back to another). Each child is trained and evaluated exactly as a fine-tuning run would
(:func:`encore.services.finetune.train_and_evaluate`: the run's settings, replay, the weight-free
quality metrics when a corpus is installed) and then judged by the gate
(:func:`encore.services.gating.judge`) on **one panel**: one gating taste model, one set of
taste groups, the same songs and seeds, the parent's renderings made once.

**Nothing is published.** A comparison adds no model version and no training run: the children
are plain model folders under ``data_dir/compare/<stamp>/<method>/model`` (an operator who wants
one registers it with ``encore versions import DIR``), the report is
``data_dir/compare/<stamp>/comparison.json``. What is served does not change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encore.errors import Conflict, InvalidInput, NotFound
from encore.services import finetune, gating, versions
from encore.services.context import Progress, ServiceContext, no_progress
from encore.services.generation import diffusion_engine, folder_engine
from encore.store import ModelVersion

logger = logging.getLogger(__name__)

METHODS = ("paper", "dpo", "kto")
CONDITIONED = "+conditioned"


@dataclass(frozen=True)
class MethodSpec:
    """One row of a comparison: a fine-tuning method, conditioned on taste groups or not."""

    method: str
    conditioned: bool = False

    @property
    def label(self) -> str:
        return self.method + (CONDITIONED if self.conditioned else "")


def parse_methods(methods: str | Sequence[str]) -> list[MethodSpec]:
    """``"paper,dpo,kto,dpo+conditioned"`` (or a list of those names) as specs, in order.

    Raises
    ------
    InvalidInput
        Nothing named, an unknown method, a method named twice, or ``paper+conditioned``.
    """
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    names = [m for m in names if m]
    known = [*METHODS, *(m + CONDITIONED for m in METHODS if m != "paper")]
    if not names:
        raise InvalidInput(f"no method to compare; name some of {', '.join(known)} (comma-separated)")
    specs = []
    for name in names:
        base, _, rest = name.partition("+")
        if base not in METHODS or rest not in ("", CONDITIONED[1:]):
            raise InvalidInput(f"unknown method {name!r}; known: {', '.join(known)}")
        if base == "paper" and rest:
            raise InvalidInput("paper+conditioned is not a method: a taste-conditioned fine-tune needs dpo "
                               "or kto (their examples come from one listener, whose taste group labels them)")
        spec = MethodSpec(base, bool(rest))
        if spec in specs:
            raise InvalidInput(f"method {name!r} is named twice")
        specs.append(spec)
    return specs


def compare_methods(
    ctx: ServiceContext,
    *,
    parent_version_id: int,
    methods: str | Sequence[str],
    settings: dict[str, Any] | None = None,
    top_n: int | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Fine-tune ``parent_version_id`` with each of ``methods`` on the same data, gate every
    child against the parent on one panel, and return the report (also written to
    ``comparison.json`` in its folder). ``settings`` are fine-tuning overrides for every
    method (``steps``, ``max_minutes``, ``eval_clips``, ``seed``, …; not ``method`` or
    ``conditioned``). A method that cannot run (nothing to train on, no taste groups for a
    conditioned one) or fails gets its row with the error; the others go on.

    Raises
    ------
    InvalidInput
        Bad ``methods`` or settings.
    NotFound
        The parent does not exist.
    Conflict
        The parent is retired, or there is no taste model or analysed song to gate with.
    """
    specs = parse_methods(methods)
    overrides = dict(settings or {})
    clash = sorted({"method", "conditioned"} & set(overrides))
    if clash:
        raise InvalidInput(f"settings {clash} are chosen per method by `methods`")
    finetune.resolve_settings(ctx, overrides)  # bad settings fail before anything is read
    with ctx.reading() as session:
        parent = versions.parent_in(session, parent_version_id, to="compare methods on")
    t0 = time.monotonic()
    progress(0.0, "reading the examples of every method")
    prepared: dict[MethodSpec, tuple[dict[str, Any], list[dict[str, Any]]] | str] = {}
    for spec in specs:  # one snapshot: every method's examples before any training
        try:
            prepared[spec] = finetune.prepare_examples(
                ctx, {**overrides, "method": spec.method, "conditioned": spec.conditioned}, top_n=top_n)
        except InvalidInput as exc:
            prepared[spec] = str(exc)
    progress(0.01, "fitting the gating taste model")
    try:
        panel = gating.prepare_panel(ctx)
    except Conflict as exc:
        raise Conflict(f"cannot compare methods: {exc}") from exc

    stamp, root = _new_folder(ctx.settings.data_dir / "compare")
    parent_engine = diffusion_engine(ctx, parent)
    parent_eval: dict[str, Any] | None = None
    rows = []
    for i, spec in enumerate(specs):
        def step(fraction: float, message: str | None = None, i: int = i, label: str = spec.label) -> None:
            progress(0.02 + 0.98 * (i + fraction) / len(specs), f"{label}: {message or ''}".strip())

        entry = prepared[spec]
        if isinstance(entry, str):
            rows.append(_row(ctx, spec, None, [], error=entry))
            continue
        resolved, examples = entry
        try:
            row, parent_eval = _compare_one(ctx, spec, parent, parent_engine, panel, resolved, examples,
                                            root, stamp, parent_eval, step)
        except Exception as exc:  # one method's failure is its row; the comparison goes on
            logger.exception("comparison %s: %s failed", stamp, spec.label)
            message = str(exc) if isinstance(exc, InvalidInput | NotFound | Conflict) else f"{type(exc).__name__}: {exc}"
            row = _row(ctx, spec, resolved, examples, error=message)
        rows.append(row)
        _write(root, _report(parent, panel, overrides, top_n, stamp, root, rows, t0))
    report = _report(parent, panel, overrides, top_n, stamp, root, rows, t0)
    _write(root, report)
    progress(1.0, f"compared {len(specs)} methods")
    return report


def _new_folder(parent: Path) -> tuple[str, Path]:
    """A new folder under ``parent`` named by the UTC time (``-2``, ``-3``, … within a second)."""
    parent.mkdir(parents=True, exist_ok=True)
    base = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        stamp = base if n == 1 else f"{base}-{n}"
        try:
            (parent / stamp).mkdir()
        except FileExistsError:
            continue
        return stamp, (parent / stamp).resolve()
    raise Conflict(f"cannot make a new comparison folder under {parent}")


def _compare_one(ctx: ServiceContext, spec: MethodSpec, parent: ModelVersion, parent_engine: Any,
                 panel: gating.GatePanel, resolved: dict[str, Any], examples: list[dict[str, Any]], root: Path,
                 stamp: str, parent_eval: dict[str, Any] | None,
                 progress: Progress) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train, evaluate and judge one method; its row and the parent's evaluation (reused)."""
    folder = root / spec.label
    trained = finetune.train_and_evaluate(
        ctx, parent, examples, resolved, work=folder / "work", out=folder / "model",
        name=f"compare-{spec.label}", record={"comparison": stamp, "comparison_method": spec.label},
        progress=lambda f, m=None: progress(0.8 * f, m), parent_eval=parent_eval)
    assert trained is not None  # not under torchrun
    shutil.rmtree(folder / "work", ignore_errors=True)  # checkpoints: the model folder is complete
    t_gate = time.monotonic()
    child_engine = folder_engine(ctx, lambda: trained.folder)
    verdict = gating.judge(ctx, panel, parent_engine, child_engine, trained.metrics, parent.name,
                           lambda f, m=None: progress(0.8 + 0.2 * f, m or "gating"))
    verdict["seconds"] = round(time.monotonic() - t_gate, 1)
    row = _row(ctx, spec, resolved, examples, trained=trained, verdict=verdict)
    return row, trained.metrics.get("parent_eval") or parent_eval


def _row(ctx: ServiceContext, spec: MethodSpec, resolved: dict[str, Any] | None, examples: list[dict[str, Any]], *,
         trained: finetune.Trained | None = None, verdict: dict[str, Any] | None = None,
         error: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"method": spec.label, "base_method": spec.method, "conditioned": spec.conditioned,
                           "unit": finetune.EXAMPLE_UNITS[spec.method], "examples": len(examples),
                           "fallback": None, "error": error}
    if resolved is not None:
        row["preference_data"] = resolved.get("preference_data")
        minimum = ctx.settings.finetune_min_preference_examples
        if spec.method != "paper" and len(examples) < minimum:
            row["fallback"] = (f"only {len(examples)} {row['unit']} (fewer than {minimum}): run by name here; "
                               f"as the default method it would fall back to paper")
        if spec.conditioned:
            row["taste_groups"] = resolved.get("taste_groups_record")
    if trained is not None:
        ft = trained.metrics["finetune"]
        roles = [e.get("role") for e in trained.result.training_set]
        row.update({
            "train": roles.count("train"), "heldout": roles.count("heldout"), "dropped": roles.count("dropped"),
            "steps": ft.get("steps"), "planned_steps": ft.get("planned_steps"), "stop_reason": ft.get("stop_reason"),
            "train_seconds": ft.get("wall_seconds"), "seconds": trained.metrics.get("wall_seconds"),
            "replay_source": trained.metrics.get("replay_source"), "model_dir": str(trained.folder),
            "finetune": ft,
        })
    if verdict is not None:
        quality = dict(verdict["quality"])
        if quality.get("measured"):
            quality["within_noise"] = not any(r.startswith("quality:") for r in verdict["reasons"])
        row.update({"groups": verdict["groups"], "diversity": verdict["diversity"],
                    "similarity": verdict["similarity"], "quality": quality, "gate_seconds": verdict["seconds"],
                    "gate": {"passed": verdict["passed"], "reasons": verdict["reasons"]},
                    "panel": verdict["panel"], "taste_model": verdict["taste_model"]})
    return row


def _report(parent: ModelVersion, panel: gating.GatePanel, overrides: dict[str, Any], top_n: int | None,
            stamp: str, root: Path, rows: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    return {"comparison": stamp, "folder": str(root), "parent": parent.name, "parent_id": parent.id,
            "settings": overrides, "top_n": top_n,
            "panel": {"songs": panel.song_ids, "seeds": panel.seeds},
            "taste_model": panel.model_info, "groups_from": panel.groups_info,
            "groups": [len(g) for g in panel.groups], "rows": rows,
            "wall_seconds": round(time.monotonic() - t0, 1)}


def _write(root: Path, report: dict[str, Any]) -> None:
    tmp = root / "comparison.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(root / "comparison.json")


# --- the table --------------------------------------------------------------------------------


def flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per method (numbers, not text): the table's columns, for CSV."""
    n_groups = len(report.get("groups") or [])
    out = []
    for row in report["rows"]:
        flat: dict[str, Any] = {
            "method": row["method"], "examples": row["examples"], "unit": row["unit"],
            "train": row.get("train"), "heldout": row.get("heldout"), "fallback": row.get("fallback") or "",
            "steps": row.get("steps"), "planned_steps": row.get("planned_steps"),
            "train_seconds": row.get("train_seconds"), "seconds": row.get("seconds"),
        }
        groups = {g["group"]: g for g in row.get("groups") or []}
        for g in range(n_groups):
            got = groups.get(g, {})
            interval = got.get("interval") or [None, None]
            flat.update({f"group{g}_delta": got.get("delta"), f"group{g}_low": interval[0],
                         f"group{g}_high": interval[1], f"group{g}_passed": got.get("passed")})
        div, sim, quality = row.get("diversity") or {}, row.get("similarity") or {}, row.get("quality") or {}
        flat.update({
            "diversity_parent": div.get("parent"), "diversity_child": div.get("child"),
            "diversity_ratio": div.get("ratio"),
            "similarity_parent": sim.get("parent"), "similarity_child": sim.get("child"),
            "quality_measured": quality.get("measured"), "quality_within_noise": quality.get("within_noise"),
            "gate_passed": (row.get("gate") or {}).get("passed"),
            "gate_reasons": "; ".join((row.get("gate") or {}).get("reasons", [])),
            "error": row.get("error") or "",
        })
        out.append(flat)
    return out


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def table(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table, one line per method."""
    n_groups = len(report.get("groups") or [])
    head = ["method", "examples (train / held out)", "fallback", "steps", "training", *(
        f"Δ★ group {g} ({report['groups'][g]} listeners) [95 %]" for g in range(n_groups)),
        "diversity (× parent)", "S to input", "eval quality", "gate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for flat, row in zip(flat_rows(report), report["rows"], strict=True):
        if row.get("error") and "gate" not in row:
            cells = [row["method"], f"{row['examples']} {row['unit']}", "", "", "",
                     *([""] * n_groups), "", "", "", f"not run: {row['error']}"]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        groups = [f"{_signed(flat[f'group{g}_delta'])} [{_signed(flat[f'group{g}_low'])}, "
                  f"{_signed(flat[f'group{g}_high'])}]" for g in range(n_groups)]
        quality = row["quality"]
        qcell = ("within noise" if quality.get("within_noise") else "WORSE than noise") if quality.get("measured") \
            else "not measured"
        gate = "passed" if row["gate"]["passed"] else f"failed ({len(row['gate']['reasons'])} reasons)"
        cells = [row["method"], f"{row['examples']} {row['unit']} ({row['train']} / {row['heldout']})",
                 row.get("fallback") or "—", f"{row['steps']} / {row['planned_steps']}",
                 f"{row['train_seconds']:.0f} s", *groups,
                 f"{flat['diversity_parent']:.3f} → {flat['diversity_child']:.3f} (×{flat['diversity_ratio']:.2f})"
                 if flat["diversity_ratio"] is not None else "—",
                 f"{flat['similarity_parent']:.3f} → {flat['similarity_child']:.3f}", qcell, gate]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
