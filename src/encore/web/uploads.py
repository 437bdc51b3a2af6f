"""Reading one uploaded file from a multipart request, within the size limit.

The body arrives through :class:`~encore.web.security.BodyLimitMiddleware`, which stops it
with 413 as soon as it passes the limit. Starlette's multipart parser spools the file part
to a temporary file (in memory up to 1 MiB, then on disk), so a large upload is never held
twice; the bytes are read once, here, for the service. The client's file name is reduced to
a display name and never used as a path (the blob store generates its own keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from encore.errors import InvalidInput
from encore.units import apart, format_size
from encore.web.errors import RequestTooLarge
from encore.web.security import display_filename

MAX_FIELD_BYTES = 16 * 1024


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: its display name, bytes, and the optional title field."""

    filename: str
    data: bytes
    title: str | None


async def read_upload(request: Request) -> UploadedFile:
    """The ``file`` part (and optional ``title``) of a ``multipart/form-data`` request.

    Raises
    ------
    InvalidInput
        Not multipart, no ``file`` field, or an empty file.
    RequestTooLarge
        The file is larger than ``Settings.max_upload_bytes``.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidInput(
            f"an upload must be multipart/form-data with a 'file' field, not {content_type or 'no content type'!r}"
        )
    limit = request.app.state.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4, max_part_size=MAX_FIELD_BYTES) as form:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidInput("the upload has no file (expected a 'file' field)")
        if part.size is not None and part.size > limit:
            got, most = apart(format_size, part.size, limit)
            raise RequestTooLarge(
                f"{display_filename(part.filename)!r} is {got}; the limit is {most}"
            )
        data = await part.read(limit + 1)
        if len(data) > limit:
            raise RequestTooLarge(
                f"{display_filename(part.filename)!r} is over the limit of {format_size(limit)}"
            )
        title = form.get("title")
        filename = display_filename(part.filename)
    if not data:
        raise InvalidInput(f"{filename!r} is empty")
    clean_title = title.strip()[:200] if isinstance(title, str) and title.strip() else None
    return UploadedFile(filename=filename, data=data, title=clean_title)


UploadDep = Annotated[UploadedFile, Depends(read_upload)]
