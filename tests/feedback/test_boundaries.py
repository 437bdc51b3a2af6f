"""encore.feedback stays pure: no database, web, queue or torch."""

from __future__ import annotations

from ..boundaries import loaded_by_import

FORBIDDEN = ("sqlalchemy", "fastapi", "huey", "torch")


def test_importing_feedback_loads_no_database_web_queue_or_torch() -> None:
    modules = ["encore.feedback", "encore.feedback.dispatch", "encore.feedback.listening",
               "encore.feedback.rating", "encore.feedback.raters", "encore.feedback.curation",
               "encore.feedback.purge", "encore.feedback.stats"]
    assert loaded_by_import(modules, FORBIDDEN) == []
