"""Songs: upload (validate, store, enqueue slicing and embedding), the library, access rules."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import PurePath

import numpy as np
import sqlalchemy as sa

from encore.audio.decode import AudioInfo, load_audio, probe_audio
from encore.errors import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from encore.services.context import ServiceContext
from encore.services.media import BlobRef, blob_ref
from encore.store import Song, SongStatus, User, enqueue_job

logger = logging.getLogger(__name__)

#: Model sample rate used to validate uploads (all shipped models use 22 050 Hz).
VALIDATION_SR = 22050
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
_TITLE_JUNK = re.compile(r"[\x00-\x1f\x7f]+")


def title_from_filename(filename: str) -> str:
    """A display title from an upload's file name (never used as a path)."""
    stem = PurePath((filename or "").replace("\\", "/")).name.rsplit(".", 1)[0]
    title = _TITLE_JUNK.sub(" ", stem).strip()
    return (title or "untitled song")[:200]


def upload_song(
    ctx: ServiceContext, *, owner: User, filename: str, data: bytes, title: str | None = None
) -> Song:
    """Validate and store an uploaded song, then enqueue its slicing and embedding.

    Raises
    ------
    InvalidInput (NotAudio, CorruptAudio, SilentAudio, AudioTooShort, AudioTooLong, …)
        The file is not usable audio; the message names the problem.
    Conflict
        The listener already uploaded the same file.
    """
    s = ctx.settings
    if len(data) > s.max_upload_bytes:
        raise InvalidInput(
            f"{title_from_filename(filename)!r} is {len(data) / 1e6:.1f} MB; "
            f"the limit is {s.max_upload_bytes / 1e6:.0f} MB"
        )
    info = probe_audio(data)
    y = load_audio(
        data,
        sr=VALIDATION_SR,
        min_seconds=s.min_song_seconds,
        max_seconds=s.max_song_seconds,
        max_sample_rate=s.max_sample_rate,
        max_channels=s.max_channels,
    )
    checksum = hashlib.sha256(data).hexdigest()
    stored: list[str] = []
    try:
        song_id = _store_song(ctx, owner, filename, data, title, info, y, checksum, stored)
    except BaseException:
        for key in stored:  # the row never committed: its blob must not stay behind
            try:
                ctx.blobs.delete(key)
            except Exception:  # noqa: BLE001 - the orphan collector gets it later
                logger.warning("could not delete the orphan blob %s", key, exc_info=True)
        raise
    with ctx.reading() as session:  # the embedding may already have run (immediate mode)
        return session.get(Song, song_id)  # type: ignore[return-value]


def _store_song(
    ctx: ServiceContext, owner: User, filename: str, data: bytes, title: str | None,
    info: AudioInfo, y: np.ndarray, checksum: str, stored: list[str],
) -> int:
    """Store the blob and the row in one transaction; ``stored`` receives the blob key."""
    with ctx.session() as session:
        # The owner's row first: two uploads of one account are counted one after the other.
        session.execute(sa.select(User.id).where(User.id == owner.id).with_for_update())
        _check_quota(ctx, session, owner, len(data), title_from_filename(filename))
        duplicate = session.scalar(
            sa.select(Song).where(Song.owner_id == owner.id, Song.checksum_sha256 == checksum)
        )
        if duplicate is not None:
            raise Conflict(f"you already uploaded this song as {duplicate.title!r}")
        key = ctx.blobs.new_key("songs", f".{info.format}")
        content_type = CONTENT_TYPES.get(info.format, "application/octet-stream")
        stored.append(key)
        ctx.blobs.put(key, data, content_type=content_type)
        song = Song(
            owner_id=owner.id,
            title=(title or "").strip()[:200] or title_from_filename(filename),
            blob_key=key,
            content_type=content_type,
            duration_seconds=float(len(y) / VALIDATION_SR),
            sample_rate=info.sample_rate,
            checksum_sha256=checksum,
            size_bytes=len(data),
            status=SongStatus.PENDING,
        )
        session.add(song)
        session.flush()
        job = enqueue_job(session, "embed_song", {"song_id": song.id})
        song.job_id = job.id
        logger.info("song %d uploaded by user %d (%.1f s)", song.id, owner.id, song.duration_seconds)
        song_id = int(song.id)
    return song_id


def stored_bytes(ctx: ServiceContext, session: sa.orm.Session, owner: User) -> int:
    """Bytes of the owner's songs in storage (deleted songs excluded)."""
    rows = session.execute(
        sa.select(Song.blob_key, Song.size_bytes).where(
            Song.owner_id == owner.id, Song.deleted_at.is_(None)
        )
    ).all()
    total = 0
    for key, size in rows:
        if size is None:  # stored before sizes were kept
            try:
                size = ctx.blobs.size(key)
            except Exception:  # noqa: BLE001 - a missing blob takes no space
                size = 0
        total += int(size)
    return total


def _check_quota(
    ctx: ServiceContext, session: sa.orm.Session, owner: User, size: int, name: str
) -> None:
    quota = ctx.settings.storage_quota_bytes
    used = stored_bytes(ctx, session, owner)
    if used + size > quota:
        raise QuotaExceeded(
            f"{name!r} ({size / 1e6:.1f} MB) does not fit: your songs take "
            f"{used / 1e6:.1f} MB of your {quota / 1e6:.0f} MB; delete a song to make room"
        )


def _own_song(session: sa.orm.Session, user: User, song_id: int) -> Song:
    song = session.get(Song, song_id)
    if song is None:
        raise NotFound(f"song {song_id} does not exist")
    if song.owner_id != user.id and not user.is_operator:
        raise PermissionDenied(f"song {song_id} belongs to another listener")
    return song


def list_songs(ctx: ServiceContext, *, owner: User) -> list[Song]:
    """The listener's songs, newest first."""
    with ctx.reading() as session:
        return list(
            session.scalars(
                sa.select(Song).where(Song.owner_id == owner.id).order_by(Song.id.desc())
            )
        )


def get_song(ctx: ServiceContext, *, user: User, song_id: int) -> Song:
    """One song of ``user`` (``PermissionDenied`` for another listener's song)."""
    with ctx.reading() as session:
        return _own_song(session, user, song_id)


def song_audio(ctx: ServiceContext, *, user: User, song_id: int) -> BlobRef:
    """The song's audio as uploaded."""
    song = get_song(ctx, user=user, song_id=song_id)
    return blob_ref(ctx.blobs, song.blob_key, song.content_type, f"the audio of song {song_id}")
