"""The web platform: FastAPI app, pages, JSON API, security (``create_app``).

Import :func:`create_app` from here; the submodules ``security``, ``ratelimit``, ``media``
and ``errors`` do not need the services layer and can be used on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> FastAPI:
    """Build the web app; see :func:`encore.web.app.create_app`."""
    from encore.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)
