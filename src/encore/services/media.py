"""References to stored media that the web layer can serve (with HTTP Range everywhere).

A blob on the local filesystem is served from its path; a remote blob (S3) is streamed from
the store in chunks, Range requests as ranged reads: the web process never holds a remote
blob whole (issue 17: a 100 MB song served from S3 grows the process by a few MB, see
``encore bench media``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from encore.errors import NotFound
from encore.store.blobs import BlobStore


@dataclass(frozen=True)
class BlobRef:
    """A blob to send: a local ``path``, a remote blob to stream (``blobs`` + ``key`` +
    ``size``), or in-memory ``data``."""

    content_type: str
    path: Path | None = None
    data: bytes | None = None
    blobs: BlobStore | None = None
    key: str | None = None
    size: int | None = None

    @property
    def etag(self) -> str:
        """A strong validator of a streamed blob: keys are never rewritten with other
        content (each write makes a new key), so key and size identify the bytes."""
        digest = hashlib.blake2b(f"{self.key}:{self.size}".encode(), digest_size=12)
        return '"' + digest.hexdigest() + '"'

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start``..``end`` (inclusive) of a streamed blob, chunk by chunk."""
        if self.blobs is None or self.key is None:
            raise TypeError("only a streamed blob reference has chunks")
        return self.blobs.read_chunks(self.key, start, end)


def blob_ref(blobs: BlobStore, key: str | None, content_type: str, what: str) -> BlobRef:
    """A :class:`BlobRef` for ``key``; ``NotFound`` naming ``what`` when it is missing."""
    if not key:
        raise NotFound(f"{what} is not available")
    path = blobs.local_path(key)
    if path is not None:
        return BlobRef(content_type=content_type, path=path)
    try:
        size = blobs.size(key)
    except NotFound:
        raise NotFound(f"{what} is not available") from None
    return BlobRef(content_type=content_type, blobs=blobs, key=key, size=size)
