"""Songs: upload (validate, store, enqueue slicing and embedding), the library, access rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from pathlib import PurePath

import numpy as np
import sqlalchemy as sa

from encore.audio.decode import AudioInfo, load_audio, probe_audio
from encore.config import Settings
from encore.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from encore.services.context import ServiceContext
from encore.services.media import BlobRef, blob_ref
from encore.store import (
    Clip,
    ClipInput,
    DatasetEntry,
    RemovalReason,
    Song,
    SongStatus,
    User,
    enqueue_job,
    utcnow,
)
from encore.units import apart, format_size

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


def shown_filename(filename: str | None) -> str:
    """The file name an upload is called in messages: its last path part, as chosen."""
    return PurePath((filename or "").replace("\\", "/")).name or "the upload"


def check_song_size(settings: Settings, filename: str, size: int) -> None:
    """Refuse a song file over ``max_upload_bytes``, naming the file and the sizes in MB."""
    if size > settings.max_upload_bytes:
        got, limit = apart(format_size, size, settings.max_upload_bytes)
        raise InvalidInput(f"{shown_filename(filename)!r} is {got}; the limit is {limit}")


def validate_song(settings: Settings, filename: str, data: bytes) -> tuple[AudioInfo, np.ndarray]:
    """The rules every input song meets, on the web and in ``encore generate``: size,
    format, length (``min_song_seconds``..``max_song_seconds``), sample rate, channels,
    not silent. Messages name the file (``filename``) and give limits in MB and ``m:ss``.

    Returns the header's :class:`AudioInfo` and the mono audio at :data:`VALIDATION_SR`.

    Raises
    ------
    InvalidInput (NotAudio, CorruptAudio, SilentAudio, AudioTooShort, AudioTooLong, …)
    """
    check_song_size(settings, filename, len(data))
    shown = shown_filename(filename)
    info = probe_audio(data, name=shown)
    y = load_audio(
        data,
        sr=VALIDATION_SR,
        min_seconds=settings.min_song_seconds,
        max_seconds=settings.max_song_seconds,
        max_sample_rate=settings.max_sample_rate,
        max_channels=settings.max_channels,
        name=shown,
    )
    return info, y


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
    info, y = validate_song(ctx.settings, filename, data)
    checksum = hashlib.sha256(data).hexdigest()
    stored: list[str] = []
    try:
        song_id = _store_song(ctx, owner, filename, data, title, info, y, checksum, stored)
    except BaseException:
        for key in stored:  # the row never committed: its blob must not stay behind
            try:
                ctx.blobs.delete(key)
            except Exception:
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
        _check_quota(ctx, session, owner, len(data), shown_filename(filename))
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
            except Exception:
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
            f"{name!r} ({format_size(size)}) does not fit: your songs take "
            f"{format_size(used)} of your {format_size(quota)}; delete a song to make room"
        )


def _own_song(session: sa.orm.Session, user: User, song_id: int) -> Song:
    song = session.get(Song, song_id)
    if song is None or song.deleted_at is not None:
        raise NotFound(f"song {song_id} does not exist")
    if song.owner_id != user.id and not user.is_operator:
        raise PermissionDenied(f"song {song_id} belongs to another listener")
    return song


def list_songs(ctx: ServiceContext, *, owner: User) -> list[Song]:
    """The listener's songs, newest first."""
    with ctx.reading() as session:
        return list(
            session.scalars(
                sa.select(Song)
                .where(Song.owner_id == owner.id, Song.deleted_at.is_(None))
                .order_by(Song.id.desc())
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


#: Width in pixels of a song's spectrogram picture (its time axis is squeezed or stretched
#: to it; the page maps a click at x to ``x / width · duration`` seconds).
SPECTROGRAM_WIDTH = 1200
SPECTROGRAM_HEIGHT = 128


def song_spectrogram(ctx: ServiceContext, *, user: User, song_id: int) -> BlobRef:
    """The whole song's mel spectrogram as a PNG (low bands at the bottom), made from its
    audio on first use and kept as a blob (``songs.spectrogram_key``)."""
    song = get_song(ctx, user=user, song_id=song_id)
    if song.spectrogram_key and ctx.blobs.exists(song.spectrogram_key):
        return blob_ref(ctx.blobs, song.spectrogram_key, "image/png",
                        f"the spectrogram of song {song_id}")
    png = spectrogram_picture(ctx.blobs.get(song.blob_key))
    key = ctx.blobs.new_key("songs", ".png")
    ctx.blobs.put(key, png, content_type="image/png")
    with ctx.session() as session:
        row = session.get(Song, song_id)
        if row is None or row.deleted_at is not None:
            delete_blobs(ctx, [key])
            raise NotFound(f"song {song_id} does not exist")
        old, row.spectrogram_key = row.spectrogram_key, key
    if old and old != key:
        delete_blobs(ctx, [old])
    return blob_ref(ctx.blobs, key, "image/png", f"the spectrogram of song {song_id}")


def spectrogram_picture(data: bytes, width: int = SPECTROGRAM_WIDTH,
                        height: int = SPECTROGRAM_HEIGHT) -> bytes:
    """A PNG of a song's mel spectrogram (80 dB range), ``width`` × ``height`` pixels."""
    import io

    from PIL import Image

    from encore.audio.mel import MelConfig, mel_db

    cfg = MelConfig(x_res=256, y_res=height)
    y = load_audio(data, sr=cfg.sample_rate, max_seconds=None)
    db = mel_db(y, cfg)
    pixels = (np.clip((db + cfg.top_db) / cfg.top_db, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(np.flipud(pixels)))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# --- deletion --------------------------------------------------------------------------------

DELETED_TITLE = "a deleted song"
DELETION_DETAIL = "the listener deleted a song it was made from"
UNSHARED_DETAIL = "the listener stopped sharing a song it was made from"


def _forget_song(session: sa.orm.Session, song: Song, now: dt.datetime) -> list[str]:
    """Withdraw ``song`` and every clip made from it, in ``session``; returns the blob keys
    to delete once the transaction has committed.

    The song's row stays as an anonymous tombstone (no title, audio, slices or
    representation) because clips made from it keep their ratings for the report; those
    clips lose their audio, images and representation (never served or matched again) and
    leave the data set.
    """
    keys = [k for k in (song.blob_key, song.mel_key, song.spectrogram_key) if k]
    clip_ids = list(
        session.scalars(sa.select(ClipInput.clip_id).where(ClipInput.song_id == song.id))
    )
    for clip in session.scalars(sa.select(Clip).where(Clip.id.in_(clip_ids))):
        keys += [k for k in (clip.audio_key, clip.image_key, clip.mel_key) if k]
        clip.audio_key = clip.image_key = clip.mel_key = None
        clip.representation = None
        if hasattr(clip, "descriptors"):
            clip.descriptors = None
    session.execute(
        sa.update(DatasetEntry)
        .where(DatasetEntry.clip_id.in_(clip_ids), DatasetEntry.removed_at.is_(None))
        .values(removed_at=now, removal_reason=RemovalReason.MANUAL, removal_detail=DELETION_DETAIL)
        .execution_options(synchronize_session=False)
    )
    song.title = DELETED_TITLE
    song.blob_key = ""
    song.mel_key = None
    song.spectrogram_key = None
    song.representation = None
    if hasattr(song, "descriptors"):
        song.descriptors = None
    song.checksum_sha256 = f"deleted:{song.id}"  # the same file may be uploaded again
    song.size_bytes = 0
    song.shared = False
    song.deleted_at = now
    return keys


def delete_blobs(ctx: ServiceContext, keys: list[str]) -> int:
    """Delete blobs after their rows committed; failures are logged (the orphan collector
    gets them later). Returns how many were deleted."""
    deleted = 0
    for key in keys:
        try:
            deleted += bool(ctx.blobs.delete(key))
        except Exception:
            logger.warning("could not delete blob %s", key, exc_info=True)
    return deleted


def delete_song(ctx: ServiceContext, *, user: User, song_id: int) -> int:
    """Delete one of the user's songs: its audio, and the clips made from it leave the data
    set and are never served again (their ratings stay, anonymous, for the report).
    Returns the number of blobs deleted."""
    now = utcnow()
    with ctx.session() as session:
        song = _own_song(session, user, song_id)
        keys = _forget_song(session, song, now)
    logger.info("song %d deleted by user %d (%d blobs)", song_id, user.id, len(keys))
    return delete_blobs(ctx, keys)


def set_shared(ctx: ServiceContext, *, user: User, song_id: int, shared: bool) -> Song:
    """Allow or stop music made from the song being played to other listeners (and joining
    the data set)."""
    with ctx.session() as session:
        song = _own_song(session, user, song_id)
        song.shared = bool(shared)
        if not shared:  # clips already in the data set leave it (their ratings stay)
            clip_ids = sa.select(ClipInput.clip_id).where(ClipInput.song_id == song.id)
            session.execute(
                sa.update(DatasetEntry)
                .where(DatasetEntry.clip_id.in_(clip_ids), DatasetEntry.removed_at.is_(None))
                .values(removed_at=utcnow(), removal_reason=RemovalReason.MANUAL,
                        removal_detail=UNSHARED_DETAIL)
                .execution_options(synchronize_session=False)
            )
        return song


def private_clip_ids(
    session: sa.orm.Session, clip_ids: list[int] | None = None, *, except_owner: int | None = None
) -> set[int]:
    """Clips made from a song that is not shared (opted out or deleted): never served to
    another listener, never admitted to the data set. ``except_owner``: leave out the clips
    of that listener's own songs (they may be served to their owner)."""
    query = (
        sa.select(ClipInput.clip_id)
        .join(Song, Song.id == ClipInput.song_id)
        .where(sa.or_(Song.shared.is_(False), Song.deleted_at.is_not(None)))
    )
    if except_owner is not None:
        query = query.where(Song.owner_id != except_owner)
    if clip_ids is not None:
        query = query.where(ClipInput.clip_id.in_(clip_ids))
    return set(session.scalars(query))


# --- orphan blobs ------------------------------------------------------------------------------

#: Blob prefixes whose every key is referenced by a song or clip row.
GC_PREFIXES = ("songs", "clips")


def collect_orphan_blobs(
    ctx: ServiceContext, *, min_age_seconds: float = 3600.0, dry_run: bool = False
) -> list[str]:
    """Delete the song and clip blobs no row refers to (a write whose transaction failed,
    a deletion whose blob removal failed); returns their keys.

    A blob is written just before its row commits, so only blobs older than
    ``min_age_seconds`` are taken; on stores that cannot tell a blob's age (remote ones),
    nothing is taken unless ``min_age_seconds`` is 0 (run it when no upload or generation
    is in flight).
    """
    import time

    with ctx.reading() as session:
        referenced = set()
        for row in session.execute(sa.select(Song.blob_key, Song.mel_key, Song.spectrogram_key)):
            referenced.update(k for k in row if k)
        for row in session.execute(sa.select(Clip.audio_key, Clip.image_key, Clip.mel_key)):
            referenced.update(k for k in row if k)
    now = time.time()
    orphans = []
    for prefix in GC_PREFIXES:
        for key in ctx.blobs.list_keys(prefix):
            if key in referenced:
                continue
            if min_age_seconds > 0:
                path = ctx.blobs.local_path(key)
                if path is None or now - path.stat().st_mtime < min_age_seconds:
                    continue
            orphans.append(key)
    if not dry_run:
        delete_blobs(ctx, orphans)
    logger.info("orphan blobs: %d %s", len(orphans), "found" if dry_run else "deleted")
    return orphans
