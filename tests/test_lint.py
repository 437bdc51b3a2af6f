"""The lint gate (``make lint``) inside the suite: ruff clean over src and tests (RUF100
makes a ``noqa`` for a rule that is not enabled an error), and mypy clean over the packages
listed in pyproject.toml's ``[tool.mypy]``, with no ``type: ignore`` in them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def test_ruff_is_clean_and_checks_its_noqa() -> None:
    assert "RUF100" in CONFIG["tool"]["ruff"]["lint"]["select"]
    result = run("ruff", "check", "src", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_packages_have_no_type_ignore() -> None:
    files = CONFIG["tool"]["mypy"]["files"]
    assert {"src/encore/audio", "src/encore/feedback", "src/encore/store", "src/encore/taste"} <= set(files)
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in files for path in (ROOT / folder).rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if "type: ignore" in line]
    assert not found, found


@pytest.mark.timeout(900)
def test_mypy_is_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
