"""Issue 18 §4: truthful labels, the per-song opt-out, deleting songs and accounts (blobs
deleted, ratings kept anonymous), the data export."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts
from encore.services.music import OTHER_LISTENER_LABEL
from encore.store import ClipInput, DatasetEntry, Delivery, Rating, Song, User

from .web_helpers import PASSWORD, listen_and_rate, signed_in, song_bytes, upload


def _listener(app: FastAPI, name: str) -> TestClient:
    email = f"{name}@example.org"
    accounts.create_user(app.state.ctx, email=email, password=PASSWORD, display_name=name)
    return signed_in(app, email)


def _blob_files(app: FastAPI) -> set[str]:
    """The blobs of songs and clips (model weights and taste snapshots are not personal)."""
    root = Path(app.state.settings.data_dir) / "blobs"
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] in ("songs", "clips")}


def _ask(client: TestClient, song_id: int) -> dict:
    r = client.post("/api/music", json={"song_ids": [song_id]})
    assert r.status_code == 201, r.text
    return client.get(f"/api/deliveries/{r.json()['delivery_id']}").json()


def _review_app(make_app: Callable[..., FastAPI]) -> FastAPI:
    # Every request is offered a pending clip of another listener when there is one.
    return make_app(dispatch_review_share=1.0, baseline_probability=0.0, curation_min_ratings=3)


def test_a_clip_made_from_another_listeners_song_says_so(make_app: Callable[..., FastAPI]) -> None:
    """The probe: bob asks for music from his own song and gets ada's clip. The page must not
    say "Made from <bob's song>" nor name ada's song."""
    app = _review_app(make_app)
    ada, bob = _listener(app, "ada"), _listener(app, "bob")
    ada_song = upload(ada, song_bytes(1), data={"title": "Ada private demo"}).json()["song"]
    bob_song = upload(bob, song_bytes(2), data={"title": "Bob song"}).json()["song"]
    mine = _ask(ada, ada_song["id"])
    assert mine["made_from"] == "Made from Ada private demo."
    view = _ask(bob, bob_song["id"])
    assert view["made_from"] == OTHER_LISTENER_LABEL
    page = bob.get(f"/music/{view['delivery_id']}").text
    assert OTHER_LISTENER_LABEL in page
    assert "Ada private demo" not in page and "Made from Bob song" not in page
    history = bob.get("/history").text
    assert OTHER_LISTENER_LABEL in history and "Ada private demo" not in history


def test_a_song_kept_private_is_never_served_to_others(make_app: Callable[..., FastAPI]) -> None:
    app = _review_app(make_app)
    ada, bob = _listener(app, "ada"), _listener(app, "bob")
    ada_song = upload(ada, song_bytes(1), data={"title": "Ada private demo"}).json()["song"]
    bob_song = upload(bob, song_bytes(2), data={"title": "Bob song"}).json()["song"]
    assert ada_song["shared"] is True
    r = ada.post(f"/api/songs/{ada_song['id']}/sharing", json={"shared": False})
    assert r.status_code == 200 and r.json()["song"]["shared"] is False
    _ask(ada, ada_song["id"])
    for _ in range(2):
        assert _ask(bob, bob_song["id"])["made_from"] == "Made from Bob song."
    bob_id = bob.get("/api/me").json()["user"]["id"]
    with app.state.ctx.reading() as session:
        served = session.scalars(
            sa.select(Delivery.id)
            .join(ClipInput, ClipInput.clip_id == Delivery.clip_id)
            .where(Delivery.listener_id == bob_id, ClipInput.song_id == ada_song["id"])
        ).all()
    assert served == []
    # Bob cannot change ada's song.
    assert bob.post(f"/api/songs/{ada_song['id']}/sharing", json={"shared": True}).status_code == 403


def test_the_upload_page_says_music_may_reach_other_listeners(listener: TestClient) -> None:
    html = listener.get("/upload").text
    assert "may be played to other listeners of this installation" in html


