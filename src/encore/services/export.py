"""A listener's data as a zip: their songs as uploaded, the clips they were served, their
listening and ratings (issue 18: "download their data")."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from typing import IO, Any

import sqlalchemy as sa

from encore.services.context import ServiceContext
from encore.store import Delivery, Rating, Song, User

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def _name(text: str) -> str:
    return (_UNSAFE.sub("_", text).strip(" ._") or "untitled")[:60]


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def write_export(ctx: ServiceContext, *, user: User, out: IO[bytes]) -> dict[str, int]:
    """Write the user's data to ``out`` as a zip; returns counts of what went in.

    Contents: ``account.json``; ``songs.json`` and ``songs/`` (each song as uploaded);
    ``deliveries.json`` (when, made from what, listened ranges, rating) and ``clips/`` (the
    audio of each clip served, while it exists); ``ratings.csv``. Blobs are copied one at a
    time, so memory holds one file, never the whole archive.
    """
    from encore.services.music import made_from_label

    with ctx.reading() as session:
        account = session.get(User, user.id)
        songs = list(
            session.scalars(
                sa.select(Song)
                .where(Song.owner_id == user.id, Song.deleted_at.is_(None))
                .order_by(Song.id)
            )
        )
        deliveries = list(
            session.scalars(
                sa.select(Delivery).where(Delivery.listener_id == user.id).order_by(Delivery.id)
            )
        )
        rows = []
        for d in deliveries:
            clip = d.clip
            rows.append(
                {
                    "delivery_id": d.id,
                    "delivered_at": _iso(d.delivered_at),
                    "made_from": made_from_label(session, user, clip),
                    "asked_with_song_ids": list(d.input_song_ids or []),
                    "clip_seconds": clip.seconds,
                    "listened_seconds": d.listened_seconds,
                    "played_ranges": list(d.played_ranges or []),
                    "rating": d.rating.stars if d.rating is not None else None,
                    "rated_at": _iso(d.rating.created_at) if d.rating is not None else None,
                    "audio_key": clip.audio_key if clip.status.value == "ready" else None,
                }
            )
        ratings = session.execute(
            sa.select(Rating.delivery_id, Rating.clip_id, Rating.half_stars, Rating.created_at)
            .where(Rating.listener_id == user.id)
            .order_by(Rating.id)
        ).all()
    counts = {"songs": 0, "clips": 0, "deliveries": len(rows), "ratings": len(ratings)}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "account.json",
            json.dumps(
                {
                    "email": account.email,
                    "display_name": account.display_name,
                    "role": str(account.role),
                    "rater_id": account.rater_id,
                    "created_at": _iso(account.created_at),
                },
                indent=2,
            ),
        )
        song_rows = []
        for song in songs:
            ext = song.blob_key.rsplit(".", 1)[-1] if "." in song.blob_key else "bin"
            path = f"songs/{song.id}-{_name(song.title)}.{ext}"
            if _copy_blob(ctx, song.blob_key, zf, path):
                counts["songs"] += 1
            song_rows.append(
                {
                    "id": song.id, "title": song.title, "file": path,
                    "uploaded_at": _iso(song.created_at),
                    "duration_seconds": song.duration_seconds, "sample_rate": song.sample_rate,
                    "shared_with_other_listeners": song.shared,
                }
            )
        zf.writestr("songs.json", json.dumps(song_rows, indent=2))
        for row in rows:
            key = row.pop("audio_key")
            path = f"clips/{row['delivery_id']}.ogg"
            if key and _copy_blob(ctx, key, zf, path):
                row["file"] = path
                counts["clips"] += 1
        zf.writestr("deliveries.json", json.dumps(rows, indent=2))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["delivery_id", "clip_id", "stars", "created_at"])
        for delivery_id, clip_id, half, created in ratings:
            writer.writerow([delivery_id, clip_id, half / 2, _iso(created)])
        zf.writestr("ratings.csv", buf.getvalue())
    return counts


def _copy_blob(ctx: ServiceContext, key: str, zf: zipfile.ZipFile, path: str) -> bool:
    if not key:
        return False
    try:
        with ctx.blobs.open(key) as src, zf.open(path, "w") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except Exception:
        return False
    return True
