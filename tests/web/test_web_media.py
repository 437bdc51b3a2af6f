"""HTTP Range support for stored audio (files via Starlette, bytes via encore.web.media)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from encore.web.media import parse_single_range, serve_blob

DATA = bytes(range(256)) * 40  # 10 240 bytes


@dataclass(frozen=True)
class Ref:
    content_type: str
    path: Path | None = None
    data: bytes | None = None


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    path = tmp_path / "clip.ogg"
    path.write_bytes(DATA)
    app = FastAPI()

    @app.get("/file")
    def from_file(request: Request) -> Response:
        return serve_blob(request, Ref("audio/ogg", path=path))

    @app.get("/bytes")
    def from_bytes(request: Request) -> Response:
        return serve_blob(request, Ref("audio/ogg", data=DATA))

    return TestClient(app)


@pytest.mark.parametrize("route", ["/file", "/bytes"])
def test_whole_body_advertises_ranges(client: TestClient, route: str) -> None:
    response = client.get(route)
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "audio/ogg"
    assert response.content == DATA


@pytest.mark.parametrize("route", ["/file", "/bytes"])
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=5000-", 5000, 10239), ("bytes=-240", 10000, 10239),
     ("bytes=10000-99999", 10000, 10239)],
)
def test_single_range_is_206_with_content_range(
    client: TestClient, route: str, header: str, start: int, end: int
) -> None:
    response = client.get(route, headers={"range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.content == DATA[start : end + 1]
    assert int(response.headers["content-length"]) == end - start + 1


@pytest.mark.parametrize("route", ["/file", "/bytes"])
def test_unsatisfiable_range_is_416(client: TestClient, route: str) -> None:
    response = client.get(route, headers={"range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


def test_bytes_if_range_with_a_stale_etag_sends_everything(client: TestClient) -> None:
    response = client.get("/bytes", headers={"range": "bytes=0-9", "if-range": '"stale"'})
    assert response.status_code == 200 and response.content == DATA
    etag = client.get("/bytes").headers["etag"]
    fresh = client.get("/bytes", headers={"range": "bytes=0-9", "if-range": etag})
    assert fresh.status_code == 206 and fresh.content == DATA[:10]


def test_parse_single_range() -> None:
    assert parse_single_range("bytes=0-0", 10) == (0, 0)
    assert parse_single_range("bytes=0-1,3-4", 10) is None  # several ranges: whole body
    assert parse_single_range("items=0-1", 10) is None
    with pytest.raises(ValueError):
        parse_single_range("bytes=5-2", 10)
