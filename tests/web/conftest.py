"""Fixtures for the web tests: the real app over real services (SQLite in a temp folder,
Huey in immediate mode, tiny seeded models), a TestClient per user, audio made in memory."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.config import Settings
from encore.services import accounts
from encore.services.context import ServiceContext
from encore.store import UserRole
from encore.web.liveserver import LiveServer, build_tiny_models

from .browser_helpers import CHROMIUM, CHROMIUM_ARGS, LIVE_ENV
from .web_helpers import PASSWORD, signed_in, song_bytes, upload


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusion model folder, similarity model folder), randomly initialised, seeded."""
    return build_tiny_models(tmp_path_factory.mktemp("web-models"))


def web_settings(data_dir: Path, tiny_models: tuple[Path, Path], **changes: Any) -> Settings:
    """Test settings: tiny models, 1-second clips, half a second of minimum listen."""
    base, sim = tiny_models
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "queue_immediate": True,
        "base_model_dir": base,
        "similarity_model_dir": sim,
        "clip_seconds": 1.0,
        "default_piece_seconds": 1.0,  # one canvas unless a test asks for a longer piece
        "inference_steps": 3,
        "min_listen_seconds": 0.5,
        "min_song_seconds": 1.0,
        "max_upload_bytes": 400_000,
        "baseline_probability": 0.0,
        "torch_threads": 1,
        "curation_min_ratings": 1,
        # the paper's rule has a cold start that admits a lone rated clip, which the web
        # tests use to reach fine-tuning; the centred rule is tested in tests/services
        "curation_rule": "paper",
        "finetune_steps": 2,
        "finetune_batch_size": 2,
        "finetune_parent_replay_clips": 0,
        "finetune_eval_clips": 0,
    }
    values.update(changes)
    return Settings(**values)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread while these tests run: the tiny models gain nothing from more, and
    on a busy machine the extra threads make each tiny convolution ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> Iterator[None]:
    """Cheap Argon2 parameters: these tests exercise the web, not the hash's strength."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(accounts, "_hasher", lambda: hasher)
        accounts._dummy_hash.cache_clear()
        yield
    accounts._dummy_hash.cache_clear()


@pytest.fixture
def make_app(
    tmp_path: Path, tiny_models: tuple[Path, Path], sqlite_template: Path
) -> Callable[..., FastAPI]:
    """``make_app(**setting_changes)``: a fresh app on its own database."""
    from encore.web.app import create_app

    counter = iter(range(1000))

    def make(**changes: Any) -> FastAPI:
        settings = web_settings(tmp_path / f"var{next(counter)}", tiny_models, **changes)
        settings.data_dir.mkdir(parents=True)
        shutil.copyfile(sqlite_template, settings.data_dir / "encore.db")  # migrated
        return create_app(settings, ctx=ServiceContext.from_settings(settings, seed=7))

    return make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def ctx(app: FastAPI) -> ServiceContext:
    return app.state.ctx  # type: ignore[no-any-return]


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client




@pytest.fixture
def login(app: FastAPI) -> Callable[..., TestClient]:
    """``login(name, role=listener)``: create an account and return its signed-in client."""
    ctx = app.state.ctx
    counter = iter(range(1000))

    def make(name: str = "listener", role: UserRole = UserRole.LISTENER) -> TestClient:
        email = f"{name}{next(counter)}@example.org"
        accounts.create_user(ctx, email=email, password=PASSWORD, display_name=name, role=role)
        return signed_in(app, email)

    return make


@pytest.fixture
def listener(login: Callable[..., TestClient]) -> TestClient:
    return login("ada")


@pytest.fixture
def operator(login: Callable[..., TestClient]) -> TestClient:
    return login("op", role=UserRole.OPERATOR)






@pytest.fixture
def ready_delivery(listener: TestClient) -> int:
    """A delivery of a generated clip, ready to play, for ``listener``."""
    song = upload(listener, song_bytes(1)).json()["song"]
    response = listener.post("/api/music", json={"song_ids": [song["id"]], "closeness": 0.5})
    assert response.status_code == 201, response.text
    delivery_id = response.json()["delivery_id"]
    status = listener.get(f"/api/deliveries/{delivery_id}").json()
    assert status["status"] == "ready", status
    return int(delivery_id)


# -- the browser tests (test_web_browser*.py; helpers in browser_helpers.py) ---------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def start_live_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: tuple[Path, Path]
) -> Callable[..., AbstractContextManager[LiveServer]]:
    """``with start_live_server(name, workers=True, **env) as live:`` a real ``encore serve``
    on the tiny models with :data:`LIVE_ENV` and ``env`` (``ENCORE_*`` values), in a folder
    of its own; its operator's password is known."""
    base, sim = tiny_models

    @contextmanager
    def start(name: str, workers: bool = True, **env: str) -> Iterator[LiveServer]:
        env = {**LIVE_ENV, "ENCORE_BASE_MODEL_DIR": str(base),
               "ENCORE_SIMILARITY_MODEL_DIR": str(sim), **env}
        folder = tmp_path_factory.mktemp(name) / "var"
        with LiveServer(folder, env=env, workers=workers) as live:
            assert live.operator_password, live.log()
            yield live

    return start
