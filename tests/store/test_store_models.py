"""Models on both backends: CRUD, constraints, cascade rules, JSON, timestamps."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from encore.store import models as m
from encore.store.db import session_scope
from encore.store.enums import (
    ClipStatus,
    DispatchBranch,
    JobStatus,
    QueueName,
    RemovalReason,
    UserRole,
    VersionStatus,
)


def test_user_defaults_email_normalised_and_rater_ids_unique(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        a = make(s).user(email="  Alice@Example.ORG ")
        b = make(s).user()
        ids = (a.id, b.id)
    with session_scope(engine, write=False) as s:
        a, b = (s.get(m.User, i) for i in ids)
        assert a.email == "alice@example.org"
        assert a.role is UserRole.LISTENER and a.active
        assert len(a.rater_id) == 16 and a.rater_id != b.rater_id
        assert a.created_at.tzinfo is not None and a.created_at.utcoffset() == dt.timedelta(0)
        # The role is stored as its lower-case value.
        raw = s.execute(sa.text("select role from users where id = :i"), {"i": a.id}).scalar()
        assert raw == "listener"


def test_email_is_unique(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        make(s).user(email="bob@example.org")
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        make(s).user(email="BOB@example.org")


def test_song_checksum_unique_per_owner_only(engine: Engine, make) -> None:
    checksum = "ab" * 32
    with session_scope(engine) as s:
        owner, other = make(s).user(), make(s).user()
        make(s).song(owner, checksum_sha256=checksum)
        make(s).song(other, checksum_sha256=checksum)  # another owner: allowed
        owner_id = owner.id
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        make(s).song(s.get(m.User, owner_id), checksum_sha256=checksum)


def test_clip_inputs_keep_order_and_weights(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        u = make(s).user()
        songs = [make(s).song(u) for _ in range(3)]
        version = make(s).version(status=VersionStatus.ACTIVE)
        clip = m.Clip(model_version=version, seed=2**40, steps=50, start_step=20, eta=0.0)
        clip.inputs = [
            m.ClipInput(song=songs[2], position=0, weight=0.5),
            m.ClipInput(song=songs[0], position=1, weight=0.25),
            m.ClipInput(song=songs[1], position=2, weight=0.25),
        ]
        s.add(clip)
        s.flush()
        clip_id, expected = clip.id, [songs[2].id, songs[0].id, songs[1].id]
    with session_scope(engine, write=False) as s:
        clip = s.get(m.Clip, clip_id)
        assert clip.input_song_ids == expected
        assert [i.weight for i in clip.inputs] == [0.5, 0.25, 0.25]
        assert clip.seed == 2**40  # BigInteger
        assert clip.status is ClipStatus.PENDING


def test_rating_stars_and_range_checks(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        u = make(s).user()
        clip = make(s).clip()
        d = make(s).delivery(clip, u)
        r = make(s).rating(d, half_stars=7)
        assert r.stars == 3.5
        r.stars = 4.5
        assert r.half_stars == 9
        with pytest.raises(ValueError, match="2.25"):
            r.stars = 2.25
        with pytest.raises(ValueError, match="5.5"):
            r.stars = 5.5
        rid = r.id
    with session_scope(engine, write=False) as s:
        assert s.scalar(sa.select(m.Rating.stars).where(m.Rating.id == rid)) == 4.5
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.execute(sa.update(m.Rating).where(m.Rating.id == rid).values(half_stars=11))
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.execute(sa.update(m.Rating).where(m.Rating.id == rid).values(listened_fraction=1.5))


def test_one_rating_per_listener_and_clip(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        u = make(s).user()
        clip = make(s).clip()
        first, second = make(s).delivery(clip, u), make(s).delivery(clip, u)
        make(s).rating(first)
        second_id = second.id
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        make(s).rating(s.get(m.Delivery, second_id))


def test_every_dispatch_branch_is_stored_by_the_migrated_schema(engine: Engine, make) -> None:
    """The branch column is a plain string (no constraint lists the values): ``review``, added
    after the initial migration, is stored and read back without a migration."""
    with session_scope(engine) as s:
        clip = make(s).clip()
        ids = {b: make(s).delivery(clip, make(s).user(), branch=b).id for b in DispatchBranch}
    with session_scope(engine) as s:
        assert {b: s.get(m.Delivery, i).branch for b, i in ids.items()} == {b: b for b in ids}
        raw = s.execute(sa.text("SELECT branch FROM deliveries ORDER BY id")).scalars().all()
        assert sorted(raw) == sorted(b.value for b in DispatchBranch)


def test_rating_must_match_its_delivery(engine: Engine, make) -> None:
    """The composite foreign key ties a rating's clip and listener to its delivery's."""
    with session_scope(engine) as s:
        u = make(s).user()
        clip, other_clip = make(s).clip(), make(s).clip()
        d = make(s).delivery(clip, u)
        ids = (d.id, other_clip.id, u.id)
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.add(
            m.Rating(
                delivery_id=ids[0],
                clip_id=ids[1],
                listener_id=ids[2],
                half_stars=6,
                listened_fraction=0.5,
            )
        )
        s.flush()
    with session_scope(engine) as s:
        r = make(s).rating(s.get(m.Delivery, ids[0]))
        assert (r.clip_id, r.listener_id) == (s.get(m.Delivery, ids[0]).clip_id, ids[2])


def test_deleting_a_clip_cascades_to_what_listeners_did(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        u = make(s).user()
        song = make(s).song(u)
        clip = make(s).clip([song])
        d = make(s).delivery(clip, u)
        s.add(m.ListenEvent(delivery=d, sequence=1, ranges=[[0, 2.5]], listened_seconds=2.5))
        make(s).rating(d)
        s.add(m.DatasetEntry(clip=clip, rating_score=0.7, confidence=0.8))
        s.flush()
        clip_id, song_id = clip.id, song.id
    with session_scope(engine) as s:
        s.execute(sa.delete(m.Clip).where(m.Clip.id == clip_id))
    with session_scope(engine, write=False) as s:
        for model in (m.Delivery, m.ListenEvent, m.Rating, m.DatasetEntry, m.ClipInput):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model
        assert s.get(m.Song, song_id) is not None  # the input song stays


def test_a_song_used_by_a_clip_cannot_be_deleted(engine: Engine, make) -> None:
    with session_scope(engine) as s:
        u = make(s).user()
        song = make(s).song(u)
        make(s).clip([song])
        song_id = song.id
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.execute(sa.delete(m.Song).where(m.Song.id == song_id))


def test_deleting_a_user_cascades_sessions_and_nulls_invitations(engine: Engine, make) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as s:
        op, guest = make(s).user(role=UserRole.OPERATOR), make(s).user()
        s.add(
            m.LoginSession(
                user=guest,
                token_hash="t" * 64,
                csrf_token="c" * 32,
                expires_at=now + dt.timedelta(days=14),
            )
        )
        s.add(m.RaterReputation(user=guest, weight=0.5, flagged=True, reasons=["fast"]))
        inv = m.Invitation(
            code_hash="h" * 64,
            created_by=op,
            used_by=guest,
            expires_at=now + dt.timedelta(days=7),
            used_at=now,
        )
        s.add(inv)
        s.flush()
        ids = (guest.id, inv.id)
    with session_scope(engine) as s:
        s.execute(sa.delete(m.User).where(m.User.id == ids[0]))
    with session_scope(engine, write=False) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(m.LoginSession)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(m.RaterReputation)) == 0
        inv = s.get(m.Invitation, ids[1])
        assert inv.used_by_id is None and inv.created_by_id is not None


def test_a_clip_has_at_most_one_active_dataset_entry(engine: Engine, make) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope(engine) as s:
        clip, better = make(s).clip(), make(s).clip()
        first = m.DatasetEntry(clip=clip, rating_score=0.6, confidence=0.7)
        keeper = m.DatasetEntry(clip=better, rating_score=0.9, confidence=0.9)
        s.add_all([first, keeper])
        s.flush()
        clip_id, first_id = clip.id, first.id
    with pytest.raises(sa.exc.IntegrityError), session_scope(engine) as s:
        s.add(m.DatasetEntry(clip_id=clip_id, rating_score=0.6, confidence=0.7))
        s.flush()
    with session_scope(engine) as s:
        first = s.get(m.DatasetEntry, first_id)
        first.removed_at = now
        first.removal_reason = RemovalReason.DUPLICATE
        first.removal_detail = "S = 0.97 with the entry that stays"
        first.replaced_by = s.scalars(
            sa.select(m.DatasetEntry).where(m.DatasetEntry.clip_id != clip_id)
        ).one()
        s.flush()
        s.add(m.DatasetEntry(clip_id=clip_id, rating_score=0.8, confidence=0.7))  # rejoins
    with session_scope(engine, write=False) as s:
        entries = s.scalars(
            sa.select(m.DatasetEntry)
            .where(m.DatasetEntry.clip_id == clip_id)
            .order_by(m.DatasetEntry.id)
        ).all()
        assert [e.active for e in entries] == [False, True]
        assert entries[0].removal_reason is RemovalReason.DUPLICATE
        assert entries[0].replaced_by.clip_id != clip_id


def test_json_columns_round_trip(engine: Engine, make) -> None:
    settings = {"lr": 1e-4, "replay": 0.25, "nested": {"ids": [1, 2, 3], "name": "café ♪"}}
    curve = [{"step": i, "loss": 1 / (i + 1)} for i in range(50)]
    representation = [0.0, 0.125, 0.875, 1e-9]
    with session_scope(engine) as s:
        parent = make(s).version(name="v0", status=VersionStatus.ACTIVE)
        child = make(s).version(name="v1", parent=parent, metrics={"fad": 3.25})
        run = m.TrainingRun(
            parent_version=parent,
            version=child,
            settings=settings,
            loss_curve=curve,
            training_set=[{"clip_id": 7, "confidence": 0.5}],
        )
        s.add(run)
        clip = make(s).clip(representation=representation)
        s.flush()
        ids = (run.id, child.id, clip.id)
    with session_scope(engine, write=False) as s:
        run, child, clip = (
            s.get(m.TrainingRun, ids[0]),
            s.get(m.ModelVersion, ids[1]),
            s.get(m.Clip, ids[2]),
        )
        assert run.settings == settings and run.loss_curve == curve
        assert run.training_set == [{"clip_id": 7, "confidence": 0.5}]
        assert child.training_run.id == run.id and child.parent.name == "v0"
        assert child.metrics == {"fad": 3.25}
        assert clip.representation == representation


def test_timestamps_are_utc_aware_and_naive_ones_refused(engine: Engine, make) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    with session_scope(engine) as s:
        u = make(s).user()
        s.add(m.LoginSession(user=u, token_hash="x" * 64, csrf_token="y", expires_at=local))
    with session_scope(engine, write=False) as s:
        stored = s.scalars(sa.select(m.LoginSession)).one().expires_at
        assert stored.utcoffset() == dt.timedelta(0)
        assert stored == local  # same instant
        assert (stored.hour, stored.microsecond) == (12, 123456)
        # Comparisons in SQL work with aware values on both backends.
        later = local + dt.timedelta(seconds=1)
        found = s.scalars(sa.select(m.LoginSession).where(m.LoginSession.expires_at < later))
        assert len(found.all()) == 1
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), session_scope(engine) as s:
        u = make(s).user()
        s.add(
            m.LoginSession(
                user=u, token_hash="z" * 64, csrf_token="y", expires_at=dt.datetime(2025, 1, 1)
            )
        )
        s.flush()


def test_as_utc_tags_a_naive_stored_time_as_utc() -> None:
    from encore.store import as_utc

    naive = dt.datetime(2025, 6, 1, 12, 30)
    assert as_utc(naive) == naive.replace(tzinfo=dt.UTC)
    plus_two = dt.datetime(2025, 6, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert as_utc(plus_two) is plus_two  # an aware time is kept as it is
    assert as_utc(None) is None


def test_job_defaults_and_enum_validation(engine: Engine) -> None:
    with session_scope(engine) as s:
        job = m.Job(kind="generate", payload={"clip_id": 3})
        s.add(job)
        s.flush()
        job_id = job.id
    with session_scope(engine, write=False) as s:
        job = s.get(m.Job, job_id)
        assert (job.status, job.queue, job.attempts, job.progress) == (
            JobStatus.QUEUED,
            QueueName.GENERATE,
            0,
            0.0,
        )
        assert job.enqueued_at is None and not job.finished
    with pytest.raises(sa.exc.StatementError, match="sleeping"), session_scope(engine) as s:
        s.execute(sa.update(m.Job).where(m.Job.id == job_id).values(status="sleeping"))
