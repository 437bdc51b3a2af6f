"""Making music, its progress, the player's media, listening, rating, history.

Nothing here tells the listener which model version or dispatch branch produced a clip:
the JSON views list only what the player needs.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from encore.services import music
from encore.web import views
from encore.web.deps import CtxDep, CurrentUser, LimitsDep, client_ip, render, run_short_write
from encore.web.media import serve_blob, served_span

router = APIRouter()

MAX_INPUT_SONGS = 8
MAX_RANGES = 2000


class MusicRequest(BaseModel):
    song_ids: list[int] = Field(min_length=1, max_length=MAX_INPUT_SONGS)
    closeness: float | None = Field(default=None, ge=0.0, le=1.0)
    # a piece's length (6, 12, 24 or 48 s, up to ENCORE_MAX_PIECE_SECONDS), where in the song
    # it starts (seconds; one song only; default: the loudest stretch), a loop; the service
    # checks them and says what is allowed
    seconds: float | None = None
    start: float | None = None
    loop: bool = False
    # a blend: each song's share, one per song (>= 0, not all 0; default equal); the service
    # checks them and says what is wrong
    weights: list[float] | None = Field(default=None, max_length=MAX_INPUT_SONGS)


Seconds = Annotated[float, Field(ge=0.0, le=24 * 3600)]


class ListenBody(BaseModel):
    ranges: list[tuple[Seconds, Seconds]] = Field(max_length=MAX_RANGES)
    final: bool = False  # the flush when the page is hidden or left


class RatingBody(BaseModel):
    stars: float


@router.get("/music/{delivery_id}", include_in_schema=False)
def delivery_page(request: Request, delivery_id: int, user: CurrentUser, ctx: CtxDep) -> Response:
    """Progress while the music is made, then the player and the rating."""
    view = music.delivery_status(ctx, listener=user, delivery_id=delivery_id)
    return render(
        request,
        "delivery.html",
        user=user,
        delivery_id=delivery_id,
        inputs=views.input_titles(view),
        made_from=view.made_from,
    )


@router.get("/history", include_in_schema=False)
def history_page(request: Request, user: CurrentUser, ctx: CtxDep) -> Response:
    """Everything the listener got, listened to and rated."""
    return render(request, "history.html", user=user, items=music.history(ctx, listener=user))


@router.post("/api/music", status_code=201)
def api_request_music(body: MusicRequest, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """Ask for music from one song (a variation, ``closeness`` in [0, 1]; ``seconds``,
    ``start``, ``loop``) or several (a blend, ``closeness`` and ``weights``)."""
    delivery = music.request_music(
        ctx, listener=user, song_ids=body.song_ids, closeness=body.closeness,
        seconds=body.seconds, start=body.start, loop=body.loop, weights=body.weights,
    )
    return {"delivery_id": delivery.id, "url": f"/music/{delivery.id}"}


@router.get("/api/deliveries/{delivery_id}")
def api_delivery_status(delivery_id: int, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """Status (queued, running, ready, failed), progress 0..1, message, and once ready the
    clip's length, the minimum listen, what was listened and the rating."""
    view = music.delivery_status(ctx, listener=user, delivery_id=delivery_id)
    return views.dataclass_json(view)


@router.get("/api/deliveries/{delivery_id}/audio")
def api_clip_audio(request: Request, delivery_id: int, user: CurrentUser, ctx: CtxDep) -> Response:
    """The clip's audio (HTTP Range supported)."""
    ref = music.clip_media(ctx, listener=user, delivery_id=delivery_id, kind="audio")
    served = served_span(request, ref)
    if served is not None:
        music.note_audio_served(
            ctx, listener=user, delivery_id=delivery_id, end=served[0], total=served[1]
        )
    return serve_blob(request, ref)


@router.get("/api/deliveries/{delivery_id}/download")
def api_clip_download(
    request: Request,
    delivery_id: int,
    user: CurrentUser,
    ctx: CtxDep,
    format: Annotated[Literal["ogg", "wav"], Query()] = "ogg",
) -> Response:
    """The clip as a file to keep (``format=ogg``: as stored; ``wav``: 16-bit PCM decoded
    from it), ``Content-Disposition: attachment``. Only for the delivery's listener, once
    the music is ready. Not listening: it never counts towards the minimum listen."""
    download = music.clip_download(ctx, listener=user, delivery_id=delivery_id, format=format)
    return serve_blob(request, download.ref, filename=download.filename)


@router.post("/api/deliveries/{delivery_id}/cancel")
def api_cancel(delivery_id: int, user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """Cancel the listener's own request that has not started (409 once it runs or is
    done); answers the delivery as ``GET /api/deliveries/{id}`` does (``status: cancelled``)."""
    view = music.cancel_request(ctx, listener=user, delivery_id=delivery_id)
    return views.dataclass_json(view)


@router.get("/api/deliveries/{delivery_id}/spectrogram")
def api_clip_spectrogram(
    request: Request, delivery_id: int, user: CurrentUser, ctx: CtxDep
) -> Response:
    """The clip's spectrogram image (PNG)."""
    ref = music.clip_media(ctx, listener=user, delivery_id=delivery_id, kind="spectrogram")
    return serve_blob(request, ref)


@router.post("/api/deliveries/{delivery_id}/listens")
async def api_record_listen(
    delivery_id: int, body: ListenBody, user: CurrentUser, ctx: CtxDep, limits: LimitsDep
) -> dict[str, Any]:
    """A listening heartbeat: the played ranges ``[[start, end], …]`` in seconds of the clip.
    Idempotent (the server keeps the union); returns the listened seconds, the fraction and
    whether rating is allowed. The busiest route: it runs without a thread hop when it can
    (:func:`~encore.web.deps.run_short_write`). At most ``ENCORE_LIMIT_LISTEN_ACCOUNT``
    per account."""
    state = await run_short_write(
        ctx,
        partial(
            music.record_listen,
            ctx,
            listener=user,
            delivery_id=delivery_id,
            ranges=[(a, b) for a, b in body.ranges],
            final=body.final,
        ),
        check=limits.pending("listen", account=str(user.id), ip=None),
    )
    return views.dataclass_json(state)


@router.post("/api/deliveries/{delivery_id}/rating", status_code=201)
async def api_rate(
    request: Request,
    delivery_id: int,
    body: RatingBody,
    user: CurrentUser,
    ctx: CtxDep,
    limits: LimitsDep,
) -> dict[str, Any]:
    """Rate the clip 1–5 in steps of 0.5, once, after the minimum listen (422 before)."""
    rating = await run_short_write(
        ctx, partial(music.rate, ctx, listener=user, delivery_id=delivery_id, stars=body.stars),
        check=limits.pending("rating", account=str(user.id), ip=client_ip(request)),
    )
    return views.rating_json(rating)


@router.get("/api/history")
def api_history(user: CurrentUser, ctx: CtxDep) -> dict[str, Any]:
    """The listener's deliveries, newest first, with listening and rating."""
    return {"items": [views.dataclass_json(item) for item in music.history(ctx, listener=user)]}
