"""encore.audio imports nothing of the web, the database or the queue, and is light to import."""

from __future__ import annotations

from ..boundaries import loaded_by_import

FORBIDDEN = ("sqlalchemy", "fastapi", "huey", "encore.store", "encore.services", "encore.web")
LAZY = ("torch", "librosa", "soundfile", "diffusers")


def test_importing_audio_loads_no_web_database_queue_nor_heavy_libraries() -> None:
    modules = ["encore.audio", "encore.audio.decode", "encore.audio.encode", "encore.audio.mel",
               "encore.audio.slices", "encore.audio.vocoder", "encore.audio.synth",
               "encore.audio.bench", "encore.audio.containers"]
    assert loaded_by_import(modules, FORBIDDEN + LAZY) == []
