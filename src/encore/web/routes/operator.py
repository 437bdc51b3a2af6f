"""Operator pages and API: users and invitations, the curated dataset, curation and purge,
model versions (activate, A/B weight, retire, fine-tune), the report and its CSV, raters.

Every route here requires the operator role (``OperatorUser``).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from encore.services import (
    accounts,
    curation,
    finetune,
    gating,
    report,
    report_blobs,
    taste,
    versions,
)
from encore.web import views
from encore.web.deps import CtxDep, OperatorUser, render

router = APIRouter()


class ActiveBody(BaseModel):
    active: bool


class WeightBody(BaseModel):
    ab_weight: float = Field(ge=0.0, le=1e6)


class ActivateBody(WeightBody):
    # activate a draft that failed its gate against its parent (docs/finetune.md, gating)
    force: bool = False


class FinetuneBody(BaseModel):
    steps: int | None = Field(default=None, ge=1, le=1_000_000)
    top_n: int | None = Field(default=None, ge=1, le=100_000)
    # "paper", "dpo" or "kto" (docs/finetune.md); None: ENCORE_FINETUNE_METHOD
    method: Literal["paper", "dpo", "kto"] | None = None
    settings: dict[str, Any] | None = None


# --- pages ---------------------------------------------------------------------------------


@router.get("/operator", include_in_schema=False)
def operator_home(user: OperatorUser) -> Response:
    """The operator's start page is the report."""
    return RedirectResponse("/operator/report", status_code=303)


@router.get("/operator/users", include_in_schema=False)
def users_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """Accounts, and invitations to sign up."""
    return render(
        request, "operator/users.html", user=user, users=accounts.list_users(ctx, operator=user)
    )


@router.get("/operator/dataset", include_in_schema=False)
def dataset_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """The curated dataset: R, confidence, ratings, and why removed clips left."""
    rows = curation.list_dataset(ctx, include_removed=True)
    return render(request, "operator/dataset.html", user=user, rows=rows, clip_images=False)


@router.get("/operator/raters", include_in_schema=False)
def raters_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """Rater quality: weights, biases, and flagged raters with the reasons."""
    return render(request, "operator/raters.html", user=user, raters=curation.list_raters(ctx))


@router.get("/operator/taste", include_in_schema=False)
def taste_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """The taste model: held-out figures against the baselines, per-listener fits."""
    snapshot, fits = taste.listener_fits(ctx)
    scores = (snapshot.metrics or {}).get("scores") if snapshot is not None else None
    return render(request, "operator/taste.html", user=user, snapshot=snapshot, fits=fits,
                  scores=scores)


