"""docs/configuration.md is generated from the settings class and cannot drift from it."""

from __future__ import annotations

from pathlib import Path

from encore.config import Settings
from encore.config_docs import field_docs, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_is_documented_with_a_reason() -> None:
    docs = field_docs()
    assert [d.name for d in docs] == list(Settings.model_fields)
    missing = [d.env for d in docs if not d.why.strip()]
    assert not missing, f"add a comment above these settings in src/encore/config.py: {missing}"


def test_docs_configuration_md_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md differs from the settings: run "
        "`.venv/bin/python -m encore.config_docs --write` and commit the result"
    )


def test_every_variable_appears_once() -> None:
    text = DOC.read_text()
    for name in Settings.model_fields:
        assert text.count(f"| `ENCORE_{name.upper()}` |") == 1, name
