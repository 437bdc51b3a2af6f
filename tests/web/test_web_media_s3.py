"""Media from S3 (moto's server): streamed in chunks with Range, never read whole."""

from __future__ import annotations

import os

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from encore.errors import NotFound
from encore.services.media import blob_ref
from encore.store.blobs import S3BlobStore
from encore.web.media import serve_blob

DATA = os.urandom(700_001)


class NoWholeReads(S3BlobStore):
    """The S3 store, with reading a blob whole forbidden (the web must stream)."""

    chunk_calls = 0

    def get(self, key: str) -> bytes:  # pragma: no cover - a failure path
        raise AssertionError("the web read a remote blob whole")

    def read_chunks(self, key, start=0, end=None, *, chunk_size=64 * 1024):
        type(self).chunk_calls += 1
        return super().read_chunks(key, start, end, chunk_size=chunk_size)


@pytest.fixture(scope="module")
def client(s3_server) -> TestClient:
    bucket = s3_server.new_bucket()
    store = NoWholeReads(f"s3://{bucket}/media", **s3_server.storage_options())
    key = store.put(store.new_key("songs", ".ogg"), DATA, content_type="audio/ogg")
    app = FastAPI()

    @app.api_route("/song", methods=["GET", "HEAD"])
    def song(request: Request) -> Response:
        return serve_blob(request, blob_ref(store, key, "audio/ogg", "the song"))

    @app.get("/missing")
    def missing(request: Request) -> Response:
        try:
            return serve_blob(request, blob_ref(store, "songs/nothere.ogg", "audio/ogg", "x"))
        except NotFound:
            return Response(status_code=404)

    return TestClient(app)


def test_whole_body_is_streamed(client: TestClient) -> None:
    before = NoWholeReads.chunk_calls
    response = client.get("/song")
    assert response.status_code == 200 and response.content == DATA
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "audio/ogg"
    assert int(response.headers["content-length"]) == len(DATA)
    assert NoWholeReads.chunk_calls == before + 1


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=500000-", 500000, len(DATA) - 1),
     ("bytes=-240", len(DATA) - 240, len(DATA) - 1), ("bytes=700000-99999999", 700000, 700000)],
)
def test_a_range_is_a_ranged_read(client: TestClient, header: str, start: int, end: int) -> None:
    response = client.get("/song", headers={"range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert int(response.headers["content-length"]) == end - start + 1
    assert response.content == DATA[start : end + 1]


def test_unsatisfiable_range_head_if_range_and_missing(client: TestClient) -> None:
    bad = client.get("/song", headers={"range": f"bytes={len(DATA)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(DATA)}"
    etag = client.head("/song").headers["etag"]
    stale = client.get("/song", headers={"range": "bytes=0-9", "if-range": '"stale"'})
    assert stale.status_code == 200 and stale.content == DATA
    fresh = client.get("/song", headers={"range": "bytes=0-9", "if-range": etag})
    assert fresh.status_code == 206 and fresh.content == DATA[:10]
    head = client.head("/song", headers={"range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10"
    assert client.get("/missing").status_code == 404
