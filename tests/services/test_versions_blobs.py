"""Model versions as content-hashed folders in the blob store, on local files and on S3
(moto's server): publish (atomic), load on another "host" (its own cache), import, export,
retire, purge."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from encore.config import Settings
from encore.errors import Conflict, InvalidInput, NotFound
from encore.services import versions
from encore.services.context import ServiceContext
from encore.store import ModelVersion
from encore.store.folders import (
    fetch_folder,
    folder_manifest,
    is_blob_ref,
    manifest_key,
    publish_folder,
    ref_digest,
)

from ..threads import run_in_threads


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(params=["local", "s3"])
def hosts(request, settings: Settings, tmp_path: Path):
    """Two service contexts ("hosts") sharing the database and the blob store, each with
    its own data folder (model cache)."""
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = server.new_bucket()
        settings = settings.model_copy(update={
            "storage_url": f"s3://{bucket}/encore", "storage_options": server.storage_options()})
    else:
        settings = settings.model_copy(update={
            "storage_url": f"file://{tmp_path / 'shared-blobs'}"})
    a = ServiceContext.from_settings(settings, queues=False)
    other = settings.model_copy(update={"model_cache_dir": tmp_path / "host-b" / "cache"})
    b = ServiceContext.from_settings(other, queues=False)
    yield a, b
    a.engine.dispose()
    b.engine.dispose()


def test_v0_is_published_and_each_host_caches_its_copy(hosts, tiny_models) -> None:
    a, b = hosts
    base, _ = tiny_models
    v0 = versions.ensure_base_version(a)
    assert is_blob_ref(v0.folder) and not Path(v0.folder.removeprefix("blob:")).exists()
    _, digest, _ = folder_manifest(base)
    assert ref_digest(v0.folder) == digest  # the content hash
    folder_a = versions.local_folder(a, v0)
    folder_b = versions.local_folder(b, versions.get_version(b, v0.id))
    assert folder_a != folder_b
    assert folder_b.parent == b.settings.resolved_model_cache_dir
    assert _tree(folder_a) == _tree(folder_b) == _tree(base)
    assert versions.local_folder(b, v0) == folder_b  # cached: no second download
    from encore.diffusion.folder import load_model_folder

    assert load_model_folder(folder_b, device="cpu").mel_config.y_res == 16


def test_publish_is_idempotent_and_atomic(hosts, tiny_models, tmp_path: Path) -> None:
    a, _ = hosts
    base, _ = tiny_models
    ref = publish_folder(a.blobs, base)
    keys = a.blobs.list_keys("models")
    assert publish_folder(a.blobs, base) == ref and a.blobs.list_keys("models") == keys
    # a publish that died before its manifest is not a published folder
    digest = ref_digest(ref)
    a.blobs.delete(manifest_key(digest))
    with pytest.raises(NotFound, match="not in the blob store"):
        fetch_folder(a.blobs, ref, tmp_path / "cache")
    assert not (tmp_path / "cache" / digest).exists()
    assert publish_folder(a.blobs, base) == ref  # finishes the job
    assert fetch_folder(a.blobs, ref, tmp_path / "cache").is_dir()


def test_a_corrupt_file_is_refused_and_leaves_no_cache(hosts, tiny_models, tmp_path: Path) -> None:
    a, _ = hosts
    base, _ = tiny_models
    work = tmp_path / "model"
    shutil.copytree(base, work)
    (work / "extra.txt").write_text("hello")
    ref = publish_folder(a.blobs, work)
    digest = ref_digest(ref)
    sha = hashlib.sha256(b"hello").hexdigest()
    a.blobs.put(f"models/{digest}/files/{sha}", b"HELLO")  # same size, other bytes
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInput):
        fetch_folder(a.blobs, ref, cache)
    assert not any(cache.iterdir())


def test_a_finetune_style_publish_reaches_the_other_host(hosts, tiny_models, tmp_path: Path) -> None:
    """What a training worker does (publish, then the row) and what a generation worker on
    another host then does (resolve by id, fetch, load) without a restart."""
    a, b = hosts
    base, _ = tiny_models
    versions.ensure_base_version(a)
    out = tmp_path / "run-1" / "model"
    shutil.copytree(base, out)
    (out / "notes.txt").write_text("fine-tuned")
    v1 = versions.publish_version(a, folder=out, parent_id=None, notes="run 1")
    shutil.rmtree(out)  # the training host's folder is gone: the blob store is the truth
    seen = versions.get_version(b, v1.id)
    assert (versions.local_folder(b, seen) / "notes.txt").read_text() == "fine-tuned"


def test_import_export_retire_purge(hosts, tiny_models, tmp_path: Path) -> None:
    a, b = hosts
    base, _ = tiny_models
    versions.ensure_base_version(a)
    source = tmp_path / "external"
    shutil.copytree(base, source)
    (source / "README.txt").write_text("imported")
    v1 = versions.import_version(a, source, notes="from elsewhere")
    assert is_blob_ref(v1.folder)
    shutil.rmtree(source)
    exported = versions.export_version(b, version_id=v1.id, target=tmp_path / "exported")
    assert (exported / "README.txt").read_text() == "imported"
    with pytest.raises(Conflict):
        versions.export_version(b, version_id=v1.id, target=exported)
    with pytest.raises(Conflict, match="retire it"):
        versions.purge_version(a, version_id=v1.id)
    cached_b = versions.local_folder(b, v1)
    versions.retire_version(a, version_id=v1.id)
    digest = ref_digest(v1.folder)
    before = set(a.blobs.list_keys("models"))
    deleted = versions.purge_version(a, version_id=v1.id)
    assert deleted >= 2
    after = set(a.blobs.list_keys("models"))
    assert not any(k.startswith(f"models/{digest}/") for k in after)
    assert before - after == {k for k in before if k.startswith(f"models/{digest}/")}
    row = versions.get_version(a, v1.id)
    assert row.folder.startswith(versions.PURGED_PREFIX)
    with pytest.raises(NotFound, match="purged"):
        versions.local_folder(b, row)
    assert cached_b.is_dir()  # another host's cache is its own (removed with its data folder)
    assert versions.purge_version(a, version_id=v1.id) == 0  # idempotent
    v0 = versions.version_by_name(a, "v0")  # v0's files are untouched
    assert a.blobs.exists(manifest_key(ref_digest(v0.folder)))


def test_identical_content_is_kept_while_another_version_uses_it(hosts, tiny_models) -> None:
    a, _ = hosts
    base, _ = tiny_models
    v0 = versions.ensure_base_version(a)
    v1 = versions.import_version(a, base)
    assert v1.folder == v0.folder
    versions.retire_version(a, version_id=v1.id)
    assert versions.purge_version(a, version_id=v1.id) == 0
    assert versions.local_folder(a, v0).is_dir()
    with a.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 2


def test_local_paths_still_work(ctx: ServiceContext, tiny_models) -> None:
    base, _ = tiny_models
    v = versions.import_version(ctx, base, copy=False)
    assert v.folder == str(base.resolve()) and versions.local_folder(ctx, v) == base.resolve()


def test_cli_import_export_purge(tiny_models, tmp_path: Path, env_settings, capsys) -> None:
    from encore import cli, config
    from encore.store.db import upgrade

    base, sim = tiny_models
    env_settings(ENCORE_DATA_DIR=str(tmp_path / "var"), ENCORE_BASE_MODEL_DIR=str(base),
                 ENCORE_SIMILARITY_MODEL_DIR=str(sim))
    upgrade(config.get_settings().resolved_database_url)
    external = tmp_path / "external"
    shutil.copytree(base, external)
    (external / "tag.txt").write_text("x")
    assert cli.main(["versions", "list"]) == 0
    assert cli.main(["versions", "import", str(external)]) == 0
    assert "as v1 (draft), files at blob:models/" in capsys.readouterr().out
    assert cli.main(["versions", "export", "v1", str(tmp_path / "out")]) == 0
    assert _tree(tmp_path / "out") == _tree(external)
    assert cli.main(["versions", "purge", "v1"]) == 2  # not retired
    assert cli.main(["versions", "retire", "v1"]) == 0
    assert cli.main(["versions", "purge", "v1"]) == 0
    assert "purged the files of v1" in capsys.readouterr().out


@pytest.mark.postgres
def test_concurrent_first_requests_register_v0_once_on_postgresql(settings: Settings) -> None:
    """PostgreSQL has no writer lock: many threads (or web processes) racing to register
    v0 all get the same row (the benchmark's 20 concurrent first POST /api/music got 500)."""
    import threading

    from ..postgres import migrated_postgres_database

    with migrated_postgres_database() as url:
        ctxs = [ServiceContext.from_settings(settings.model_copy(update={"database_url": url}),
                                             queues=False) for _ in range(8)]
        barrier = threading.Barrier(len(ctxs))
        got: list[int] = []

        def register(c: ServiceContext) -> None:
            barrier.wait(10)
            got.append(versions.ensure_base_version(c).id)

        errors = run_in_threads(register, [(c,) for c in ctxs], timeout=60)
        for c in ctxs:
            c.engine.dispose()
        assert not errors, errors
        assert len(got) == len(ctxs) and len(set(got)) == 1


def test_prune_model_cache_keeps_what_is_served(hosts, tiny_models, tmp_path: Path) -> None:
    _, b = hosts
    base, _ = tiny_models
    v0 = versions.ensure_base_version(b)
    other = tmp_path / "other"
    shutil.copytree(base, other)
    (other / "x.txt").write_text("x")
    v1 = versions.import_version(b, other)
    cached = {v.id: versions.local_folder(b, v) for v in (v0, v1)}
    stray = b.settings.resolved_model_cache_dir / ("f" * 64)
    stray.mkdir()
    assert versions.prune_model_cache(b) == ["f" * 64]  # v0 active, v1 draft: kept
    versions.retire_version(b, version_id=v1.id)
    assert versions.prune_model_cache(b) == [ref_digest(v1.folder)]
    assert cached[v0.id].is_dir() and not cached[v1.id].exists()
