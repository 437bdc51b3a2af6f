"""The work behind the jobs: slicing and embedding songs, generating clips.

These run in workers (or in-process in immediate mode). They are idempotent: a retry after a
dead worker overwrites the same rows and writes fresh blobs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from encore.errors import NotFound
from encore.services.conditioning import serving_group
from encore.services.context import Progress, ServiceContext, no_progress
from encore.services.similarity import (
    representation_of,
    set_representation,
    similarity_model,
    to_stored,
)
from encore.services.versions import local_folder
from encore.store import Clip, ClipStatus, Delivery, ModelVersion, Song, SongStatus, utcnow

logger = logging.getLogger(__name__)


def decode_song(ctx: ServiceContext, song: Song, sr: int) -> np.ndarray:
    """The song's audio, mono at ``sr``."""
    from encore.audio.decode import load_audio

    return load_audio(ctx.blobs.get(song.blob_key), sr=sr, max_seconds=None)


def embed_song(ctx: ServiceContext, song_id: int, progress: Progress = no_progress) -> None:
    """Compute and store the song's similarity representation; mark it ready."""
    with ctx.reading() as session:
        song = session.get(Song, song_id)
        if song is None:
            raise NotFound(f"song {song_id} does not exist")
    model = similarity_model(ctx)
    progress(0.2, "analysing the song")
    y = decode_song(ctx, song, model.mel_config.sample_rate)
    rep = model.represent_audio(y, model.mel_config.sample_rate)
    descriptors = song_descriptors(y, model.mel_config.sample_rate)
    with ctx.session() as session:
        row = session.get(Song, song_id)
        if row is None:
            raise NotFound(f"song {song_id} was deleted")
        row.representation = to_stored(rep)
        row.descriptors = descriptors
        row.status = SongStatus.READY
    logger.info("song %d embedded", song_id)


