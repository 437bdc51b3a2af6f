"""Operator routes: role checks, users, curation, purge, versions, report, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from .web_helpers import listen_and_rate

OPERATOR_GETS = [
    "/api/operator/users", "/api/operator/dataset", "/api/operator/raters",
    "/api/operator/versions", "/api/operator/report", "/api/operator/ratings.csv",
    "/api/operator/served.csv",
    "/api/operator/training-runs", "/api/operator/training-runs/1", "/api/operator/taste",
]
OPERATOR_POSTS = [
    ("/api/operator/invitations", None), ("/api/operator/curate", None),
    ("/api/operator/purge", None), ("/api/operator/users/1/active", {"active": False}),
    ("/api/operator/versions/1/activate", {"ab_weight": 1}),
    ("/api/operator/versions/1/weight", {"ab_weight": 1}),
    ("/api/operator/versions/1/retire", None),
    ("/api/operator/versions/1/finetune", {}),
]
OPERATOR_PAGES = [
    "/operator/users", "/operator/dataset", "/operator/raters", "/operator/versions",
    "/operator/report", "/operator/taste",
]


def test_listeners_cannot_use_operator_routes(listener: TestClient) -> None:
    for path in OPERATOR_GETS:
        response = listener.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"]["message"] == "this page is for the platform's operators only"
    for path, body in OPERATOR_POSTS:
        assert listener.post(path, json=body).status_code == 403, path
    for path in OPERATOR_PAGES:
        page = listener.get(path)
        assert page.status_code == 403 and "operators only" in page.text, path


def test_operator_routes_need_sign_in(anon: TestClient) -> None:
    for path in OPERATOR_GETS:
        assert anon.get(path).status_code == 401
    for path in OPERATOR_PAGES:
        assert anon.get(path, follow_redirects=False).status_code == 303


def test_operator_pages_render_when_empty(operator: TestClient) -> None:
    for path in OPERATOR_PAGES:
        page = operator.get(path)
        assert page.status_code == 200, (path, page.text[:500])
    assert "No counted rating yet" in operator.get("/operator/report").text
    assert operator.get("/api/operator/report").json() == {"report": None}
    assert operator.post("/api/operator/purge").json()["removed"] == []
    assert "No taste model yet" in operator.get("/operator/taste").text
    assert operator.get("/api/operator/taste").json() == {"snapshot": None, "listeners": []}


def test_taste_page_shows_the_snapshot_and_each_listeners_fit(
    operator: TestClient, listener: TestClient, ready_delivery: int
) -> None:
    listen_and_rate(listener, ready_delivery, 4.0)  # curation then fits a taste snapshot
    operator.post("/api/operator/curate")
    data = operator.get("/api/operator/taste").json()
    assert data["snapshot"]["reason"] == "curation" and data["snapshot"]["n_ratings"] == 1
    assert [row["n_ratings"] for row in data["listeners"]] == [1]
    assert data["listeners"][0]["mean_given"] == 4.0
    page = operator.get("/operator/taste").text
    assert "Per listener: predicted against given" in page and "latest snapshot" in page


def test_versions_activate_weight_retire(operator: TestClient, listener: TestClient, ready_delivery: int) -> None:
    versions = operator.get("/api/operator/versions").json()["versions"]
    assert [(v["name"], v["status"], v["ab_weight"]) for v in versions] == [("v0", "active", 1.0)]
    v0 = versions[0]["id"]
    weight = operator.post(f"/api/operator/versions/{v0}/weight", json={"ab_weight": 2.5})
    assert weight.status_code == 200 and weight.json()["version"]["ab_weight"] == 2.5
    assert operator.post(f"/api/operator/versions/{v0}/weight", json={"ab_weight": -1}).status_code == 422
    only = operator.post(f"/api/operator/versions/{v0}/retire")
    assert only.status_code == 409 and "only active version" in only.json()["error"]["message"]
    assert operator.post("/api/operator/versions/999/activate", json={"ab_weight": 1}).status_code == 404
    page = operator.get("/operator/versions")
    assert "v0" in page.text and "2.5" in page.text


def test_a_draft_that_failed_its_gate_shows_why_and_activates_only_when_forced(
    operator: TestClient, ctx, ready_delivery: int
) -> None:
    from encore.services import gating, versions

    v0 = versions.version_by_name(ctx, "v0")
    with ctx.session() as session:
        child = versions.register_version(session, folder=v0.folder, parent_id=v0.id).id
    verdict = gating.gate_version(ctx, child)  # nothing rated yet: it cannot be gated
    assert verdict["passed"] is False
    page = operator.get("/operator/versions").text
    assert 'data-gate="failed"' in page and "gate FAILED: could not be gated" in page
    assert 'name="force"' in page and "activate despite the failed gate" in page
    refused = operator.post(f"/api/operator/versions/{child}/activate", json={"ab_weight": 1})
    assert refused.status_code == 409
    assert "failed its gate against its parent (could not be gated" in refused.json()["error"]["message"]
    listed = {v["id"]: v for v in operator.get("/api/operator/versions").json()["versions"]}
    assert listed[child]["status"] == "draft" and listed[child]["metrics"]["gate"] == verdict
    forced = operator.post(f"/api/operator/versions/{child}/activate",
                           json={"ab_weight": 1, "force": True})
    assert forced.status_code == 200 and forced.json()["version"]["status"] == "active"


def test_a_rating_reaches_the_report_csv_and_curation(
    operator: TestClient, listener: TestClient, ready_delivery: int
) -> None:
    listen_and_rate(listener, ready_delivery, 4.5)
    built = operator.get("/api/operator/report").json()["report"]
    assert built is not None
    overall = built["table"]["overall"]
    assert [(c["version_id"], c["mean"], c["count"]) for c in overall] == [("v0", 4.5, 1)]
    # a new clip rated by its requester: "new" (generate + review) and "generate"
    assert set(built["by_branch"]) == {"new", "generate"}

    page = operator.get("/operator/report")
    assert page.status_code == 200
    assert "4.50" in page.text and "Overall" in page.text
    assert "New clips, rated by their requester" in page.text
    plots = [part.split('"')[0] for part in page.text.split('src="/api/operator/report/plots/')[1:]]
    assert plots, "the report page shows plots"
    image = operator.get("/api/operator/report/plots/" + plots[0])
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    assert operator.get("/api/operator/report/plots/..%2Fencore.db").status_code == 404

    response = operator.get("/api/operator/ratings.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1 and float(rows[0]["stars"]) == 4.5
    assert float(rows[0]["listened_fraction"]) == pytest.approx(0.6, abs=0.01)
    assert "@" not in response.text  # raters are pseudonymous

    curated = operator.post("/api/operator/curate")
    assert curated.status_code == 200 and "clip(s) admitted" in curated.json()["message"]
    assert operator.get("/operator/dataset").status_code == 200
    assert operator.get("/operator/raters").status_code == 200


def test_users_and_invitations(operator: TestClient, login: Callable[..., TestClient]) -> None:
    login("carol")
    users = operator.get("/api/operator/users").json()["users"]
    assert {u["display_name"] for u in users} >= {"op", "carol"}
    me = next(u for u in users if u["display_name"] == "op")
    self_off = operator.post(f"/api/operator/users/{me['id']}/active", json={"active": False})
    assert self_off.status_code == 409
    assert operator.post("/api/operator/users/99999/active", json={"active": False}).status_code == 404
    page = operator.get("/operator/users")
    assert "carol" in page.text and "Create an invitation code" in page.text


def test_finetune_needs_a_dataset_then_publishes_a_version_with_its_curve(
    operator: TestClient, listener: TestClient, ready_delivery: int
) -> None:
    v0 = operator.get("/api/operator/versions").json()["versions"][0]["id"]
    empty = operator.post(f"/api/operator/versions/{v0}/finetune", json={})
    assert empty.status_code == 422 and "curated dataset is empty" in empty.json()["error"]["message"]
    assert operator.post(f"/api/operator/versions/{v0}/finetune", json={"steps": 0}).status_code == 422
    bad = operator.post(f"/api/operator/versions/{v0}/finetune", json={"settings": {"nope": 1}})
    assert bad.status_code == 422
    # the method in the body reaches the service: Diffusion-DPO needs pairs of rated clips
    dpo = operator.post(f"/api/operator/versions/{v0}/finetune", json={"method": "dpo"})
    assert dpo.status_code == 422 and "no preference pairs" in dpo.json()["error"]["message"]
    assert operator.post(f"/api/operator/versions/{v0}/finetune", json={"method": "ppo"}).status_code == 422

    listen_and_rate(listener, ready_delivery, 4.0)
    assert operator.post("/api/operator/curate").json()["admitted"], "cold start admits the clip"
    started = operator.post(f"/api/operator/versions/{v0}/finetune", json={"steps": 2})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    run = operator.get(f"/api/operator/training-runs/{run_id}").json()  # immediate mode: done
    assert run["status"] == "done", run
    assert run["parent"] == "v0" and run["version"] == "v1" and run["n_clips"] == 1
    assert run["loss_curve"]
    assert [r["run_id"] for r in operator.get("/api/operator/training-runs").json()["runs"]] == [run_id]
    names = {v["name"]: v["status"] for v in operator.get("/api/operator/versions").json()["versions"]}
    assert names == {"v0": "active", "v1": "draft"}
    page = operator.get("/operator/versions")
    assert "<polyline" in page.text and "#" + str(run_id) in page.text
    assert operator.get("/api/operator/training-runs/999").status_code == 404
