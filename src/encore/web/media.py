"""Serving stored audio and images with HTTP Range support.

Browsers need ``Range`` requests to seek in audio and even to read the duration of some
formats (an OGG served without it shows a wrong length). Starlette's ``FileResponse``
answers ``Range`` with 206 and ``Content-Range`` (single and multiple ranges, ``If-Range``,
416 for unsatisfiable ranges) in the installed version, so blobs with a local path use it.
Remote blobs (S3) are streamed by :func:`stream_response` (single ranges, 206/416,
``If-Range``): the body is read from the store chunk by chunk as the client takes it, never
whole. Blobs held in memory get :func:`bytes_response`, the same rules on bytes.
"""

from __future__ import annotations

import hashlib
import re
from os import PathLike
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

CACHE_CONTROL = "private, max-age=3600"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_single_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse one ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range of a ``size``-byte body.

    Returns
    -------
    (start, end) or None
        Inclusive byte positions, or ``None`` when the header is not a single byte range
        (then the whole body is served with 200, as RFC 9110 allows).

    Raises
    ------
    ValueError
        When the range is well-formed but unsatisfiable (start beyond the end).
    """
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0:
            raise ValueError("empty suffix range")
        return max(size - n, 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or start > end:
        raise ValueError(f"range {header!r} outside a body of {size} bytes")
    return start, end


def content_disposition(filename: str) -> str:
    """``attachment`` with the file name: an ASCII ``filename`` (other characters as ``_``)
    for old clients and the exact name as RFC 5987 ``filename*`` (UTF-8, percent-encoded)."""
    fallback = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _ranged_headers(etag: str, filename: str | None) -> dict[str, str]:
    """The headers of every answer of :func:`bytes_response` and :func:`stream_response`."""
    headers = {"accept-ranges": "bytes", "etag": etag, "cache-control": CACHE_CONTROL}
    if filename is not None:
        headers["content-disposition"] = content_disposition(filename)
    return headers


def _asked_span(request: Request, size: int, etag: str) -> tuple[int, int] | None:
    """The single byte range the request asks for, or None for the whole body (no
    ``Range``, an ``If-Range`` other than ``etag``, or not one byte range).

    Raises
    ------
    ValueError
        An unsatisfiable range (answered 416).
    """
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if header is None or (if_range is not None and if_range != etag):
        return None
    return parse_single_range(header, size)


def _unsatisfiable(headers: dict[str, str], size: int) -> Response:
    return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})


def bytes_response(
    request: Request, data: bytes, content_type: str, *, filename: str | None = None
) -> Response:
    """Serve ``data`` with ``Accept-Ranges`` and single-range (206/416) support (as an
    attachment named ``filename`` when given)."""
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    headers = _ranged_headers(etag, filename)
    try:
        span = _asked_span(request, len(data), etag)
    except ValueError:
        return _unsatisfiable(headers, len(data))
    if span is None:
        return Response(data, media_type=content_type, headers=headers)
    start, end = span
    headers["content-range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], status_code=206, media_type=content_type, headers=headers)


def stream_response(request: Request, ref: object, *, filename: str | None = None) -> Response:
    """Serve a remote blob (``ref.size``, ``ref.etag``, ``ref.chunks(start, end)``) with
    ``Accept-Ranges`` and single-range (206/416) support, streamed in chunks (as an
    attachment named ``filename`` when given)."""
    size = int(ref.size)  # type: ignore[attr-defined]
    etag = ref.etag  # type: ignore[attr-defined]
    content_type = getattr(ref, "content_type", None) or "application/octet-stream"
    headers = _ranged_headers(etag, filename)
    try:
        span = _asked_span(request, size, etag)
    except ValueError:
        return _unsatisfiable(headers, size)
    if span is None:
        headers["content-length"] = str(size)
        if request.method == "HEAD" or size == 0:
            return Response(status_code=200, media_type=content_type, headers=headers)
        return StreamingResponse(ref.chunks(0, None), media_type=content_type, headers=headers)  # type: ignore[attr-defined]
    start, end = span
    headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=206, media_type=content_type, headers=headers)
    return StreamingResponse(
        ref.chunks(start, end), status_code=206, media_type=content_type, headers=headers  # type: ignore[attr-defined]
    )


def file_response(
    path: str | PathLike[str], content_type: str, *, filename: str | None = None
) -> Response:
    """Serve a local file (Range handled by Starlette's ``FileResponse``), inline, or as an
    attachment named ``filename``."""
    headers = {"cache-control": CACHE_CONTROL}
    if filename is not None:
        headers["content-disposition"] = content_disposition(filename)
    return FileResponse(Path(path), media_type=content_type, headers=headers)


def served_span(request: Request, ref: object) -> tuple[int, int] | None:
    """``(end, size)``: the byte after the last one this request will be sent of the blob,
    and the blob's size (``None`` when nothing is sent, e.g. an unsatisfiable range)."""
    size = getattr(ref, "size", None)
    if size is None:
        path = getattr(ref, "path", None)
        data = getattr(ref, "data", None)
        size = Path(path).stat().st_size if path is not None else len(data or b"")
    header = request.headers.get("range")
    if header is None:
        return (int(size), int(size)) if size else None
    try:
        span = parse_single_range(header, int(size))
    except ValueError:
        return None
    if span is None:  # several ranges: served whole or in parts, count the whole
        return int(size), int(size)
    return span[1] + 1, int(size)


def serve_blob(request: Request, ref: object, *, filename: str | None = None) -> Response:
    """Serve a blob reference from the services (a local file when it has a path).

    ``ref`` has ``content_type`` and either ``path`` (a local file: served by
    ``FileResponse`` with Range), ``key`` and ``size`` (a remote blob: streamed by
    :func:`stream_response`) or ``data`` (bytes: served by :func:`bytes_response`). With
    ``filename`` the response is a download (``Content-Disposition: attachment``).
    """
    content_type = getattr(ref, "content_type", None) or "application/octet-stream"
    path = getattr(ref, "path", None)
    if path is not None:
        return file_response(path, content_type, filename=filename)
    if getattr(ref, "key", None) is not None and getattr(ref, "size", None) is not None:
        return stream_response(request, ref, filename=filename)
    data = getattr(ref, "data", None)
    if data is None:
        raise TypeError(f"blob reference {ref!r} has neither a path nor data")
    return bytes_response(request, bytes(data), content_type, filename=filename)