@router.get("/api/operator/taste")
def taste_api(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """The latest taste snapshot's figures and per-listener fits (JSON)."""
    snapshot, fits = taste.listener_fits(ctx)
    if snapshot is None:
        return {"snapshot": None, "listeners": []}
    return {
        "snapshot": {"id": snapshot.id, "reason": snapshot.reason,
                     "n_ratings": snapshot.n_ratings, "n_listeners": snapshot.n_listeners,
                     "created_at": snapshot.created_at.isoformat(), "metrics": snapshot.metrics},
        "listeners": [f.__dict__ for f in fits],
    }


@router.get("/operator/versions", include_in_schema=False)
def versions_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """Model versions: status, A/B weights, lineage, gate verdicts; activate, weigh, retire,
    fine-tune."""
    rows = versions.list_versions(ctx)
    return render(
        request,
        "operator/versions.html",
        user=user,
        versions=rows,
        gates={v.id: gating.summary((v.metrics or {}).get("gate")) for v in rows if v.parent_id},
        gate_failed={v.id for v in rows if versions.gate_failure(v)},
        runs=finetune.list_runs(ctx),
    )


@router.get("/operator/report", include_in_schema=False)
def report_page(request: Request, user: OperatorUser, ctx: CtxDep) -> Response:
    """Table 1 (mean rating and count per input song and version), the change per iteration
    with its bootstrap interval, the split by dispatch branch, and the plots (stored as
    blobs, so that any web process can serve them)."""
    built = report.build_report(ctx)
    plots = report_blobs.publish_report_plots(ctx, report=built) if built else []
    return render(
        request,
        "operator/report.html",
        user=user,
        report=built,
        plots=plots,
    )


# --- API -----------------------------------------------------------------------------------


@router.get("/api/operator/users")
def api_users(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Every account."""
    return {"users": [views.user_admin_json(u) for u in accounts.list_users(ctx, operator=user)]}


@router.post("/api/operator/invitations", status_code=201)
def api_invite(request: Request, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """A one-time sign-up code (shown once) and the sign-up link that carries it."""
    code = accounts.create_invitation(ctx, operator=user)
    link = str(request.url_for("signup_page").include_query_params(code=code))
    return {"code": code, "url": link, "message": f"Invitation code: {code}"}


@router.post("/api/operator/users/{user_id}/active")
def api_set_active(
    request: Request, user_id: int, body: ActiveBody, user: OperatorUser, ctx: CtxDep
) -> dict[str, Any]:
    """Activate or deactivate an account (deactivated users cannot sign in)."""
    changed = accounts.set_active(ctx, operator=user, user_id=user_id, active=body.active)
    # Deactivation deleted its sessions; this process forgets them now, not when the cache
    # expires.
    request.app.state.session_users.clear()
    request.app.state.csrf_tokens.clear()
    return {"user": views.user_admin_json(changed)}


@router.post("/api/operator/curate")
def api_curate(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Assess raters, score rated clips, admit the clips that beat their baseline."""
    result = curation.curate(ctx)
    body = views.dataclass_json(result)
    body["message"] = (
        f"{len(result.admitted)} clip(s) admitted, {result.rejected} rejected, "
        f"{result.pending} waiting for ratings; {result.raters_flagged} of "
        f"{result.raters_assessed} raters flagged"
    )
    return body


@router.post("/api/operator/purge")
def api_purge(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Run a purge cycle now (near-duplicates, age, retired versions, capacity)."""
    result = curation.purge(ctx)
    body = views.dataclass_json(result)
    body["message"] = f"{len(result.removed)} clip(s) removed, {result.kept} kept"
    return body


@router.get("/api/operator/dataset")
def api_dataset(user: OperatorUser, ctx: CtxDep, include_removed: bool = True) -> dict[str, Any]:
    """The dataset entries, best first, removed ones with their reason."""
    rows = curation.list_dataset(ctx, include_removed=include_removed)
    return {"entries": [views.dataclass_json(r) for r in rows]}


@router.get("/api/operator/raters")
def api_raters(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Rater assessments, flagged first."""
    return {"raters": [views.dataclass_json(r) for r in curation.list_raters(ctx)]}


@router.get("/api/operator/versions")
def api_versions(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Every model version."""
    return {"versions": [views.version_json(v) for v in versions.list_versions(ctx)]}


@router.post("/api/operator/versions/{version_id}/activate")
def api_activate(version_id: int, body: ActivateBody, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Serve a version alongside the other active ones, with A/B weight ``ab_weight``; a
    draft that failed its gate is refused (409, with the reasons) unless ``force``."""
    version = versions.activate_version(ctx, version_id=version_id, ab_weight=body.ab_weight,
                                        force=body.force)
    return {"version": views.version_json(version), "message": f"{version.name} is active"}


@router.post("/api/operator/versions/{version_id}/weight")
def api_set_weight(version_id: int, body: WeightBody, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Change a version's A/B weight."""
    version = versions.set_ab_weight(ctx, version_id=version_id, ab_weight=body.ab_weight)
    return {"version": views.version_json(version), "message": f"{version.name} weight {version.ab_weight:g}"}


@router.post("/api/operator/versions/{version_id}/retire")
def api_retire(version_id: int, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Stop serving a version for good."""
    version = versions.retire_version(ctx, version_id=version_id)
    return {"version": views.version_json(version), "message": f"{version.name} is retired"}


@router.post("/api/operator/versions/{version_id}/finetune", status_code=201)
def api_finetune(version_id: int, body: FinetuneBody, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Start fine-tuning a new version from ``version_id`` on the top-N dataset clips (runs
    on the training queue; follow it with ``GET /api/operator/training-runs/{run_id}``)."""
    overrides = dict(body.settings or {})
    if body.steps is not None:
        overrides["steps"] = body.steps
    if body.method is not None:
        overrides["method"] = body.method
    run = finetune.start_finetune(
        ctx, parent_version_id=version_id, settings=overrides or None, top_n=body.top_n
    )
    return {"run_id": run.id, "message": f"fine-tuning run {run.id} queued"}


@router.get("/api/operator/training-runs")
def api_training_runs(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """Every fine-tuning run, newest first."""
    return {"runs": [views.dataclass_json(r) for r in finetune.list_runs(ctx)]}


@router.get("/api/operator/training-runs/{run_id}")
def api_training_run(run_id: int, user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """One run: status, progress and message, loss curve, error."""
    return views.dataclass_json(finetune.training_status(ctx, run_id))


@router.get("/api/operator/report")
def api_report(user: OperatorUser, ctx: CtxDep) -> dict[str, Any]:
    """The report's numbers (``report: null`` while no rating counts)."""
    built = report.build_report(ctx)
    return {"report": views.report_json(built) if built is not None else None}


@router.get("/api/operator/report/plots/{name}")
def api_report_plot(name: str, user: OperatorUser, ctx: CtxDep, v: str | None = None) -> Response:
    """A plot drawn by a report page view on any web process: the drawing whose content
    hash is ``v`` (it never changes: cached for a day), else the latest drawing."""
    png, exact = report_blobs.report_plot_png(ctx, name, v)
    cache = "private, max-age=86400, immutable" if exact else "private, no-cache"
    return Response(png, media_type="image/png", headers={"cache-control": cache})


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_without_formulas(text: str) -> str:
    """``text`` (CSV) with every cell that starts like a formula prefixed by ``'``, so that
    a title such as ``=HYPERLINK(…)`` is shown, not run, when the file is opened in a
    spreadsheet. Numbers (``-1.5``) are left as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in csv.reader(io.StringIO(text)):
        writer.writerow([_inert(cell) for cell in row])
    return out.getvalue()


def _inert(cell: str) -> str:
    if not cell.startswith(_FORMULA_START):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell


@router.get("/api/operator/served.csv")
def api_served_csv(user: OperatorUser, ctx: CtxDep) -> Response:
    """Every generated clip a version served (the report's guards): version, selection, pair,
    S to the input and the audio descriptors."""
    return Response(
        csv_without_formulas(report.served_csv(ctx)),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="encore-served.csv"'},
    )


@router.get("/api/operator/ratings.csv")
def api_ratings_csv(user: OperatorUser, ctx: CtxDep) -> Response:
    """Every rating with its listen, clip, version, branch and pseudonymous rater.

    Cells a spreadsheet would run as a formula (song titles come from listeners) are
    quoted with a leading apostrophe (:func:`csv_without_formulas`)."""
    return Response(
        csv_without_formulas(report.ratings_csv(ctx)),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="encore-ratings.csv"'},
    )
