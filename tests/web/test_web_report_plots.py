"""The report page's plots come from the blob store: a second web app with its own data
folder, sharing only the database and the blob store with the first, serves the plots the
first one drew."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services.context import ServiceContext
from encore.web.app import create_app

from .web_helpers import PASSWORD, listen_and_rate


def test_another_web_process_serves_the_plots(
    app: FastAPI, operator: TestClient, listener: TestClient, ready_delivery: int,
    tmp_path: Path,
) -> None:
    listen_and_rate(listener, ready_delivery, 4.0)
    first = app.state.settings
    other = first.model_copy(update={
        "data_dir": tmp_path / "host2",  # its own folder: no plots, no blobs
        "database_url": first.resolved_database_url,
        "storage_url": first.resolved_storage_url,
    })
    other.data_dir.mkdir()
    second = create_app(other, ctx=ServiceContext.from_settings(other, seed=8))
    op2 = TestClient(second)
    email = operator.get("/api/me").json()["user"]["email"]
    signin = op2.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
    assert signin.status_code == 200

    page = operator.get("/operator/report")  # drawn by the first app
    assert page.status_code == 200
    srcs = [part.split('"')[0] for part in page.text.split('src="/api/operator/report/plots/')[1:]]
    assert {s.split("?")[0] for s in srcs} >= {"ratings_per_version.png", "rating_distributions.png"}
    assert not (other.data_dir / "blobs").exists() or not any((other.data_dir / "blobs").iterdir())
    for src in srcs:
        image = op2.get("/api/operator/report/plots/" + src)
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
        assert image.headers["content-type"] == "image/png"
        assert "immutable" in image.headers["cache-control"]
        assert image.content == operator.get("/api/operator/report/plots/" + src).content
    latest = op2.get("/api/operator/report/plots/ratings_per_version.png")  # no digest
    assert latest.status_code == 200 and latest.headers["cache-control"] == "private, no-cache"
    assert op2.get("/api/operator/report/plots/nothing_here.png").status_code == 404
    assert op2.get("/api/operator/report/plots/..%2Fencore.db").status_code == 404
    assert listener.get("/api/operator/report/plots/" + srcs[0]).status_code == 403
