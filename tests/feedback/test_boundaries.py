"""encore.feedback stays pure: no database, web, queue or torch."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "fastapi", "huey", "torch")


def test_importing_feedback_loads_no_database_web_queue_or_torch() -> None:
    code = (
        "import json, sys\n"
        "import encore.feedback\n"
        "import encore.feedback.dispatch, encore.feedback.listening, encore.feedback.rating\n"
        "import encore.feedback.raters, encore.feedback.curation, encore.feedback.purge\n"
        "import encore.feedback.stats\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
