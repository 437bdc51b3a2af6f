"""Fixtures for the services: a real SQLite database, real blob storage, Huey in immediate
mode, and tiny seeded models (a 16-mel-bin diffusion model, a small similarity model) so
that generation and embedding run the real code in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encore.audio.mel import MelConfig
from encore.config import Settings
from encore.services import accounts
from encore.services.context import ServiceContext
from encore.store import UserRole
from encore.store.db import upgrade

TINY_MEL = MelConfig(x_res=32, y_res=16)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusion model folder, similarity model folder), randomly initialised, seeded."""
    from encore.diffusion.folder import build_random_model, save_model_folder
    from encore.diffusion.model import tiny_config
    from encore.similarity.config import SimilarityConfig
    from encore.similarity.model import SimilarityModel

    root = tmp_path_factory.mktemp("models")
    loaded = build_random_model(tiny_config(height=TINY_MEL.y_res), TINY_MEL, seed=0)
    diffusion_dir = save_model_folder(root / "base", loaded.denoiser, TINY_MEL, name="v0")
    sim_config = SimilarityConfig(
        image_height=TINY_MEL.y_res, image_width=TINY_MEL.x_res, pool=1, channels=(8, 8),
        latent_dim=8, codebook_size=16, head_hidden=16, embedding_dim=8,
    )
    sim_dir = root / "similarity"
    SimilarityModel.create(sim_config, seed=0, mel_config=TINY_MEL).save(sim_dir)
    return Path(diffusion_dir), sim_dir


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
    import io

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for k, f0 in enumerate(rng.uniform(110, 660, size=4)):
        start = k * seconds / 4
        env = np.clip((t - start) * 20, 0, 1) * np.exp(-np.clip(t - start, 0, None) * 1.5)
        for h in range(1, 5):
            y += env * np.sin(2 * np.pi * f0 * h * t) / h
    y = 0.3 * y / np.abs(y).max()
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format=fmt)
    return buf.getvalue()
