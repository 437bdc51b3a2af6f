"""Songs: upload, library, one song, its audio."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from encore.services import music, songs
from encore.web import views
from encore.web.deps import CtxDep, CurrentUser, LimitsDep, SettingsDep, client_ip, render
from encore.web.media import serve_blob
from encore.web.uploads import read_upload

router = APIRouter()


@router.get("/upload", include_in_schema=False)
def upload_page(request: Request, user: CurrentUser, settings: SettingsDep) -> Response:
    """Drag-and-drop upload of several songs, each with its progress and errors."""
    return render(
        request,
        "upload.html",
        user=user,
        max_bytes=settings.max_upload_bytes,
        max_seconds=settings.max_song_seconds,
        min_seconds=settings.min_song_seconds,
    )


@router.get("/songs", include_in_schema=False)
def songs_page(request: Request, user: CurrentUser, ctx: CtxDep, settings: SettingsDep) -> Response:
    """The library, where music is made from one song or a blend of several (of a length
    the listener chooses, as on a song's page)."""
    return render(
        request,
        "songs.html",
        user=user,
        songs=songs.list_songs(ctx, owner=user),
        default_closeness=round(1.0 - settings.default_strength, 2),
        **_lengths(ctx, settings),
    )


@router.get("/songs/{song_id}", include_in_schema=False)
def song_page(
    request: Request, song_id: int, user: CurrentUser, ctx: CtxDep, settings: SettingsDep
) -> Response:
    """One of the user's songs (others' songs are refused by the service): its spectrogram,
    where the listener marks the start, and the request for a piece of music from there."""
    return render(
        request,
        "song.html",
        user=user,
        song=songs.get_song(ctx, user=user, song_id=song_id),
        default_closeness=round(1.0 - settings.default_strength, 2),
        **_lengths(ctx, settings),
    )


def _lengths(ctx: Any, settings: Any) -> dict[str, Any]:
    """The piece lengths offered and the one selected at first (the setting's nearest)."""
    lengths = music.piece_lengths(ctx)
    return {"piece_lengths": lengths,
            "default_seconds": min(lengths, key=lambda s: abs(s - settings.default_piece_seconds))}


@router.get("/api/songs")
def api_list_songs(user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """The user's songs, newest first."""
    return {"songs": [views.song_json(s) for s in songs.list_songs(ctx, owner=user)]}


@router.post("/api/songs", status_code=201)
async def api_upload_song(
    request: Request, user: CurrentUser, ctx: CtxDep, limits: LimitsDep
) -> dict[str, Any]:
    """Upload one song (multipart ``file``, optional ``title``); 413 past the size limit,
    422 with the reason when it is not usable audio."""
    await limits.check_async("upload", account=str(user.id), ip=client_ip(request))
    upload = await read_upload(request)  # after auth and the rate limit: no body read before
    song = await run_in_threadpool(
        songs.upload_song,
        ctx,
        owner=user,
        filename=upload.filename,
        data=upload.data,
        title=upload.title,
    )
    return {"song": views.song_json(song)}


@router.get("/api/songs/{song_id}")
def api_get_song(song_id: int, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """One of the user's songs."""
    return {"song": views.song_json(songs.get_song(ctx, user=user, song_id=song_id))}


@router.get("/api/songs/{song_id}/audio")
def api_song_audio(request: Request, song_id: int, user: CurrentUser, ctx: CtxDep) -> Response:
    """The song's audio as uploaded (HTTP Range supported)."""
    return serve_blob(request, songs.song_audio(ctx, user=user, song_id=song_id))


@router.get("/api/songs/{song_id}/spectrogram")
def api_song_spectrogram(request: Request, song_id: int, user: CurrentUser, ctx: CtxDep) -> Response:
    """The whole song's spectrogram (PNG; time left to right over its whole duration, low
    bands at the bottom), made on first request and kept."""
    return serve_blob(request, songs.song_spectrogram(ctx, user=user, song_id=song_id))


class SharingBody(BaseModel):
    shared: bool


@router.post("/api/songs/{song_id}/sharing")
def api_song_sharing(song_id: int, body: SharingBody, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """Whether music made from this song may be played to other listeners and join the data
    set (the per-song opt-out)."""
    song = songs.set_shared(ctx, user=user, song_id=song_id, shared=body.shared)
    text = ("may now be played to other listeners" if song.shared
            else "will no longer be played to other listeners")
    return {"song": views.song_json(song), "message": f"Music made from {song.title!r} {text}."}


@router.delete("/api/songs/{song_id}")
@router.post("/api/songs/{song_id}/delete")
def api_delete_song(song_id: int, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """Delete the song: its audio is deleted; music made from it leaves the data set and is
    never played again (ratings stay, anonymous, in the report)."""
    deleted = songs.delete_song(ctx, user=user, song_id=song_id)
    return {"deleted": True, "blobs_deleted": deleted, "next": "/songs"}
