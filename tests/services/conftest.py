"""Fixtures for the services: a real SQLite database, real blob storage, Huey in immediate
mode, and tiny seeded models (a 16-mel-bin diffusion model, a small similarity model) so
that generation and embedding run the real code in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from encore import config
from encore.config import Settings
from encore.services import accounts
from encore.services.context import ServiceContext
from encore.store import UserRole
from encore.store.db import upgrade
from encore.web.liveserver import build_tiny_models

from ..postgres import migrated_postgres_database
from ..songs import harmonic_song


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusion model folder, similarity model folder), randomly initialised, seeded."""
    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread while the test runs (restored afterwards): the tiny models are
    overhead-bound, and one thread is ~10x faster on a busy 2-core machine."""
    import torch  # here, not at the top: most service tests never load torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def installation(
    tmp_path: Path, tiny_models: tuple[Path, Path], env_settings: Callable[..., None],
    one_torch_thread: None,
) -> ServiceContext:
    """A configured installation as ``encore`` commands see it: settings from ``ENCORE_*``
    environment variables (tiny models, small fine-tunes, one torch thread), migrated."""
    base, sim = tiny_models
    env_settings(
        ENCORE_DATA_DIR=str(tmp_path / "var"),
        ENCORE_BASE_MODEL_DIR=str(base),
        ENCORE_SIMILARITY_MODEL_DIR=str(sim),
        ENCORE_FINETUNE_BATCH_SIZE="4",
        ENCORE_FINETUNE_PARENT_REPLAY_CLIPS="2",
        ENCORE_FINETUNE_EVAL_STEPS="2",
        ENCORE_TORCH_THREADS="1",
    )
    settings = config.get_settings()
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    return ServiceContext.from_settings(settings, queues=False)


@pytest.fixture
def settings(tmp_path: Path, tiny_models: tuple[Path, Path]) -> Settings:
    base, sim = tiny_models
    s = Settings(
        environment="test",
        data_dir=tmp_path / "var",
        queue_immediate=True,
        base_model_dir=base,
        similarity_model_dir=sim,
        clip_seconds=1.0,
        default_piece_seconds=1.0,  # one canvas unless a test asks for a longer piece
        inference_steps=3,
        min_listen_seconds=0.5,
        min_song_seconds=1.0,
        open_signup=True,
    )
    s.data_dir.mkdir(parents=True)
    upgrade(s.resolved_database_url)
    return s


@pytest.fixture
def ctx(settings: Settings) -> ServiceContext:
    return ServiceContext.from_settings(settings, seed=1234)


@pytest.fixture
def operator(ctx: ServiceContext):
    return accounts.create_user(
        ctx, email="op@example.org", password="operator-pass", role=UserRole.OPERATOR
    )


@pytest.fixture
def make_listener(ctx: ServiceContext):
    counter = iter(range(10_000))

    def make(name: str | None = None):
        n = next(counter)
        return accounts.create_user(
            ctx, email=f"{name or 'listener'}{n}@example.org", password="listener-pass"
        )

    return make


@pytest.fixture
def song_bytes():
    """``song_bytes(seed, seconds, fmt=...)``: a short harmonic test song, encoded."""
    return make_song_bytes


def make_song_bytes(seed: int = 0, seconds: float = 3.0, sr: int = 22050, fmt: str = "WAV") -> bytes:
    """A short harmonic test song (different per seed), encoded in memory."""
    return harmonic_song(seed, seconds, sr, fmt)


@pytest.fixture
def pg_context(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> Callable[..., AbstractContextManager[ServiceContext]]:
    """``with pg_context(**setting_changes) as ctx:`` a service context on a fresh, migrated
    PostgreSQL database (dropped afterwards) with the tiny models and short clips."""

    @contextmanager
    def context(**changes: Any) -> Iterator[ServiceContext]:
        with migrated_postgres_database() as url:
            base, sim = tiny_models
            settings = Settings(**{
                "environment": "test", "data_dir": tmp_path / "pg-var", "database_url": url,
                "base_model_dir": base, "similarity_model_dir": sim, "clip_seconds": 1.0,
                "inference_steps": 2, "default_piece_seconds": 1.0, "min_listen_seconds": 0.5,
                "min_song_seconds": 1.0, "open_signup": True, **changes,
            })
            ctx = ServiceContext.from_settings(settings, seed=5)
            yield ctx
            ctx.engine.dispose()

    return context
