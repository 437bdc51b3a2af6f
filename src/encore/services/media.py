"""References to stored media that the web layer can serve (with HTTP Range when local)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from encore.errors import NotFound
from encore.store.blobs import BlobStore


@dataclass(frozen=True)
class BlobRef:
    """A blob to send: a local ``path`` (served with Range support) or its ``data``."""

    content_type: str
    path: Path | None = None
    data: bytes | None = None


def blob_ref(blobs: BlobStore, key: str | None, content_type: str, what: str) -> BlobRef:
    """A :class:`BlobRef` for ``key``; ``NotFound`` naming ``what`` when it is missing."""
    if not key or not blobs.exists(key):
        raise NotFound(f"{what} is not available")
    path = blobs.local_path(key)
    if path is not None:
        return BlobRef(content_type=content_type, path=path)
    return BlobRef(content_type=content_type, data=blobs.get(key))
