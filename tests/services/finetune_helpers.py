"""Shared by the fine-tuning service tests: curated dataset clips with mel images."""

from __future__ import annotations

import io

import numpy as np

from encore.services import versions
from encore.services.context import ServiceContext
from encore.store import Clip, ClipKind, ClipStatus, DatasetEntry, utcnow


def add_dataset_clips(ctx: ServiceContext, scores: list[float], confidences: list[float]) -> list[int]:
    """Ready clips of v0 with mel images in the blob store, admitted to the dataset."""
    v0 = versions.ensure_base_version(ctx)
    rng = np.random.default_rng(len(scores))
    ids = []
    with ctx.session() as session:
        for r, c in zip(scores, confidences, strict=True):
            image = rng.integers(0, 256, size=(16, 44)).astype(np.uint8)
            buf = io.BytesIO()
            np.save(buf, image)
            key = ctx.blobs.new_key("clips", ".npy")
            ctx.blobs.put(key, buf.getvalue())
            clip = Clip(kind=ClipKind.GENERATED, status=ClipStatus.READY, model_version_id=v0.id,
                        seed=1, steps=3, eta=0.0, seconds=1.0, mel_key=key, rating_score=r,
                        confidence=c, ready_at=utcnow())
            session.add(clip)
            session.flush()
            session.add(DatasetEntry(clip_id=clip.id, rating_score=r, confidence=c))
            ids.append(clip.id)
    return ids
