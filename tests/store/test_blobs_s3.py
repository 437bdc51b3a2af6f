"""The blob store on S3 for real: s3fs against moto's S3 server (a separate process)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from encore.config import Settings
from encore.errors import NotFound
from encore.store.blobs import S3BlobStore, make_blob_store


@pytest.fixture
def s3(s3_server) -> S3BlobStore:
    bucket = s3_server.new_bucket()
    store = make_blob_store(f"s3://{bucket}/encore", **s3_server.storage_options())
    assert isinstance(store, S3BlobStore)
    return store


def test_settings_choose_s3_by_url(s3_server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    settings = Settings(data_dir=tmp_path, storage_url=f"s3://{bucket}/p",
                        storage_options=s3_server.storage_options())
    store = make_blob_store(settings.resolved_storage_url, **settings.storage_options)
    assert isinstance(store, S3BlobStore) and store.local_path("songs/a.ogg") is None


def test_put_get_size_delete(s3: S3BlobStore, tmp_path: Path) -> None:
    key = s3.new_key("songs", ".ogg")
    assert not s3.exists(key)
    with pytest.raises(NotFound):
        s3.size(key)
    with pytest.raises(NotFound):
        s3.read_chunks(key)
    s3.put(key, b"OggS" + bytes(range(256)) * 10, content_type="audio/ogg")
    assert s3.exists(key) and s3.size(key) == 2564
    assert s3.get(key)[:4] == b"OggS"
    info = s3.fs.info(s3._path(key))
    assert info["ContentType"] == "audio/ogg"
    # a file upload (multipart above s3fs's block size: 6 MB here)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 17))
    key2 = s3.put(s3.new_key("songs", ".wav"), big, content_type="audio/wav")
    assert s3.size(key2) == big.stat().st_size
    out = s3.download(key2, tmp_path / "back.bin")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert s3.list_keys("songs") == sorted([key, key2])
    assert s3.delete(key) and not s3.exists(key) and not s3.delete(key)
    assert s3.list_keys("songs") == [key2]
    assert s3.list_keys("clips") == []


def test_ranges_are_streamed_in_chunks(s3: S3BlobStore) -> None:
    data = os.urandom(1_000_003)
    key = s3.put(s3.new_key("clips", ".ogg"), data)
    chunks = list(s3.read_chunks(key, chunk_size=64 * 1024))
    assert b"".join(chunks) == data
    assert len(chunks) >= 1_000_003 // (64 * 1024) and max(map(len, chunks)) <= 64 * 1024
    assert b"".join(s3.read_chunks(key, 10, 99)) == data[10:100]
    assert b"".join(s3.read_chunks(key, 999_000)) == data[999_000:]
    assert b"".join(s3.read_chunks(key, 5, 5)) == data[5:6]


def test_another_client_sees_writes_and_deletes_at_once(s3: S3BlobStore, s3_server) -> None:
    """No listing cache: a second store (another host) sees a key the first wrote or
    deleted a moment ago."""
    other = S3BlobStore(s3.url, **s3_server.storage_options(), skip_instance_cache=True)
    key = s3.new_key("clips", ".png")
    assert not other.exists(key)
    s3.put(key, b"png")
    assert other.exists(key) and other.list_keys("clips") == [key]
    s3.delete(key)
    assert not other.exists(key) and other.list_keys("clips") == []


def test_presigned_urls_fetch_the_blob(s3: S3BlobStore) -> None:
    import urllib.request

    key = s3.put(s3.new_key("clips", ".ogg"), b"abc")
    url = s3.url_for(key, expires=60)
    assert url is not None and "Signature" in url
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.read() == b"abc"
