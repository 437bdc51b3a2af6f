"""The one place where errors become HTTP responses.

Every :class:`encore.errors.EncoreError` raised below a route, and the web layer's own
refusals (not signed in, CSRF, rate limit, body too large), are turned into a status code
here: JSON ``{"error": {"status", "kind", "message"}}`` for ``/api/*`` and an HTML error page
for everything else. Unexpected exceptions are logged once, here, and shown as a plain 500
without internals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from encore.errors import (
    ConfigurationError,
    Conflict,
    EncoreError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TooManyRequests,
)

logger = logging.getLogger(__name__)


class AuthenticationRequired(EncoreError):
    """The request needs a signed-in user (401 for the API, a redirect for pages)."""


class CsrfRefused(PermissionDenied):
    """A state-changing request that is cross-site or lacks the session's CSRF token."""


class RequestTooLarge(EncoreError):
    """The request body is larger than the limit of its route (413)."""


# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (AuthenticationRequired, 401),
    (CsrfRefused, 403),
    (TooManyRequests, 429),
    (RequestTooLarge, 413),
    (QuotaExceeded, 413),
    (NotFound, 404),
    (PermissionDenied, 403),
    (Conflict, 409),
    (InvalidInput, 422),
    (ConfigurationError, 500),
    (EncoreError, 400),
)

TITLES = {
    400: "Bad request",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Already done",
    413: "Too large",
    422: "Cannot use this",
    429: "Slow down",
    500: "Something went wrong",
}


def status_for(exc: Exception) -> int:
    """The HTTP status of an :class:`EncoreError` (or 500 for anything else)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to the JSON API (errors as JSON, never redirects)."""
    return path == "/api" or path.startswith("/api/")


def page_user(request: Request) -> tuple[Any, str | None]:
    """The signed-in user of ``request`` and the session's CSRF token, for the top bar of an
    error page: the one a route's dependency already looked up, else the session cookie's
    (a 404 of an unknown path runs no dependency). ``(None, None)`` when signed out or when
    the lookup itself fails: an error page must render whatever went wrong."""
    from encore.web.security import SESSION_COOKIE  # security imports this module: a cycle

    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None, None
    state = request.app.state
    try:
        user = getattr(request.state, "user", None)
        if user is None and hasattr(state, "session_users"):
            user = state.session_users.lookup(token)
        if user is None:
            return None, None
        csrf = state.csrf_tokens.lookup(token) if hasattr(state, "csrf_tokens") else None
    except Exception:
        logger.warning("could not look up the session for an error page", exc_info=True)
        return None, None
    return user, csrf


class ErrorRenderer:
    """Builds error responses: JSON for the API, the ``error.html`` page otherwise.

    Parameters
    ----------
    templates
        The app's Jinja environment (``error.html`` must exist).
    """

    def __init__(self, templates: Jinja2Templates) -> None:
        self.templates = templates

    def render(
        self,
        request: Request,
        status: int,
        message: str,
        *,
        kind: str = "error",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One error response for ``request``."""
        path = request.url.path
        if is_api_path(path):
            body = {"error": {"status": status, "kind": kind, "message": message}}
            return JSONResponse(body, status_code=status, headers=dict(headers or {}))
        if status == 401 and request.method in ("GET", "HEAD"):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
        user, csrf = page_user(request)
        return self.templates.TemplateResponse(
            request,
            "error.html",
            {"status": status, "title": TITLES.get(status, "Error"), "message": message,
             "user": user, "csrf_token": csrf},
            status_code=status,
            headers=dict(headers or {}),
        )

    def for_exception(self, request: Request, exc: Exception) -> Response:
        """The response for an :class:`EncoreError` raised while handling ``request``."""
        status = status_for(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        return self.render(request, status, str(exc), kind=type(exc).__name__, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, renderer: ErrorRenderer) -> None:
    """Register the mapping on ``app`` (called once by ``create_app``)."""

    async def on_encore_error(request: Request, exc: Exception) -> Response:
        return renderer.for_exception(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return renderer.render(request, 422, _validation_message(exc), kind="InvalidInput")

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, EncoreError):  # e.g. body too large while parsing
            return renderer.for_exception(request, exc.__cause__)
        message = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404:
            message = f"there is nothing at {request.url.path}"
        return renderer.render(
            request, exc.status_code, message, kind="HTTPException", headers=exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return renderer.render(request, 500, "an unexpected error occurred", kind="InternalError")

    app.add_exception_handler(EncoreError, on_encore_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unexpected)