def song_descriptors(y: np.ndarray, sr: int, window_seconds: float = 30.0) -> dict[str, float]:
    """Audio descriptors of a song: the mean over up to five windows spread over it (a long
    song is not described by its first seconds alone)."""
    from encore.audio.descriptors import DESCRIPTOR_NAMES, audio_descriptors

    n = int(window_seconds * sr)
    if len(y) <= n:
        return audio_descriptors(y, sr)
    starts = np.linspace(0, len(y) - n, num=min(5, 1 + len(y) // n)).astype(int)
    parts = [audio_descriptors(y[a : a + n], sr) for a in starts]
    return {k: float(np.mean([p[k] for p in parts])) for k in DESCRIPTOR_NAMES}


def mark_song_failed(ctx: ServiceContext, song_id: int) -> None:
    with ctx.session() as session:
        row = session.get(Song, song_id)
        if row is not None:
            row.status = SongStatus.FAILED


def diffusion_engine(ctx: ServiceContext, version: ModelVersion) -> Any:
    """The engine of a model version (loaded once per process, keyed by version id)."""
    return folder_engine(ctx, lambda: local_folder(ctx, version), cache_key=("engine", version.id))


def folder_engine(ctx: ServiceContext, folder: Callable[[], Path], *, cache_key: Any = None) -> Any:
    """The engine of the model folder ``folder()`` returns, with this context's device and piece
    settings; kept in the context under ``cache_key`` (built anew each call without one)."""
    from encore.diffusion.engine import Engine  # torch loads only in workers

    device = None if ctx.settings.device == "auto" else ctx.settings.device

    def build() -> Any:
        return Engine(folder(), device=device)

    engine = build() if cache_key is None else ctx.cached(cache_key, build)
    # pieces follow this context's settings (the engine reads the process's at creation)
    engine.window_seconds = ctx.settings.clip_seconds
    engine.overlap_seconds = ctx.settings.piece_overlap_seconds
    engine.crossfade_seconds = ctx.settings.piece_crossfade_seconds
    return engine


def spectrogram_png(image: np.ndarray) -> bytes:
    """A PNG of a uint8 mel image (row 0 = lowest band, so flipped for display)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.flipud(image))).save(buf, format="PNG")
    return buf.getvalue()


def generate_clip(ctx: ServiceContext, clip_id: int, progress: Progress = no_progress) -> None:
    """Render a pending clip — and, for a best-of-n request, all its candidates in one batch —
    then choose the one the listener is served (:func:`_choose`)."""
    with ctx.reading() as session:
        clip = session.get(Clip, clip_id)
        if clip is None:
            raise NotFound(f"clip {clip_id} does not exist")
        if clip.status is ClipStatus.READY:
            return
        if clip.status is ClipStatus.CANCELLED:  # the listener cancelled the request
            logger.info("clip %d was cancelled; not generating it", clip_id)
            return
        if clip.request_id is not None:
            group = list(session.scalars(
                sa.select(Clip).where(Clip.request_id == clip.request_id)
                .order_by(Clip.candidate_index, Clip.id)
            ))
        else:
            group = [clip]
        if all(c.status is ClipStatus.READY for c in group):
            return
        version = session.get(ModelVersion, clip.model_version_id)
        songs = [i.song for i in clip.inputs]
        weights = [i.weight for i in clip.inputs]
        offsets = [i.offset_seconds for i in clip.inputs]
        loop = bool(clip.loop)
        if version is None:
            raise NotFound(f"clip {clip_id} has no model version")
        params = dict(seconds=clip.seconds, steps=clip.steps, eta=clip.eta or 0.0,
                      strength=clip.strength, sampler=clip.sampler)
        ids = [c.id for c in group]
        seeds = [int(c.seed or 0) for c in group]
        listener_id = session.scalar(sa.select(Delivery.listener_id).where(
            Delivery.request_id == clip.request_id)) if clip.request_id is not None else None
    engine = diffusion_engine(ctx, version)
    # a version conditioned on taste groups samples for the requesting listener's group
    engine = engine.for_group(serving_group(ctx, engine.model, listener_id), ctx.settings.guidance_scale)
    sr = engine.sample_rate
    progress(0.05, "reading your songs")
    inputs = [decode_song(ctx, s, sr) for s in songs]

    def on_step(fraction: float) -> None:
        progress(0.1 + 0.7 * fraction, "making music")

    kwargs = dict(seconds=params["seconds"], steps=params["steps"], eta=params["eta"],
                  progress=on_step)
    solver = params["sampler"] or "ddim"  # rows from before samplers were recorded
    if len(inputs) <= 1 and engine.piece_layout(params["seconds"], loop=loop) is not None:
        _render_piece(ctx, engine, ids, seeds, songs, inputs[0] if inputs else None,
                      offsets[0] if offsets else None, loop, params, solver, progress,
                      version_selects=bool(version.taste_selection),
                      choose=len(ids) > 1 or clip.request_id is not None)
        logger.info("clip %d ready: a %.0f s piece (%d candidate(s))", clip_id,
                    params["seconds"], len(ids))
        return
    if not inputs:
        results = engine.generate_batch(seeds=seeds, sampler=solver, **kwargs)
    elif len(inputs) == 1 and len(seeds) > 1 and offsets[0] is None and (
        ctx.settings.candidate_windows == "distinct"
    ):
        # no start chosen: candidate k from the song's k-th loudest window, so that the
        # candidates differ in the part of the song as well as in the seed
        starts = engine.song_windows(inputs[0], params["seconds"], len(seeds))
        results = engine.vary_songs([inputs[0]] * len(seeds), strength=params["strength"],
                                    seeds=seeds, sampler=solver, offsets=starts, **kwargs)
    elif len(inputs) == 1:
        results = engine.vary_batch(inputs[0], strength=params["strength"], seeds=seeds,
                                    sampler=solver, offset=offsets[0], **kwargs)
    else:  # a blend: one candidate
        # strength None: a blend made before blends had one, replayed as it was (SLERP)
        # a long blend (or a loop) is made window by window, as a long variation is
        results = [engine.merge(inputs, weights=weights, seed=seeds[0], offsets=offsets,
                                strength=params["strength"], sampler=solver, loop=loop,
                                **kwargs)]
    progress(0.85, "saving")
    rendered = [_store_rendering(ctx, r, sr, songs) for r in results]
    result_offsets = {cid: (r.params or {}).get("offsets") for cid, r in zip(ids, results, strict=False)}
    choose = len(ids) > 1 or clip.request_id is not None
    with ctx.session() as session:
        for cid, stored in zip(ids, rendered, strict=True):
            _write_rendering(session, cid, stored, result_offsets.get(cid), ready=not choose)
    if choose:
        # the request's delivery points at its first candidate until the choice is made:
        # nothing is ready before, or a polling listener could fetch one candidate's audio
        # and have the rating counted for the one chosen
        _choose(ctx, ids, version_selects=bool(version.taste_selection), seed=seeds[0])
        with ctx.session() as session:
            _mark_ready(session, ids)
    logger.info("clip %d ready (%d candidate(s))", clip_id, len(ids))


def _note_offsets(row: Clip, offsets: list[float | None] | None) -> None:
    """Record where in each input song the clip really started."""
    for inp, off in zip(row.inputs, offsets or [], strict=False):
        if off is not None:
            inp.offset_seconds = float(off)


def _render_piece(
    ctx: ServiceContext, engine: Any, ids: list[int], seeds: list[int], songs: list[Song],
    song: np.ndarray | None, offset: float | None, loop: bool, params: dict[str, Any],
    solver: str, progress: Progress, *, version_selects: bool, choose: bool,
) -> None:
    """A piece longer than the canvas (:meth:`~encore.diffusion.engine.Engine.piece_batch`).

    Best-of-n: the candidates are the pieces' first windows, made in one batch (the cost of
    one window each); the one served (:func:`_choose`, on the first windows' features) is
    then continued to the full length alone, from its own first window, so that the piece
    the listener gets begins with the candidate that was chosen. The other candidates stay
    as what was made of them (one window, ``seconds`` says so) for preference training.
    Nothing is marked ready until the served piece is: the listener never sees a first
    window in its place.
    """
    kwargs = dict(steps=params["steps"], eta=params["eta"], sampler=solver, loop=loop,
                  strength=params["strength"] if params["strength"] is not None else 0.7)
    sr = engine.sample_rate
    chosen, first = 0, None
    if len(ids) > 1:
        progress(0.1, "making the beginnings")
        firsts = engine.piece_batch(
            song, params["seconds"], seeds, offset=offset, max_windows=1,
            progress=lambda f: progress(0.1 + 0.25 * f, "making the beginnings"), **kwargs)
        offset = (firsts[0].params.get("offsets") or [offset])[0]
        rendered = [_store_rendering(ctx, r, sr, songs) for r in firsts]
        with ctx.session() as session:
            for cid, r, result in zip(ids, rendered, firsts, strict=True):
                _write_rendering(session, cid, r, result.params.get("offsets"), ready=False)
        if choose:
            _choose(ctx, ids, version_selects=version_selects, seed=seeds[0])
        with ctx.reading() as session:
            request_id = session.scalar(sa.select(Clip.request_id).where(Clip.id == ids[0]))
            served = session.scalar(
                sa.select(Delivery.clip_id).where(Delivery.request_id == request_id)
            )
        chosen = ids.index(served) if served in ids else 0
        first = firsts[chosen].image[None]
    progress(0.35 if first is not None else 0.1, "making the piece")
    start = 0.35 if first is not None else 0.1
    piece = engine.piece_batch(
        song, params["seconds"], [seeds[chosen]], offset=offset, first_windows=first,
        progress=lambda f: progress(start + (0.8 - start) * f, "making the piece"), **kwargs,
    )[0]
    progress(0.85, "saving")
    stored = _store_rendering(ctx, piece, sr, songs)
    with ctx.session() as session:
        _write_rendering(session, ids[chosen], stored, piece.params.get("offsets"), ready=True)
        _mark_ready(session, ids)
    if choose and len(ids) == 1:
        _choose(ctx, ids, version_selects=version_selects, seed=seeds[0])


def _mark_ready(session: Any, ids: list[int]) -> None:
    """Mark a request's candidates ready (once the served one is chosen and stored)."""
    for cid in ids:
        row = session.get(Clip, cid)
        if row is not None and row.status is not ClipStatus.READY:
            row.status = ClipStatus.READY
            row.ready_at = utcnow()


def _write_rendering(
    session: Any, cid: int, stored: tuple[Any, ...], offsets: list[float | None] | None,
    *, ready: bool,
) -> None:
    keys, rep, s_value, descriptors, seconds, start_step = stored
    row = session.get(Clip, cid)
    if row is None:
        raise NotFound(f"clip {cid} was deleted")
    row.audio_key, row.image_key, row.mel_key = keys
    row.representation = rep
    row.similarity = s_value
    row.descriptors = descriptors
    row.seconds = seconds
    if start_step is not None:
        row.start_step = int(start_step)
    _note_offsets(row, offsets)
    if ready:
        row.status = ClipStatus.READY
        row.ready_at = utcnow()


def _store_rendering(
    ctx: ServiceContext, result: Any, sr: int, songs: list[Song]
) -> tuple[tuple[str, str, str], list[float], float | None, dict[str, float], float, int | None]:
    """Blobs, representation, S(g, I) and descriptors of one rendered clip (its edges faded:
    every served clip starts and ends without a click)."""
    from encore.audio.descriptors import audio_descriptors
    from encore.audio.encode import encode_audio
    from encore.audio.fades import fade_edges

    audio = fade_edges(np.asarray(result.audio, dtype=np.float32), sr)
    image = np.asarray(result.image, dtype=np.uint8)
    audio_key = ctx.blobs.new_key("clips", ".ogg")
    ctx.blobs.put(audio_key, encode_audio(audio, sr=sr, format="ogg"), content_type="audio/ogg")
    image_key = ctx.blobs.new_key("clips", ".png")
    ctx.blobs.put(image_key, spectrogram_png(image), content_type="image/png")
    mel_key = ctx.blobs.new_key("clips", ".npy")
    buf = io.BytesIO()
    np.save(buf, image)
    ctx.blobs.put(mel_key, buf.getvalue(), content_type="application/octet-stream")
    sim_model = similarity_model(ctx)
    rep = sim_model.represent_audio(audio, sr)
    s_value = None
    if songs and all(s.representation is not None for s in songs):
        query = set_representation(ctx, [representation_of(s.representation) for s in songs])
        s_value = float(sim_model.similarity(rep, query))
    start_step = (result.params or {}).get("start_step")
    return ((audio_key, image_key, mel_key), to_stored(rep), s_value,
            audio_descriptors(audio, sr), float(len(audio) / sr), start_step)


def _choose(ctx: ServiceContext, clip_ids: list[int], *, version_selects: bool, seed: int) -> None:
    """Serve one of a request's candidates: the taste model's best (or, with probability ε,
    a uniform pick), recorded on the delivery with its propensity; the others stay unserved.

    Versions without ``taste_selection`` (v0) always pick uniformly. The candidates' taste
    predictions are stored either way (the report's off-policy estimates use them)."""
    from encore import taste
    from encore.services.taste import clip_features, latest_snapshot, predict_for

    with ctx.reading() as session:
        request_id = session.scalar(sa.select(Clip.request_id).where(Clip.id == clip_ids[0]))
        delivery = session.scalars(
            sa.select(Delivery).where(Delivery.request_id == request_id)
        ).first()
        if delivery is None:
            raise NotFound(f"no delivery for the candidates of request {request_id}")
        if delivery.selection is not None:
            return  # chosen already (a retried job)
        listener_id, delivery_id = delivery.listener_id, delivery.id
        features = clip_features(session, clip_ids)
    snapshot = latest_snapshot(ctx)
    predicted: np.ndarray | None = None
    if snapshot is not None and len(features) == len(clip_ids):
        predicted, _ = predict_for(ctx, snapshot[1], listener_id,
                                   [features[c] for c in clip_ids])
    rng = np.random.default_rng([seed, 0x5E1EC7])
    choice = taste.select(predicted if version_selects else None, len(clip_ids),
                          ctx.settings.explore_epsilon, rng)
    with ctx.session() as session:
        for i, cid in enumerate(clip_ids):
            row = session.get(Clip, cid)
            if row is not None:
                row.served = i == choice.index
                row.predicted_stars = None if predicted is None else float(predicted[i])
        row_d = session.get(Delivery, delivery_id)
        if row_d is None:
            raise NotFound(f"delivery {delivery_id} was deleted")
        row_d.clip_id = clip_ids[choice.index]
        row_d.selection = choice.mode
        row_d.propensity = choice.propensity
        row_d.taste_model_id = snapshot[0] if snapshot is not None else None
        row_d.predicted_stars = None if predicted is None else float(predicted[choice.index])


def mark_clip_failed(ctx: ServiceContext, clip_id: int) -> None:
    with ctx.session() as session:
        row = session.get(Clip, clip_id)
        if row is not None and row.status not in (ClipStatus.READY, ClipStatus.CANCELLED):
            row.status = ClipStatus.FAILED


def pending_clip_ids(ctx: ServiceContext) -> list[int]:
    with ctx.reading() as session:
        return list(session.scalars(sa.select(Clip.id).where(Clip.status == ClipStatus.PENDING)))
