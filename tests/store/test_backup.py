"""encore backup / restore: a round trip on SQLite and PostgreSQL (rows, blobs, checksums),
refusals, and a backup taken while a real server runs and takes writes (tests/web)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from encore.errors import ConfigurationError, Conflict, InvalidInput
from encore.store import models as m
from encore.store.backup import backup, restore, verify
from encore.store.blobs import BlobStore, LocalBlobStore
from encore.store.db import make_engine, session_scope

from ..postgres import migrated_postgres_database


def _fill(engine: Engine, blobs: BlobStore, make) -> dict[str, int]:
    with session_scope(engine) as s:
        mk = make(s)
        user = mk.user()
        song = mk.song(user, blob_key=blobs.put(blobs.new_key("songs", ".wav"), b"RIFF" * 1000))
        version = mk.version()
        for i in range(3):
            clip = mk.clip([song], model_version_id=version.id,
                           audio_key=blobs.put(blobs.new_key("clips", ".ogg"), bytes([i]) * 5000))
            mk.rating(mk.delivery(clip, user), half_stars=4 + i)
    blobs.put("models/abc/manifest.json", b"{}")
    with engine.connect() as conn:
        return {t: conn.scalar(sa.text(f"select count(*) from {t}"))
                for t in ("users", "songs", "clips", "ratings", "model_versions")}


def _target_url(db_url: str, tmp_path: Path) -> tuple[str, object]:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'restored' / 'encore.db'}", None
    cm = migrated_postgres_database()
    return cm.__enter__(), cm


def test_round_trip(db_url: str, engine: Engine, make, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    counts = _fill(engine, blobs, make)
    manifest = backup(db_url, blobs, tmp_path / "backup")
    assert manifest["database"]["rows"]["ratings"] == 3
    assert {e["key"] for e in manifest["blobs"]} == set(blobs.list_keys(""))
    assert verify(tmp_path / "backup")["format"] == "encore-backup/1"

    target_url, cm = _target_url(db_url, tmp_path)
    try:
        target_blobs = LocalBlobStore(tmp_path / "restored-blobs")
        report = restore(target_url, target_blobs, tmp_path / "backup")
        assert report.rows == manifest["database"]["rows"]
        restored = make_engine(target_url)
        with restored.connect() as conn:
            got = {t: conn.scalar(sa.text(f"select count(*) from {t}")) for t in counts}
            ratings = sorted(conn.execute(sa.select(m.Rating.half_stars)).scalars())
        restored.dispose()
        assert got == counts and ratings == [4, 5, 6]
        assert all(target_blobs.get(k) == blobs.get(k) for k in blobs.list_keys(""))
        # a second restore into the now filled installation is refused
        with pytest.raises(Conflict, match="not empty"):
            restore(target_url, LocalBlobStore(tmp_path / "other-blobs"), tmp_path / "backup")
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)


def test_refusals(sqlite_url: str, make, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    eng = make_engine(sqlite_url)
    _fill(eng, blobs, make)
    eng.dispose()
    out = tmp_path / "backup"
    backup(sqlite_url, blobs, out)
    with pytest.raises(Conflict, match="not empty"):
        backup(sqlite_url, blobs, out)
    # a corrupt backup is refused before anything is written
    key = json.loads((out / "manifest.json").read_text())["blobs"][0]["key"]
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "blobs" / key).write_bytes(b"tampered")
    target = LocalBlobStore(tmp_path / "t-blobs")
    with pytest.raises(InvalidInput, match="differs"):
        restore(f"sqlite:///{tmp_path / 't.db'}", target, broken)
    assert target.list_keys("") == [] and not (tmp_path / "t.db").exists()
    # into a non-empty blob store, or another backend
    with pytest.raises(Conflict, match="blob store"):
        restore(f"sqlite:///{tmp_path / 't2.db'}", blobs, out)
    with pytest.raises(ConfigurationError, match="same kind"):
        restore("postgresql+psycopg://postgres@127.0.0.1:5432/none", target, out)


def test_round_trip_with_blobs_on_s3(sqlite_url: str, make, tmp_path: Path, s3_server) -> None:
    """The blobs come from one bucket and go back into another (moto's S3 server)."""
    from encore.store.blobs import make_blob_store

    source = make_blob_store(f"s3://{s3_server.new_bucket()}/encore", **s3_server.storage_options())
    eng = make_engine(sqlite_url)
    counts = _fill(eng, source, make)
    eng.dispose()
    manifest = backup(sqlite_url, source, tmp_path / "backup")
    assert {e["key"] for e in manifest["blobs"]} == set(source.list_keys(""))
    target = make_blob_store(f"s3://{s3_server.new_bucket()}/restored", **s3_server.storage_options())
    report = restore(f"sqlite:///{tmp_path / 'restored.db'}", target, tmp_path / "backup")
    assert report.rows["ratings"] == counts["ratings"] == 3
    assert target.list_keys("") == source.list_keys("")
    assert all(target.get(k) == source.get(k) for k in source.list_keys(""))
