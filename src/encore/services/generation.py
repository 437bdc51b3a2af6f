"""The work behind the jobs: slicing and embedding songs, generating clips.

These run in workers (or in-process in immediate mode). They are idempotent: a retry after a
dead worker overwrites the same rows and writes fresh blobs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from encore.errors import NotFound
from encore.services.context import ServiceContext
from encore.services.similarity import (
    representation_of,
    set_representation,
    similarity_model,
    to_stored,
)
from encore.store import Clip, ClipStatus, ModelVersion, Song, SongStatus, utcnow

logger = logging.getLogger(__name__)

Progress = Callable[[float, str | None], None]


def _no_progress(fraction: float, message: str | None = None) -> None:
    return None


def decode_song(ctx: ServiceContext, song: Song, sr: int) -> np.ndarray:
    """The song's audio, mono at ``sr``."""
    from encore.audio.decode import load_audio

    return load_audio(ctx.blobs.get(song.blob_key), sr=sr, max_seconds=None)


def embed_song(ctx: ServiceContext, song_id: int, progress: Progress = _no_progress) -> None:
    """Compute and store the song's similarity representation; mark it ready."""
    with ctx.reading() as session:
        song = session.get(Song, song_id)
        if song is None:
            raise NotFound(f"song {song_id} does not exist")
    model = similarity_model(ctx)
    progress(0.2, "analysing the song")
    y = decode_song(ctx, song, model.mel_config.sample_rate)
    rep = model.represent_audio(y, model.mel_config.sample_rate)
    with ctx.session() as session:
        row = session.get(Song, song_id)
        if row is None:
            raise NotFound(f"song {song_id} was deleted")
        row.representation = to_stored(rep)
        row.status = SongStatus.READY
    logger.info("song %d embedded", song_id)


def mark_song_failed(ctx: ServiceContext, song_id: int) -> None:
    with ctx.session() as session:
        row = session.get(Song, song_id)
        if row is not None:
            row.status = SongStatus.FAILED


def diffusion_engine(ctx: ServiceContext, version: ModelVersion) -> Any:
    """The engine of a model version (loaded once per process, keyed by version id)."""
    from encore.diffusion.engine import Engine

    device = None if ctx.settings.device == "auto" else ctx.settings.device
    return ctx.cached(("engine", version.id), lambda: Engine(version.folder, device=device))


def spectrogram_png(image: np.ndarray) -> bytes:
    """A PNG of a uint8 mel image (row 0 = lowest band, so flipped for display)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.flipud(image))).save(buf, format="PNG")
    return buf.getvalue()


def generate_clip(ctx: ServiceContext, clip_id: int, progress: Progress = _no_progress) -> None:
    """Render a pending clip: model, vocoder, blobs, representation and S(g, I)."""
    from encore.audio.encode import encode_audio

    with ctx.reading() as session:
        clip = session.get(Clip, clip_id)
        if clip is None:
            raise NotFound(f"clip {clip_id} does not exist")
        if clip.status is ClipStatus.READY:
            return
        version = session.get(ModelVersion, clip.model_version_id)
        songs = [i.song for i in clip.inputs]
        if version is None:
            raise NotFound(f"clip {clip_id} has no model version")
    engine = diffusion_engine(ctx, version)
    sr = engine.sample_rate
    progress(0.05, "reading your songs")
    inputs = [decode_song(ctx, s, sr) for s in songs]

    def on_step(fraction: float) -> None:
        progress(0.1 + 0.75 * fraction, "making music")

    kwargs = dict(seconds=clip.seconds, seed=clip.seed, steps=clip.steps, eta=clip.eta or 0.0,
                  progress=on_step)
    if not inputs:
        result = engine.generate(**kwargs)
    elif len(inputs) == 1:
        result = engine.vary(inputs[0], strength=clip.strength, **kwargs)
    else:
        result = engine.merge(inputs, weights=[i.weight for i in clip.inputs], **kwargs)
    progress(0.9, "saving")
    audio = np.asarray(result.audio, dtype=np.float32)
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
    with ctx.session() as session:
        row = session.get(Clip, clip_id)
        if row is None:
            raise NotFound(f"clip {clip_id} was deleted")
        row.audio_key, row.image_key, row.mel_key = audio_key, image_key, mel_key
        row.representation = to_stored(rep)
        row.similarity = s_value
        row.seconds = float(len(audio) / sr)
        start_step = (result.params or {}).get("start_step")
        if start_step is not None:
            row.start_step = int(start_step)
        row.status = ClipStatus.READY
        row.ready_at = utcnow()
    logger.info("clip %d ready (%.1f s, S=%s)", clip_id, len(audio) / sr, s_value)


def mark_clip_failed(ctx: ServiceContext, clip_id: int) -> None:
    with ctx.session() as session:
        row = session.get(Clip, clip_id)
        if row is not None and row.status is not ClipStatus.READY:
            row.status = ClipStatus.FAILED


def pending_clip_ids(ctx: ServiceContext) -> list[int]:
    with ctx.reading() as session:
        return list(session.scalars(sa.select(Clip.id).where(Clip.status == ClipStatus.PENDING)))
