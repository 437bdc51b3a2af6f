"""50 raters rating at once through the services: every rating is stored, none is lost to
"database is locked" (SQLite WAL, BEGIN IMMEDIATE writes, the store's write lock)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from encore.services import music, versions
from encore.store import Clip, ClipKind, ClipStatus, Delivery, DispatchBranch, Rating, User

from ..threads import run_in_threads

RATERS, PER_RATER = 50, 20


def test_50_concurrent_raters_store_exactly_1000_ratings(ctx) -> None:
    v0 = versions.ensure_base_version(ctx)
    with ctx.session() as session:
        users = [
            User(email=f"rater{i}@example.org", display_name=f"r{i}", password_hash="x")
            for i in range(RATERS)
        ]
        session.add_all(users)
        clips = [
            Clip(kind=ClipKind.GENERATED, status=ClipStatus.READY, model_version_id=v0.id,
                 seconds=5.0, seed=i)
            for i in range(PER_RATER)
        ]
        session.add_all(clips)
        session.flush()
        work: dict[int, list[int]] = {}
        for u in users:
            ds = [
                Delivery(clip_id=c.id, listener_id=u.id, branch=DispatchBranch.GENERATE,
                         input_song_ids=[], listened_seconds=5.0)
                for c in clips
            ]
            session.add_all(ds)
            session.flush()
            work[u.id] = [d.id for d in ds]
        listeners = {u.id: u for u in users}

    start = threading.Barrier(RATERS)

    def rater(user_id: int) -> None:
        start.wait()
        for k, delivery_id in enumerate(work[user_id]):
            music.rate(ctx, listener=listeners[user_id], delivery_id=delivery_id,
                       stars=1.0 + (k % 9) / 2)

    assert run_in_threads(rater, [(uid,) for uid in work]) == []
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Rating)) == RATERS * PER_RATER
        per_user = session.execute(
            sa.select(Rating.listener_id, sa.func.count()).group_by(Rating.listener_id)
        ).all()
        assert sorted(n for _, n in per_user) == [PER_RATER] * RATERS
