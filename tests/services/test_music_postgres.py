"""Concurrent heartbeats of one delivery on PostgreSQL, where no process-wide writer lock
orders them: the row lock taken before the merge keeps every reported range."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from encore.services import music, songs
from encore.services.context import ServiceContext
from encore.store import Delivery

from .conftest import make_song_bytes

pytestmark = pytest.mark.postgres

@pytest.fixture
def pg_ctx(pg_context) -> Iterator[ServiceContext]:
    with pg_context(queue_immediate=True) as ctx:
        yield ctx


def test_two_heartbeats_racing_on_postgresql_keep_both_ranges(pg_ctx) -> None:
    from encore.services import accounts

    listener = accounts.create_user(pg_ctx, email="pg@example.org", password="listener-pass")
    song = songs.upload_song(pg_ctx, owner=listener, filename="a.wav", data=make_song_bytes(3))
    delivery = music.request_music(pg_ctx, listener=listener, song_ids=[song.id])
    with pg_ctx.session() as session:
        session.get(Delivery, delivery.id).opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)

    # The first heartbeat pauses right after reading the played ranges in its write
    # transaction; the second starts then. Without the row lock the second would finish
    # and the first would overwrite it.
    first_read, go_on = threading.Event(), threading.Event()
    first_thread: list[int] = []

    @event.listens_for(pg_ctx.engine, "after_cursor_execute")
    def pause(conn, cursor, statement, params, context, executemany) -> None:
        if (threading.get_ident() in first_thread and "FOR UPDATE" in statement
                and not first_read.is_set()):
            first_read.set()
            go_on.wait(10)

    def beat(ranges, mark: bool = False) -> None:
        if mark:
            first_thread.append(threading.get_ident())
        music.record_listen(pg_ctx, listener=listener, delivery_id=delivery.id, ranges=ranges)

    a = threading.Thread(target=beat, args=([(0.0, 0.3)], True))
    a.start()
    assert first_read.wait(10)
    b = threading.Thread(target=beat, args=([(0.5, 0.9)],))
    b.start()
    b.join(0.5)
    assert b.is_alive()  # waiting for the first heartbeat's row lock
    go_on.set()
    a.join(10)
    b.join(10)
    with pg_ctx.reading() as session:
        d = session.get(Delivery, delivery.id)
        assert d.played_ranges == [[0.0, 0.3], [0.5, 0.9]]
        assert d.listened_seconds == pytest.approx(0.7)
