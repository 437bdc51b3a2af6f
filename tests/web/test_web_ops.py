"""/healthz, /readyz, /metrics and request ids (issue 17)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from encore import logs


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_healthz_and_readyz(anon: TestClient, app: FastAPI) -> None:
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "queue", "blobs", "models"}
    assert body["checks"]["database"]["detail"] == "sqlite"
    assert all(c["ok"] for c in body["checks"].values())


def test_readyz_names_what_is_missing(make_app: Callable[..., FastAPI], tmp_path) -> None:
    app = make_app(base_model_dir=tmp_path / "nowhere")
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and not checks["models"]["ok"]
    assert "no base model" in checks["models"]["detail"]


def test_readyz_fails_when_the_database_is_gone(app: FastAPI, anon: TestClient) -> None:
    import sqlalchemy as sa

    app.state.ctx.engine.dispose()
    # point the engine at a file that cannot be opened
    app.state.ctx.engine.url = sa.engine.make_url("sqlite:////nonexistent/dir/x.db")
    bad = sa.create_engine("sqlite:////nonexistent/dir/x.db")
    app.state.ctx.engine = bad
    response = anon.get("/readyz")
    assert response.status_code == 503
    assert not response.json()["checks"]["database"]["ok"]


def test_metrics_count_requests_by_route_and_read_the_store(ready_delivery: int, listener: TestClient,
                                                            anon: TestClient) -> None:
    import time

    base = f"/api/deliveries/{ready_delivery}"
    listener.get(base)
    listener.get(f"{base}/audio")  # the listening clock starts
    time.sleep(0.7)
    r = listener.post(f"{base}/listens", json={"ranges": [[0.0, 0.7]], "final": True})
    assert listener.post(f"{base}/rating", json={"stars": 4}).status_code == 201
    anon.get("/no/such/page/123")
    text = anon.get("/metrics").text
    samples = _samples(text)
    route = "/api/deliveries/{delivery_id}"
    assert samples[("encore_http_requests_total",
                    (("method", "GET"), ("route", route), ("status", "200")))] >= 2
    assert samples[("encore_http_requests_total",
                    (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("encore_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", route)))] >= 2
    assert samples[("encore_ratings_total", ())] == 1
    assert samples[("encore_generated_audio_seconds_total", ())] >= 1.0
    done = samples[("encore_jobs", (("queue", "generate"), ("status", "done")))]
    assert done >= 2  # the song's embedding and the clip
    assert samples[("encore_job_duration_seconds_count",
                    (("kind", "generate_clip"), ("status", "done")))] >= 1
    assert samples[("encore_job_duration_seconds_bucket",
                    (("kind", "generate_clip"), ("le", "+Inf"), ("status", "done")))] >= 1
    assert ("encore_queue_depth", (("queue", "generate"),)) in samples
    assert r.status_code == 200


def test_metrics_token(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app(metrics_token="s3cret")) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
        ok = client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "encore_http_requests_total" in ok.text


def test_request_ids_in_headers_and_log_lines(anon: TestClient, caplog) -> None:
    logger = logging.getLogger("encore.web.routes.test_probe")
    response = anon.get("/healthz")
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert anon.get("/healthz", headers={"x-request-id": "edge-42"}).headers["x-request-id"] == "edge-42"
    bad = anon.get("/healthz", headers={"x-request-id": "no spaces <>"}).headers["x-request-id"]
    assert bad != "no spaces <>" and re.fullmatch(r"[0-9a-f]{32}", bad)
    # a record made inside a request carries its id; outside, "-"
    token = logs.request_id.set("edge-42")
    try:
        with caplog.at_level(logging.INFO):
            logger.info("inside")
    finally:
        logs.request_id.reset(token)
    logger.info("outside")
    inside = [r for r in caplog.records if r.getMessage() == "inside"][0]
    assert inside.request_id == "edge-42"
    text = logging.Formatter(logs.TEXT_FORMAT).format(inside)
    assert "[edge-42]: inside" in text
    line = json.loads(logs.JsonFormatter().format(inside))
    assert line["request_id"] == "edge-42" and line["message"] == "inside"


def test_log_lines_of_a_request_carry_its_id(listener: TestClient, caplog) -> None:
    from .web_helpers import song_bytes, upload

    with caplog.at_level(logging.INFO):
        response = upload(listener, song_bytes(3))
    assert response.status_code == 201, response.text
    rid = response.headers["x-request-id"]
    mine = [r.getMessage() for r in caplog.records if getattr(r, "request_id", None) == rid]
    assert any("uploaded by user" in m for m in mine), mine  # logged in the thread pool


@pytest.mark.postgres
def test_job_durations_from_postgresql(tmp_path) -> None:
    """The duration histogram's SQL on PostgreSQL (the web tests run on SQLite)."""
    import datetime as dt

    from encore.config import Settings
    from encore.services.context import ServiceContext
    from encore.store import Job
    from encore.store.enums import JobStatus
    from encore.web.ops import StoreCollector

    from ..postgres import migrated_postgres_database

    pytest.importorskip("psycopg")
    with migrated_postgres_database() as url:
        ctx = ServiceContext.from_settings(Settings(data_dir=tmp_path, database_url=url),
                                           queues=False)
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        with ctx.session() as s:
            for seconds in (0.3, 4.0, 40.0):
                s.add(Job(kind="generate_clip", status=JobStatus.DONE, started_at=t0,
                          finished_at=t0 + dt.timedelta(seconds=seconds)))
        families = {f.name: f for f in StoreCollector(ctx).collect()}
        samples = {(s.name, s.labels.get("le")): s.value
                   for s in families["encore_job_duration_seconds"].samples}
        assert samples[("encore_job_duration_seconds_count", None)] == 3
        assert samples[("encore_job_duration_seconds_sum", None)] == pytest.approx(44.3)
        assert samples[("encore_job_duration_seconds_bucket", "0.5")] == 1
        assert samples[("encore_job_duration_seconds_bucket", "5")] == 2
        assert samples[("encore_job_duration_seconds_bucket", "+Inf")] == 3
        ctx.engine.dispose()


