"""SQLite under write contention: 50 raters × 20 ratings, each a read-then-write
transaction in its own thread, store exactly 1 000 ratings and never see "database is
locked"."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from encore.store import models as m
from encore.store.db import make_engine, session_scope
from encore.store.enums import DispatchBranch

from ..threads import run_in_threads

RATERS = 50
CLIPS = 20


def test_fifty_concurrent_raters_store_every_rating(sqlite_url: str, make) -> None:
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        listeners = [make(s).user() for _ in range(RATERS)]
        clips = [make(s).clip() for _ in range(CLIPS)]
        listener_ids = [u.id for u in listeners]
        clip_ids = [c.id for c in clips]
        s.execute(
            sa.insert(m.Delivery),
            [
                {"clip_id": c, "listener_id": u, "branch": DispatchBranch.GENERATE}
                for u in listener_ids
                for c in clip_ids
            ],
        )

    start = threading.Barrier(RATERS)

    def rate_everything(listener_id: int, offset: int) -> None:
        start.wait()
        for k in range(CLIPS):
            clip_id = clip_ids[(k + offset) % CLIPS]
            with session_scope(engine) as s:
                # Read first, then write: the pattern that fails under deferred BEGIN.
                delivery = s.scalars(
                    sa.select(m.Delivery).where(
                        m.Delivery.listener_id == listener_id, m.Delivery.clip_id == clip_id
                    )
                ).one()
                s.add(m.Rating(delivery=delivery, half_stars=2 + (k % 9), listened_fraction=0.8))

    errors = run_in_threads(rate_everything, [(lid, i) for i, lid in enumerate(listener_ids)])
    assert [str(e) for e in errors] == []
    with session_scope(engine, write=False) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(m.Rating)) == RATERS * CLIPS
        per_listener = s.execute(
            sa.select(m.Rating.listener_id, sa.func.count()).group_by(m.Rating.listener_id)
        ).all()
        assert sorted(n for _, n in per_listener) == [CLIPS] * RATERS
    engine.dispose()
