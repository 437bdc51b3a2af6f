"""encore backup while a real server (web + workers) takes writes, then encore restore into
an empty installation: every song, clip, rating and version is back, checksums equal, and
the restored installation serves the same audio (issue 17)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from encore.store.blobs import LocalBlobStore
from encore.web.bench import _song
from encore.web.liveserver import LiveServer, build_tiny_models

PASSWORD = "backup-password-123"


def _env(tiny: tuple[Path, Path]) -> dict[str, str]:
    base, sim = tiny
    return {
        "ENCORE_BASE_MODEL_DIR": str(base), "ENCORE_SIMILARITY_MODEL_DIR": str(sim),
        "ENCORE_CLIP_SECONDS": "1", "ENCORE_INFERENCE_STEPS": "3",
        "ENCORE_MIN_LISTEN_SECONDS": "0.5", "ENCORE_MIN_SONG_SECONDS": "1",
        "ENCORE_OPEN_SIGNUP": "true", "ENCORE_BASELINE_PROBABILITY": "0",
        "ENCORE_DISPATCH_REVIEW_SHARE": "0", "ENCORE_TORCH_THREADS": "1",
        "ENCORE_LIMIT_LISTEN_ACCOUNT": "100000/60",
    }


def _encore(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "encore.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _client(url: str, email: str, signup: bool) -> tuple[httpx.Client, dict[str, str]]:
    http = httpx.Client(base_url=url, timeout=60)
    if signup:
        r = http.post("/api/auth/signup", json={"email": email, "password": PASSWORD,
                                                "display_name": email.split("@")[0]})
    else:
        r = http.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return http, {"x-csrf-token": r.json()["csrf_token"]}


def _ready_deliveries(http: httpx.Client, headers: dict[str, str], seed: int, n: int) -> list[int]:
    r = http.post("/api/songs", files={"file": ("s.wav", _song(seed), "audio/wav")}, headers=headers)
    r.raise_for_status()
    song_id = r.json()["song"]["id"]
    out = []
    for _ in range(n):
        for _attempt in range(600):
            r = http.post("/api/music", json={"song_ids": [song_id]}, headers=headers)
            if r.status_code not in (409, 429):
                break
            time.sleep(0.1)
        r.raise_for_status()
        out.append(int(r.json()["delivery_id"]))
    for d in out:
        for _ in range(600):
            status = http.get(f"/api/deliveries/{d}").json()["status"]
            if status == "ready":
                break
            assert status != "failed"
            time.sleep(0.1)
        http.get(f"/api/deliveries/{d}/audio").raise_for_status()
    return out


def _rows(db: Path, query: str) -> set:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text(query)).all())
    finally:
        engine.dispose()


def test_backup_under_load_then_restore_into_an_empty_installation(tmp_path: Path) -> None:
    tiny = build_tiny_models(tmp_path / "models")
    env = _env(tiny)
    source = tmp_path / "source"
    with LiveServer(source, env=env, workers=True) as server:
        http, headers = _client(server.url, "ada@example.org", signup=True)
        deliveries = _ready_deliveries(http, headers, seed=1, n=3)
        time.sleep(1.1)  # a 1-second clip can now be fully heard
        for i, d in enumerate(deliveries):
            r = http.post(f"/api/deliveries/{d}/listens", json={"ranges": [[0, 1.0]], "final": True},
                          headers=headers)
            assert r.status_code == 200, r.text
            r = http.post(f"/api/deliveries/{d}/rating", json={"stars": 2 + i}, headers=headers)
            assert r.status_code == 201, r.text
        db = source / "encore.db"
        queries = {
            "songs": "select id, blob_key from songs",
            "clips": "select id, audio_key from clips where audio_key is not null",
            "ratings": "select id, half_stars from ratings",
            "versions": "select id, name, folder from model_versions",
        }
        before = {k: _rows(db, q) for k, q in queries.items()}
        assert len(before["ratings"]) == 3 and before["versions"]

        # writes go on during the backup: heartbeats and another listener's new music
        stop = threading.Event()
        writes: dict[str, int] = {"ok": 0}

        def load() -> None:
            other, h2 = _client(server.url, "bob@example.org", signup=True)
            mine = _ready_deliveries(other, h2, seed=2, n=1)[0]
            t = 0.0
            while not stop.is_set():
                t = min(t + 0.05, 1.0)
                r = other.post(f"/api/deliveries/{mine}/listens", json={"ranges": [[0, t]]}, headers=h2)
                key = "ok" if r.status_code == 200 else str(r.status_code)
                writes[key] = writes.get(key, 0) + 1
                time.sleep(0.02)

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(3)
        out = _encore(["backup", "--out", str(tmp_path / "backup")],
                      {**env, "ENCORE_DATA_DIR": str(source)})
        stop.set()
        loader.join(60)
        assert writes["ok"] > 0 and set(writes) == {"ok"}, writes
        assert "backup in" in out
        source_blobs = LocalBlobStore(source / "blobs")
        manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
        for entry in manifest["blobs"]:
            assert hashlib.sha256(source_blobs.get(entry["key"])).hexdigest() == entry["sha256"]
        http.close()

    target = tmp_path / "target"  # an empty installation
    out = _encore(["restore", str(tmp_path / "backup")], {**env, "ENCORE_DATA_DIR": str(target)})
    assert "row counts and checksums match the backup" in out
    restored_db = target / "encore.db"
    for name, query in queries.items():
        assert before[name] <= _rows(restored_db, query), name  # everything from before is back
    restored_blobs = LocalBlobStore(target / "blobs")
    for _, key in before["songs"] | before["clips"]:
        assert restored_blobs.get(key) == source_blobs.get(key)
    for entry in manifest["blobs"]:
        assert hashlib.sha256(restored_blobs.get(entry["key"])).hexdigest() == entry["sha256"]

    # the restored installation serves the same audio to the same listener
    with LiveServer(target, env=env, workers=False) as server:
        http, _ = _client(server.url, "ada@example.org", signup=False)
        audio = http.get(f"/api/deliveries/{deliveries[0]}/audio")
        assert audio.status_code == 200
        clip_key = next(k for i, k in before["clips"] if audio.content == source_blobs.get(k))
        assert clip_key
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        http.close()


pytestmark = pytest.mark.timeout(600)