def test_a_worker_log_line_names_its_job(tmp_path, caplog) -> None:
    """Outside a request, the lines a job logs carry "job-<id>"."""
    from encore.jobs import job_handler, run_job
    from encore.jobs.registry import unregister_handler
    from encore.store import enqueue_job
    from encore.store.db import make_engine, session_scope, upgrade

    logs.install()  # what every encore command does at start (cli.main)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(url)
    engine = make_engine(url)

    @job_handler("log_something")
    def log_something(ctx) -> None:
        logging.getLogger("encore.test_job").info("working")

    try:
        with session_scope(engine) as s:
            job_id = enqueue_job(s, "log_something", {}).id
        with caplog.at_level(logging.INFO):
            run_job(engine, job_id, heartbeat_seconds=5)
        line = next(r for r in caplog.records if r.getMessage() == "working")
        assert line.request_id == f"job-{job_id}"
        assert logs.request_id.get() == "-"
    finally:
        unregister_handler("log_something")
        engine.dispose()


def test_metrics_of_several_web_processes_add_up(tmp_path) -> None:
    """`encore serve --web-workers 2` with PROMETHEUS_MULTIPROC_DIR: one scrape counts the
    requests of both processes."""
    import httpx

    from encore.web.liveserver import LiveServer, build_tiny_models

    base, sim = build_tiny_models(tmp_path / "models")
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom), "ENCORE_BASE_MODEL_DIR": str(base),
           "ENCORE_SIMILARITY_MODEL_DIR": str(sim)}
    with LiveServer(tmp_path / "var", env=env, workers=False, args=("--web-workers", "2")) as s:
        for _ in range(40):
            with httpx.Client(base_url=s.url) as client:  # a new connection each time
                assert client.get("/healthz").status_code == 200
        samples = _samples(httpx.get(s.url + "/metrics").text)
    key = ("encore_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples[key] == 40
    pids = {p.name.rsplit("_", 1)[-1] for p in prom.glob("counter_*.db")}
    assert len(pids) == 2, pids  # both processes answered some of them
