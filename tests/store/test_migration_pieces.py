"""Migration 0006: a request's length, start and loop; where a clip starts in its song; the
song's spectrogram."""

from __future__ import annotations

import sqlalchemy as sa

from encore.store.db import make_engine, schema_diff, upgrade


def _columns(conn: sa.Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_0006_adds_the_piece_columns_and_keeps_the_rows(sqlite_with_rows, downgraded) -> None:
    from encore.store.db import session_scope
    from encore.store.models import Clip, ClipInput, Delivery, Song

    def add(mk):
        owner = mk.user()
        clip = mk.clip([mk.song(owner)], seconds=5.9)
        mk.delivery(clip, owner)
        return clip.id

    url, ids = sqlite_with_rows(add)
    with downgraded(url, "0005") as conn:
        assert "piece_seconds" not in _columns(conn, "deliveries")
        assert "loop" not in _columns(conn, "clips")
        assert "offset_seconds" not in _columns(conn, "clip_inputs")
        assert "spectrogram_key" not in _columns(conn, "songs")
    upgrade(url)
    engine = make_engine(url)
    assert schema_diff(engine) == []
    with session_scope(sa.orm.sessionmaker(engine)) as session:
        d = session.scalars(sa.select(Delivery)).one()
        assert (d.piece_seconds, d.start_seconds, d.loop) == (None, None, False)
        assert session.get(Clip, ids).loop is False
        assert session.get(ClipInput, (ids, 0)).offset_seconds is None
        assert session.scalars(sa.select(Song)).one().spectrogram_key is None
        # the new columns store what a request asks for
        d.piece_seconds, d.start_seconds, d.loop = 24.0, 63.5, True
    with session_scope(sa.orm.sessionmaker(engine), write=False) as session:
        d = session.scalars(sa.select(Delivery)).one()
        assert (d.piece_seconds, d.start_seconds, d.loop) == (24.0, 63.5, True)
    engine.dispose()
