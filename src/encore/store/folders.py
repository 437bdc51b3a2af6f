"""Folders (model versions) in the blob store: published by content hash, cached per host.

A model version is a folder of files (``unet/``, ``scheduler/``, ``mel_config.json`` …).
To make it reachable from every host that shares only the blob store, it is *published*:

1. every file is hashed (sha256) and a manifest lists them (relative path, sha256, size);
   the manifest's own sha256 is the folder's **digest**;
2. each file is stored at ``models/<digest>/files/<file sha256>`` (skipped when present),
3. the manifest last, at ``models/<digest>/manifest.json``.

A folder is published when its manifest exists, and the manifest is written only after
every file it lists: a reader never sees half a folder, and the caller writes the version's
row (whose ``folder`` is the reference ``blob:models/<digest>``) only after
:func:`publish_folder` returned. Publishing the same content twice stores nothing new.

:func:`fetch_folder` makes a local copy under a cache folder (``<cache>/<digest>``):
downloaded in chunks into a temporary folder beside it, every file checked against its
sha256, then renamed into place in one step, so concurrent workers on one host never see a
partial copy (the loser of a race discards its own). The local copy is a cache: deleting it
costs one download.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from encore.errors import InvalidInput, NotFound
from encore.store.blobs import BlobStore, sha256_file

logger = logging.getLogger(__name__)

#: Prefix of a version's ``folder`` when its files live in the blob store.
BLOB_REF_PREFIX = "blob:"
MANIFEST_FORMAT = "encore-folder/1"
_DIGEST_LEN = 64


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, '/'-separated
    sha256: str
    size: int


def folder_manifest(folder: Path) -> tuple[bytes, str, list[FileEntry]]:
    """The manifest of ``folder`` (canonical JSON bytes), its sha256 and its entries.

    Every regular file below ``folder`` is listed, in path order; symbolic links are
    followed; files and folders whose name starts with ``.`` (temporary files, caches)
    are left out.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotFound(f"folder {root} does not exist")
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        entries.append(FileEntry(rel.as_posix(), sha256_file(path), path.stat().st_size))
    if not entries:
        raise InvalidInput(f"folder {root} has no files")
    body = {"format": MANIFEST_FORMAT,
            "files": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries]}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return data, hashlib.sha256(data).hexdigest(), entries


def is_blob_ref(folder: str | os.PathLike[str] | None) -> bool:
    return isinstance(folder, str) and folder.startswith(BLOB_REF_PREFIX)


def ref_digest(ref: str) -> str:
    """The digest of a reference ``blob:models/<digest>``."""
    prefix = ref.removeprefix(BLOB_REF_PREFIX)
    parts = prefix.split("/")
    if (not is_blob_ref(ref) or len(parts) != 2 or parts[0] != "models"
            or len(parts[1]) != _DIGEST_LEN or not all(c in "0123456789abcdef" for c in parts[1])):
        raise InvalidInput(f"{ref!r} is not a published folder reference (blob:models/<sha256>)")
    return parts[1]


def _prefix(digest: str) -> str:
    return f"models/{digest}"


def manifest_key(digest: str) -> str:
    return f"{_prefix(digest)}/manifest.json"


def _file_key(digest: str, sha: str) -> str:
    return f"{_prefix(digest)}/files/{sha}"


def publish_folder(blobs: BlobStore, folder: Path) -> str:
    """Store ``folder`` in ``blobs`` (files first, manifest last); return its reference.

    Idempotent: content already published is not stored again.
    """
    data, digest, entries = folder_manifest(folder)
    ref = BLOB_REF_PREFIX + _prefix(digest)
    if blobs.exists(manifest_key(digest)):
        logger.info("folder %s is already published as %s", folder, ref)
        return ref
    stored = 0
    for entry in {e.sha256: e for e in entries}.values():
        key = _file_key(digest, entry.sha256)
        if not blobs.exists(key):
            blobs.put(key, Path(folder) / entry.path)
            stored += entry.size
    blobs.put(manifest_key(digest), data, content_type="application/json")
    logger.info("published %s as %s (%d files, %.1f MB stored)", folder, ref, len(entries),
                stored / 1e6)
    return ref


def read_manifest(blobs: BlobStore, ref: str) -> list[FileEntry]:
    """The entries of a published folder (checked against its digest)."""
    digest = ref_digest(ref)
    try:
        data = blobs.get(manifest_key(digest))
    except NotFound:
        raise NotFound(f"the model files of {ref} are not in the blob store {blobs.url}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise InvalidInput(f"the manifest of {ref} does not match its digest (corrupt store?)")
    body = json.loads(data)
    if body.get("format") != MANIFEST_FORMAT:
        raise InvalidInput(f"the manifest of {ref} has an unknown format {body.get('format')!r}")
    entries = []
    for item in body["files"]:
        rel = PurePosixPath(item["path"])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise InvalidInput(f"the manifest of {ref} names a path outside its folder: {rel}")
        entries.append(FileEntry(str(rel), str(item["sha256"]), int(item["size"])))
    return entries


def fetch_folder(blobs: BlobStore, ref: str, cache_dir: Path) -> Path:
    """The local copy of a published folder under ``cache_dir`` (made once per host)."""
    digest = ref_digest(ref)
    final = Path(cache_dir) / digest
    if final.is_dir():
        return final
    entries = read_manifest(blobs, ref)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{digest[:12]}-", dir=cache_dir))
    try:
        for entry in entries:
            target = tmp / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            key = _file_key(digest, entry.sha256)
            check, size = blobs.download_hashed(key, target)
            if check != entry.sha256 or size != entry.size:
                raise InvalidInput(f"{key} does not match its manifest entry (corrupt download?)")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process of this host won
        else:
            logger.info("cached %s at %s (%d files)", ref, final, len(entries))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def delete_folder(blobs: BlobStore, ref: str) -> int:
    """Remove a published folder from ``blobs`` (the manifest first, so that it stops being
    published before any file goes); return how many blobs were deleted."""
    digest = ref_digest(ref)
    deleted = int(blobs.delete(manifest_key(digest)))
    for key in blobs.list_keys(f"{_prefix(digest)}/files"):
        deleted += int(blobs.delete(key))
    return deleted
