"""Import-boundary checks shared by the package tests (``from ..boundaries import …``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


def loaded_by_import(modules: Sequence[str], watched: Sequence[str], *, timeout: float = 120) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded once it has imported ``modules``."""
    code = (
        "import json, sys\n"
        f"import {', '.join(modules)}\n"
        f"print(json.dumps([m for m in {tuple(watched)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=timeout
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))
