"""``encore backup`` / ``encore restore``: the database and every blob, with a manifest and
checksums, taken while the platform runs.

A backup is a folder::

    manifest.json        format, time, database backend, schema revision, rows per table,
                         sha256 of the database file and of every blob (written last: a
                         folder without it is an unfinished backup)
    database.sqlite      SQLite's online backup API (a consistent copy; writers go on), or
    database.pgdump      pg_dump --format=custom, taken in the snapshot the rows were counted in
    blobs/<key>          every blob (songs, clips, spectrograms, model versions …)

The database is copied first, the blobs after: every blob the copied rows refer to was
complete before its row was written (blobs are written before their rows and never
rewritten under the same key), so it is in the store when the blobs are copied unless it
was deleted in between (a purge); such keys cannot be told apart from blobs that a row
no longer needs, so the backup simply holds what the store held. Blobs written after the
database copy are extra, never missing.

Not in a backup: the job queue's messages (the database is the truth: the sweep sends
queued jobs again), the per-host model caches (fetched again), the settings.

:func:`restore` wants an empty installation (a database without rows, at most migrated; an
empty blob store) of the same backend. It checks every checksum before it writes anything,
restores the database (file copy, or ``pg_restore``), uploads the blobs, then reads both
back and compares the row counts and checksums with the manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from encore.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from encore.store.blobs import BlobStore, make_blob_store, sha256_file
from encore.store.db import normalise_url

logger = logging.getLogger(__name__)

FORMAT = "encore-backup/1"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"


@dataclass
class RestoreReport:
    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0


def _tables() -> list[str]:
    from encore.store import models  # noqa: F401 - registers the tables
    from encore.store.base import Base

    return [t.name for t in Base.metadata.sorted_tables]


def _count_rows(conn: sa.Connection) -> dict[str, int]:
    existing = set(sa.inspect(conn).get_table_names())
    return {name: int(conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            for name in _tables() if name in existing}


def _revision(conn: sa.Connection) -> str | None:
    if "alembic_version" not in sa.inspect(conn).get_table_names():
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` as libpq understands it (``postgresql://…``)."""
    parsed = make_url(normalise_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigurationError(f"{name} is not installed (PostgreSQL's client tools)")
    return found


# --- backup ----------------------------------------------------------------------------------


def _backup_sqlite(url: str, target: Path) -> tuple[dict[str, int], str | None]:
    database = make_url(url).database or ""
    if not database or database == ":memory:" or not Path(database).is_file():
        raise NotFound(f"SQLite database {database!r} does not exist")
    src = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # SQLite's online backup: a consistent copy while writers go on
    finally:
        dst.close()
        src.close()
    engine = sa.create_engine(f"sqlite:///{target}")
    try:
        with engine.connect() as conn:
            return _count_rows(conn), _revision(conn)
    finally:
        engine.dispose()


def _backup_postgres(url: str, target: Path) -> tuple[dict[str, int], str | None]:
    pg_dump = _pg_tool("pg_dump")
    engine = sa.create_engine(normalise_url(url), isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn:
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            rows, revision = _count_rows(conn), _revision(conn)
            # pg_dump reads the very snapshot the rows were counted in (kept open meanwhile)
            subprocess.run(
                [pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={target}", f"--dbname={_libpq_url(url)}"],
                check=True, capture_output=True, text=True,
            )
            conn.rollback()
    except subprocess.CalledProcessError as exc:
        raise ConfigurationError(f"pg_dump failed: {exc.stderr.strip()}") from exc
    finally:
        engine.dispose()
    return rows, revision


def backup(database_url: str, blobs: BlobStore, out: Path) -> dict[str, Any]:
    """Back up the database at ``database_url`` and every blob of ``blobs`` into the new
    folder ``out``; return the manifest (also written to ``out/manifest.json``).

    Raises
    ------
    Conflict
        If ``out`` exists and is not empty.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise Conflict(f"{out} is not empty; back up into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    backend = make_url(normalise_url(database_url)).get_backend_name()
    if backend == "sqlite":
        db_file = out / SQLITE_FILE
        rows, revision = _backup_sqlite(database_url, db_file)
    else:
        db_file = out / PG_FILE
        rows, revision = _backup_postgres(database_url, db_file)
    logger.info("database copied (%s, %d rows)", backend, sum(rows.values()))
    entries = []
    total = 0
    for key in blobs.list_keys(""):
        target = out / "blobs" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            sha256, size = blobs.download_hashed(key, target)
        except NotFound:  # deleted since it was listed
            target.unlink(missing_ok=True)
            continue
        entries.append({"key": key, "size": size, "sha256": sha256})
        total += size
    manifest = {
        "format": FORMAT,
        "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "database": {"backend": backend, "file": db_file.name, "sha256": sha256_file(db_file),
                     "revision": revision, "rows": rows},
        "blob_store": blobs.url.split("?")[0],
        "blobs": entries,
        "blob_bytes": total,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, out / MANIFEST)
    logger.info("backup in %s: %d rows, %d blobs (%.1f MB)", out, sum(rows.values()),
                len(entries), total / 1e6)
    return manifest


# --- restore ---------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise NotFound(f"{folder} has no {MANIFEST} (not a backup, or an unfinished one)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def verify(folder: Path) -> dict[str, Any]:
    """Check every checksum of the backup in ``folder``; return its manifest.

    Raises
    ------
    InvalidInput
        If a file is missing or differs from the manifest.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    db = manifest["database"]
    db_file = folder / db["file"]
    if not db_file.is_file() or sha256_file(db_file) != db["sha256"]:
        raise InvalidInput(f"{db_file} is missing or differs from the manifest")
    for entry in manifest["blobs"]:
        path = folder / "blobs" / entry["key"]
        if not path.is_file() or path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise InvalidInput(f"blob {entry['key']} is missing from the backup or differs")
    return manifest


def _ensure_empty_database(url: str) -> None:
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            rows = _count_rows(conn)
    except sa.exc.OperationalError:
        return  # a SQLite file that cannot be opened yet: there is nothing to lose
    finally:
        engine.dispose()
    filled = {k: v for k, v in rows.items() if v}
    if filled:
        raise Conflict(f"the target database is not empty ({filled}); restore into an empty one")


def restore(database_url: str, blobs: BlobStore, folder: Path) -> RestoreReport:
    """Restore the backup in ``folder`` into an empty installation (see the module doc).

    Raises
    ------
    Conflict
        If the target database has rows or the blob store has blobs.
    ConfigurationError
        If the backup's database backend differs from the target's.
    InvalidInput
        If the backup's files do not match its manifest.
    """
    folder = Path(folder)
    manifest = verify(folder)
    db = manifest["database"]
    url = normalise_url(database_url)
    backend = make_url(url).get_backend_name()
    if backend != db["backend"]:
        raise ConfigurationError(
            f"the backup holds a {db['backend']} database and the target is {backend}: "
            "restore into the same kind (move between them with a data export, not a backup)"
        )
    _ensure_empty_database(url)
    if blobs.list_keys(""):
        raise Conflict(f"the blob store {blobs.url} is not empty; restore into an empty one")
    if backend == "sqlite":
        target = Path(make_url(url).database or "")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".restore-", dir=target.parent)
        os.close(fd)
        shutil.copyfile(folder / db["file"], tmp)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, target)
    else:
        pg_restore = _pg_tool("pg_restore")
        try:
            subprocess.run(
                [pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges",
                 "--single-transaction", f"--dbname={_libpq_url(url)}", str(folder / db["file"])],
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigurationError(f"pg_restore failed: {exc.stderr.strip()}") from exc
    report = RestoreReport()
    for entry in manifest["blobs"]:
        blobs.put(entry["key"], folder / "blobs" / entry["key"])
        report.blobs += 1
        report.blob_bytes += int(entry["size"])
    # read everything back
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            report.rows = _count_rows(conn)
    finally:
        engine.dispose()
    if report.rows != db["rows"]:
        raise InvalidInput(f"restored rows {report.rows} differ from the backup's {db['rows']}")
    for entry in manifest["blobs"]:
        digest = hashlib.sha256()
        for chunk in blobs.read_chunks(entry["key"], chunk_size=1 << 20):
            digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise InvalidInput(f"blob {entry['key']} differs after the restore")
    logger.info("restored %s: %d rows, %d blobs (%.1f MB)", folder, sum(report.rows.values()),
                report.blobs, report.blob_bytes / 1e6)
    return report


def blob_store_for(settings: Any) -> BlobStore:
    return make_blob_store(settings.resolved_storage_url, **settings.storage_options)
