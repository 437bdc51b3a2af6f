"""The FastAPI application: :func:`create_app` wires settings, services, security and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from encore.config import Settings, get_settings
from encore.services.context import ServiceContext
from encore.web import ops
from encore.web.deps import CsrfTokens, SessionUsers
from encore.web.errors import ErrorRenderer, install_error_handlers
from encore.web.ratelimit import Limit, RateLimits, limiter_for, signin_slowdown_for
from encore.web.routes import account, auth, music, operator, pages, songs
from encore.web.security import (
    AllowedHostsMiddleware,
    BodyLimitMiddleware,
    CsrfMiddleware,
    SecurityHeadersMiddleware,
    check_settings,
    hsts_seconds,
)
from encore.web.templating import STATIC_DIR, make_templates

logger = logging.getLogger(__name__)

#: Body limit of every request that is not an upload (JSON, forms).
DEFAULT_BODY_LIMIT = 1024 * 1024
#: Room for the multipart framing and the title field around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_PATH = "/api/songs"


def rate_limits_from(settings: Settings) -> RateLimits:
    """The web app's named rate limits, read from ``settings``, counted in Redis when the
    settings name one (:func:`~encore.web.ratelimit.limiter_for`)."""
    return RateLimits(
        {
            "signin_ip": Limit.parse(settings.limit_signin_ip),
            "upload_account": Limit.parse(settings.limit_upload_account),
            "upload_ip": Limit.parse(settings.limit_upload_ip),
            "rating_account": Limit.parse(settings.limit_rating_account),
            "rating_ip": Limit.parse(settings.limit_rating_ip),
            "listen_account": Limit.parse(settings.limit_listen_account),
        },
        limiter_for(settings),
    )


def create_app(settings: Settings | None = None, *, ctx: ServiceContext | None = None) -> FastAPI:
    """Build the web app.

    Parameters
    ----------
    settings
        Deployment settings (default: :func:`encore.config.get_settings`).
    ctx
        The service context; built from ``settings`` when not given (tests pass their own).

    Raises
    ------
    ConfigurationError
        When the settings are unsafe for their environment (production without
        ``ENCORE_ALLOWED_HOSTS``).
    """
    settings = settings or get_settings()
    check_settings(settings)
    ctx = ctx or ServiceContext.from_settings(settings)
    templates = make_templates()
    renderer = ErrorRenderer(templates)
    csrf_tokens = CsrfTokens(ctx)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.web_threads:
            # Sync routes and dependencies run in this pool; with many more threads than
            # cores they mostly fight over the GIL (and SQLite writes are serialised anyway).
            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        yield

    app = FastAPI(
        title="encore",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN, which the CSP forbids
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.ctx = ctx
    app.state.templates = templates
    app.state.limits = rate_limits_from(settings)
    app.state.signin_slowdown = signin_slowdown_for(settings)
    app.state.csrf_tokens = csrf_tokens
    app.state.session_users = SessionUsers(ctx, ttl=settings.session_cache_seconds)

    install_error_handlers(app, renderer)
    for module in (auth, account, songs, music, operator, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Added innermost first: headers → body limit → CSRF → routes.
    app.add_middleware(
        CsrfMiddleware,
        token_for_session=csrf_tokens.lookup_async,
        renderer=renderer,
        trusted_origins=settings.trusted_origins,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=DEFAULT_BODY_LIMIT,
        limits=[(UPLOAD_PATH, settings.max_upload_bytes + MULTIPART_OVERHEAD)],
        file_limits=[(UPLOAD_PATH, settings.max_upload_bytes)],
        renderer=renderer,
    )
    app.add_middleware(SecurityHeadersMiddleware, hsts_seconds=hsts_seconds(settings))
    if settings.allowed_hosts:
        app.add_middleware(AllowedHostsMiddleware, allowed_hosts=settings.allowed_hosts,
                           renderer=renderer)
    if settings.trusted_proxies:
        # Outermost: the client address and scheme are those the trusted proxy reports.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    ops.install(app, ctx)  # /healthz, /readyz, /metrics; request ids (outermost middleware)
    logger.info("web app ready (%s environment)", settings.environment)
    return app
