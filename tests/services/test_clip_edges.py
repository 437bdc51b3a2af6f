"""Every clip the generation service stores starts and ends quietly (issue 19: the first and
last 5 ms of a served clip below −40 dBFS): variations, blends and clips from noise, with the
tiny seeded model and the real codec."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encore.services import music, songs


def _served_audio(ctx, listener, delivery_id: int) -> tuple[np.ndarray, int]:
    ref = music.clip_media(ctx, listener=listener, delivery_id=delivery_id, kind="audio")
    data = ref.path.read_bytes() if ref.path is not None else b"".join(ref.chunks())
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    return y, sr


@pytest.mark.parametrize("n_songs", [1, 2])
def test_stored_clips_have_quiet_edges(ctx, make_listener, song_bytes, n_songs) -> None:
    listener = make_listener()
    ids = [songs.upload_song(ctx, owner=listener, filename=f"s{k}.wav",
                             data=song_bytes(20 + k)).id for k in range(n_songs)]
    delivery = music.request_music(ctx, listener=listener, song_ids=ids)
    y, sr = _served_audio(ctx, listener, delivery.id)
    n = int(0.005 * sr)
    edges = 20 * np.log10(np.maximum([np.abs(y[:n]).max(), np.abs(y[-n:]).max()], 1e-12))
    assert edges.max() < -40.0, edges
    assert 20 * np.log10(np.abs(y).max()) > -3.0  # the clip itself is at full level