def test_deleting_a_song_deletes_its_blobs_and_keeps_ratings_anonymous(
    make_app: Callable[..., FastAPI]
) -> None:
    app = make_app(curation_min_ratings=1)
    ada = _listener(app, "ada")
    before = _blob_files(app)
    song = upload(ada, song_bytes(1), data={"title": "To be deleted"}).json()["song"]
    delivery = _ask(ada, song["id"])["delivery_id"]
    listen_and_rate(ada, delivery)
    op = _listener(app, "op2")
    with app.state.ctx.session() as session:  # make op an operator to curate
        session.scalar(sa.select(User).where(User.email == "op2@example.org")).role = "operator"
    app.state.session_users.clear()
    op.post("/api/operator/curate")
    created = _blob_files(app) - before
    assert created, "the upload and the clip stored blobs"
    r = ada.delete(f"/api/songs/{song['id']}")
    assert r.status_code == 200, r.text
    assert _blob_files(app) - before == set()  # every blob of the song and its clips is gone
    assert ada.get(f"/api/songs/{song['id']}").status_code == 404
    assert ada.get("/api/songs").json()["songs"] == []
    assert ada.get(f"/api/deliveries/{delivery}/audio").status_code == 404
    view = ada.get(f"/api/deliveries/{delivery}").json()
    assert view["status"] == "failed" and "no longer available" in view["message"]
    with app.state.ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Rating)) == 1  # kept
        assert session.scalar(
            sa.select(sa.func.count()).select_from(DatasetEntry).where(DatasetEntry.removed_at.is_(None))
        ) == 0
        titles = list(session.scalars(sa.select(Song.title)))
    assert "To be deleted" not in titles
    # The same file can be uploaded again.
    assert upload(ada, song_bytes(1)).status_code == 201


def test_deleting_an_account(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    ada = _listener(app, "ada")
    other_session = signed_in(app, "ada@example.org")
    song = upload(ada, song_bytes(1)).json()["song"]
    listen_and_rate(ada, _ask(ada, song["id"])["delivery_id"])
    wrong = ada.post("/api/account/delete", json={"password": "not-my-password"})
    assert wrong.status_code == 403 and "not deleted" in wrong.json()["error"]["message"]
    r = ada.post("/api/account/delete", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    assert ada.get("/api/me").json()["user"] is None
    assert other_session.get("/api/me").json()["user"] is None
    refused = TestClient(app).post("/api/auth/signin", json={"email": "ada@example.org", "password": PASSWORD})
    assert refused.status_code == 403
    with app.state.ctx.reading() as session:
        user = session.scalar(sa.select(User).where(User.deleted_at.is_not(None)))
        assert user is not None and "ada" not in user.email and user.display_name == "deleted listener"
        assert session.scalar(sa.select(sa.func.count()).select_from(Rating)) == 1
    assert _blob_files(app) == set()
    # The address is free for a new account.
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)


def test_the_data_export_holds_songs_clips_and_ratings(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    ada = _listener(app, "ada")
    data = song_bytes(1)
    song = upload(ada, data, data={"title": "My song"}).json()["song"]
    delivery = _ask(ada, song["id"])["delivery_id"]
    listen_and_rate(ada, delivery, 4.5)
    r = ada.get("/api/account/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    assert {"account.json", "songs.json", "deliveries.json", "ratings.csv"} <= names
    assert json.loads(zf.read("account.json"))["email"] == "ada@example.org"
    songs = json.loads(zf.read("songs.json"))
    assert songs[0]["title"] == "My song" and zf.read(songs[0]["file"]) == data
    deliveries = json.loads(zf.read("deliveries.json"))
    assert deliveries[0]["rating"] == 4.5 and deliveries[0]["made_from"] == "Made from My song."
    clip = zf.read(deliveries[0]["file"])
    assert clip == ada.get(f"/api/deliveries/{delivery}/audio").content
    assert "4.5" in zf.read("ratings.csv").decode()
    assert TestClient(app).get("/api/account/export").status_code == 401


def test_opting_out_takes_the_songs_clips_out_of_the_data_set(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(curation_min_ratings=1)
    ada = _listener(app, "ada")
    song = upload(ada, song_bytes(1)).json()["song"]
    listen_and_rate(ada, _ask(ada, song["id"])["delivery_id"], 5)
    from encore.services import curation

    curation.curate(app.state.ctx)

    def active() -> int:
        with app.state.ctx.reading() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(DatasetEntry)
                                      .where(DatasetEntry.removed_at.is_(None))))

    assert active() == 1
    assert ada.post(f"/api/songs/{song['id']}/sharing", json={"shared": False}).status_code == 200
    assert active() == 0
    curation.curate(app.state.ctx)  # and it is not admitted again
    assert active() == 0
