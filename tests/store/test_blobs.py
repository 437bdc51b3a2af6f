"""Blob storage: generated keys, local atomic writes, the fsspec backend, URL choice."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from encore.config import Settings
from encore.errors import ConfigurationError, InvalidInput, NotFound
from encore.store.blobs import FsspecBlobStore, LocalBlobStore, make_blob_store, sha256_file


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_keys_are_generated_and_unique(store: LocalBlobStore) -> None:
    keys = {store.new_key("clips", ".ogg") for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"clips/[0-9a-f]{32}\.ogg", k) for k in keys)
    assert re.fullmatch(r"models/v1/[0-9a-f]{32}", store.new_key("models/v1"))


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "/abs/key.ogg",
        "songs/../../x",
        "Songs/A.ogg",
        "my song.mp3",
        "songs//x.ogg",
        "",
        "songs/x.ogg/",
        "a" * 300,
    ],
)
def test_bad_keys_are_refused(store: LocalBlobStore, bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid blob key"):
        store.put(bad, b"x")
    with pytest.raises(InvalidInput):
        store.exists(bad)


def test_bad_prefix_and_suffix_are_refused(store: LocalBlobStore) -> None:
    with pytest.raises(InvalidInput, match="prefix"):
        store.new_key("../up")
    with pytest.raises(InvalidInput, match="suffix"):
        store.new_key("songs", "ogg")


def test_local_round_trip(store: LocalBlobStore, tmp_path: Path) -> None:
    key = store.new_key("songs", ".wav")
    assert not store.exists(key) and store.local_path(key) is None
    assert store.put(key, b"RIFF" + bytes(range(256)), content_type="audio/wav") == key
    assert store.exists(key) and store.size(key) == 260
    assert store.get(key)[:4] == b"RIFF"
    with store.open(key) as f:
        f.seek(4)
        assert f.read(3) == bytes([0, 1, 2])
    path = store.local_path(key)
    assert path is not None and path.is_relative_to(store.root) and path.read_bytes()[:4] == b"RIFF"
    assert store.url_for(key) is None  # served by encore itself (with Range support)

    source = tmp_path / "upload.bin"
    source.write_bytes(b"z" * 3_000_000)
    other = store.put(store.new_key("songs", ".wav"), source)
    assert store.size(other) == 3_000_000

    assert store.delete(key) is True
    assert store.delete(key) is False
    with pytest.raises(NotFound, match=key):
        store.get(key)
    with pytest.raises(NotFound, match=key):
        store.size(key)


def test_local_write_is_atomic(store: LocalBlobStore, tmp_path: Path) -> None:
    key = store.new_key("clips", ".ogg")
    store.put(key, b"old")
    with pytest.raises(FileNotFoundError):
        store.put(key, tmp_path / "missing.ogg")  # fails after the temp file was created
    assert store.get(key) == b"old"
    assert [p.name for p in store.local_path(key).parent.iterdir()] == [Path(key).name]


def test_fsspec_store_round_trip() -> None:
    store = make_blob_store("memory://encore-test-blobs")
    assert isinstance(store, FsspecBlobStore)
    key = store.new_key("clips", ".png")
    store.put(key, b"\x89PNG....", content_type="image/png")
    assert store.exists(key) and store.get(key) == b"\x89PNG...."
    assert store.size(key) == 8
    assert store.local_path(key) is None
    assert not any(".tmp-" in p for p in store.fs.find(store.root))
    assert store.delete(key) and not store.exists(key)
    with pytest.raises(NotFound):
        store.open(key)


def test_download_hashed_copies_and_hashes(store: LocalBlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than one chunk
    key = store.put(store.new_key("models", ".bin"), data)
    target = tmp_path / "copy.bin"
    assert store.download_hashed(key, target) == (hashlib.sha256(data).hexdigest(), len(data))
    assert target.read_bytes() == data
    assert sha256_file(target) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("url", ["local", "memory://encore-test-missing"])
def test_a_missing_blob_is_not_found_by_every_reader(url: str, tmp_path: Path) -> None:
    store = make_blob_store(str(tmp_path) if url == "local" else url)
    key = store.new_key("clips", ".ogg")
    for read in (store.open, store.size, store.modified, store.get):
        with pytest.raises(NotFound, match=re.escape(f"blob '{key}' does not exist in {store.url}")):
            read(key)


def test_store_url_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = make_blob_store(settings.resolved_storage_url)
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "blobs").resolve()


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_says_what_to_install() -> None:
    with pytest.raises(ConfigurationError, match="pip install s3fs"):
        make_blob_store("s3://bucket/encore")


def test_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nosuchfs://x"):
        make_blob_store("nosuchfs://x")
