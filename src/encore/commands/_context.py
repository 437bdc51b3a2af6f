"""Shared by the operator commands: the service context of the configured installation."""

from __future__ import annotations

from typing import Any


def service_context(*, queues: bool = True) -> Any:
    """Migrate the configured database if needed and return a :class:`ServiceContext`."""
    from encore.config import get_settings
    from encore.services.context import ServiceContext
    from encore.store.db import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return ServiceContext.from_settings(settings, queues=queues)
