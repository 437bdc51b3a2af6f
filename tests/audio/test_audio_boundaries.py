"""encore.audio imports nothing of the web, the database or the queue, and is light to import."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "fastapi", "huey", "encore.store", "encore.services", "encore.web")
LAZY = ("torch", "librosa", "soundfile", "diffusers")


def test_importing_audio_loads_no_web_database_queue_nor_heavy_libraries() -> None:
    code = (
        "import json, sys\n"
        "import encore.audio\n"
        "import encore.audio.decode, encore.audio.encode, encore.audio.mel\n"
        "import encore.audio.slices, encore.audio.vocoder, encore.audio.synth\n"
        "import encore.audio.bench, encore.audio.containers\n"
        f"print(json.dumps([m for m in {FORBIDDEN + LAZY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
