"""Issue 18 §11, the smaller findings: each probe as a test."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts, songs
from encore.store import ClipStatus, Delivery, Job, LoginSession
from encore.web.routes.operator import csv_without_formulas

from .web_helpers import PASSWORD, signed_in, song_bytes, upload


def test_a_failed_job_shows_the_listener_no_internals(
    app: FastAPI, listener: TestClient, ready_delivery: int
) -> None:
    with app.state.ctx.session() as session:
        clip = session.get(Delivery, ready_delivery).clip
        clip.status = ClipStatus.FAILED
        job = session.get(Job, clip.job_id)
        job.error = "RuntimeError: CUDA out of memory at /srv/encore/secret/path.py:12"
    view = listener.get(f"/api/deliveries/{ready_delivery}").json()
    assert view["status"] == "failed"
    assert view["message"] == "making this music failed; please try again"


def test_csv_cells_that_look_like_formulas_are_quoted() -> None:
    text = 'title,stars\r\n"=HYPERLINK(""http://evil"",""x"")",4.5\r\n+cmd,-1.5\r\n@SUM(A1),3\r\n'
    rows = list(csv.reader(io.StringIO(csv_without_formulas(text))))
    assert rows[1] == ["'=HYPERLINK(\"http://evil\",\"x\")", "4.5"]
    assert rows[2] == ["'+cmd", "-1.5"]  # a negative number stays a number
    assert rows[3] == ["'@SUM(A1)", "3"]


def test_ratings_csv_never_carries_a_formula_from_a_song_title(
    listener: TestClient, operator: TestClient
) -> None:
    title = '=HYPERLINK("http://evil.example","click")'
    song = upload(listener, song_bytes(1), data={"title": title}).json()["song"]
    assert song["title"] == title
    delivery = listener.post("/api/music", json={"song_ids": [song["id"]]}).json()["delivery_id"]
    base = f"/api/deliveries/{delivery}"
    listener.get(f"{base}/audio")
    time.sleep(0.6)
    assert listener.post(f"{base}/listens", json={"ranges": [[0, 0.6]]}).json()["rating_allowed"]
    assert listener.post(f"{base}/rating", json={"stars": 4}).status_code == 201
    text = operator.get("/api/operator/ratings.csv").text
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert any(title in c for c in cells)
    assert not any(c.startswith(("=", "+", "@")) for c in cells)


def test_a_failed_commit_leaves_no_orphan_blob(
    app: FastAPI, listener: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the queue is down")

    monkeypatch.setattr(songs, "enqueue_job", broken)
    blobs = Path(app.state.settings.data_dir) / "blobs"
    before = sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    quiet = TestClient(app, raise_server_exceptions=False, cookies=listener.cookies,
                       headers=dict(listener.headers))
    r = upload(quiet, song_bytes(5))
    assert r.status_code == 500
    after = sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    assert after == before
    assert listener.get("/api/songs").json()["songs"] == []


def test_expired_sessions_are_purged(app: FastAPI) -> None:
    ctx = app.state.ctx
    accounts.create_user(ctx, email="ada@example.org", password=PASSWORD)
    signed_in(app, "ada@example.org")
    with ctx.session() as session:
        session.execute(sa.update(LoginSession).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    signed_in(app, "ada@example.org")  # a new sign-in sweeps the expired ones
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LoginSession)) == 1


def test_orphan_blobs_are_collected_and_referenced_ones_kept(
    app: FastAPI, listener: TestClient, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os

    from encore import cli
    from encore.commands import blobs as blobs_cmd

    ctx = app.state.ctx
    song = upload(listener, song_bytes(1)).json()["song"]
    orphan = ctx.blobs.new_key("songs", ".wav")
    ctx.blobs.put(orphan, b"left behind by a failed commit", content_type="audio/wav")
    fresh = ctx.blobs.new_key("clips", ".ogg")
    ctx.blobs.put(fresh, b"a clip whose row is about to commit", content_type="audio/ogg")
    old = ctx.blobs.local_path(orphan)
    os.utime(old, (old.stat().st_atime - 7200, old.stat().st_mtime - 7200))
    monkeypatch.setattr(blobs_cmd, "service_context", lambda **_: ctx)
    assert cli.main(["blobs", "gc", "--dry-run"]) == 0
    assert "1 orphan blobs would be deleted" in capsys.readouterr().out
    assert ctx.blobs.exists(orphan)
    assert cli.main(["blobs", "gc"]) == 0
    assert not ctx.blobs.exists(orphan)
    assert ctx.blobs.exists(fresh)  # too young: its row may still be on the way
    assert listener.get(f"/api/songs/{song['id']}/audio").status_code == 200
