"""Route dependencies: the service context, the signed-in user, roles, rate limits, pages.

Routes declare what they need with the ``Annotated`` aliases here (``CtxDep``,
``CurrentUser``, ``OperatorUser`` …) and stay one service call long.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from encore.config import Settings
from encore.errors import EncoreError, PermissionDenied, TooManyRequests
from encore.services import accounts
from encore.services.context import ServiceContext, WriterBusy
from encore.store.models import User
from encore.web.errors import AuthenticationRequired, status_for
from encore.web.ratelimit import PendingCheck, RateLimits
from encore.web.security import SESSION_COOKIE

T = TypeVar("T")


class _PerSession(Generic[T]):
    """A value looked up by session token, cached for ``ttl`` seconds (keyed by the token's
    SHA-256; bounded, oldest entries dropped first). ``None`` answers are not cached: an
    unknown or guessed token always reaches the database."""

    def __init__(self, ctx: ServiceContext, *, ttl: float, max_entries: int = 10_000):
        self.ctx = ctx
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[T, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # bumped by forget/clear: a lookup that raced them is not stored

    @staticmethod
    def _key(session_token: str) -> str:
        return hashlib.sha256(session_token.encode()).hexdigest()

    def _load(self, session_token: str) -> T | None:
        raise NotImplementedError

    def cached(self, session_token: str) -> T | None:
        """The cached value of a session, without asking the database."""
        with self._lock:
            hit = self._cache.get(self._key(session_token))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def lookup(self, session_token: str) -> T | None:
        """The session's value (from the cache or the database), or ``None``."""
        hit = self.cached(session_token)
        if hit is not None:
            return hit
        with self._lock:
            generation = self._generation
        value = self._load(session_token)
        if value is not None and self.ttl > 0:
            with self._lock:
                if generation != self._generation:  # a sign-out or deactivation came between
                    return value
                if len(self._cache) >= self.max_entries:
                    for old in list(self._cache)[: self.max_entries // 10 or 1]:
                        del self._cache[old]
                self._cache[self._key(session_token)] = (value, time.monotonic() + self.ttl)
        return value

    async def lookup_async(self, session_token: str) -> T | None:
        """:meth:`lookup` for the event loop (the database part in the thread pool)."""
        hit = self.cached(session_token)
        return hit if hit is not None else await run_in_threadpool(self.lookup, session_token)

    def forget(self, session_token: str) -> None:
        """Drop one session (on sign-out)."""
        with self._lock:
            self._cache.pop(self._key(session_token), None)
            self._generation += 1

    def clear(self) -> None:
        """Drop every session (an account was changed)."""
        with self._lock:
            self._cache.clear()
            self._generation += 1


class CsrfTokens(_PerSession[str]):
    """The CSRF token of each session, cached for a few minutes.

    A session's token never changes, and a cached token of a session that has since ended
    is harmless (the session itself is refused), so a short cache saves a database read on
    every state-changing request.
    """

    def __init__(self, ctx: ServiceContext, *, ttl: float = 300.0, max_entries: int = 10_000):
        super().__init__(ctx, ttl=ttl, max_entries=max_entries)

    def _load(self, session_token: str) -> str | None:
        try:
            return accounts.csrf_token_for_session(self.ctx, session_token) or None
        except EncoreError:
            return None


class SessionUsers(_PerSession[User]):
    """The signed-in user of each session token, cached for a few seconds.

    Every request looks up its session; the cache answers most of them in the event loop,
    without a database read or a trip to the thread pool. A session ended or an account
    deactivated through *this* process is forgotten at once (:meth:`forget`,
    :meth:`clear`); other web processes (``--web-workers N``) notice within ``ttl``
    seconds (``ENCORE_SESSION_CACHE_SECONDS``).
    """

    def __init__(self, ctx: ServiceContext, *, ttl: float = 5.0, max_entries: int = 10_000):
        super().__init__(ctx, ttl=ttl, max_entries=max_entries)

    def _load(self, session_token: str) -> User | None:
        return accounts.user_for_session(self.ctx, session_token)


async def run_short_write(ctx: ServiceContext, call: Callable[[], T], *,
                          check: PendingCheck | None = None) -> T:
    """Run ``call``, a service call of a few short statements, without a thread-pool hop
    when it cannot block; ``check`` (a rate limit) first, raising before ``call`` when used up.

    On SQLite reads never wait (WAL) and writers queue on encore's writer lock: the call
    runs in the event loop and, if another writer holds the lock, stops at ``BEGIN``
    (nothing written) and runs again in the thread pool, where waiting is fine. A hop
    costs more than a listening heartbeat's own work, and the route threads fight the event
    loop for the GIL. On PostgreSQL every statement is a network round trip: thread pool.
    A check counted in Redis is a round trip too: it never runs in the event loop, but with
    the call in the same hop (counted once, also when the call is retried).
    """
    if ctx.writers_queue_in_process and (check is None or check.in_process):
        if check is not None:
            check()
        try:
            with ctx.without_waiting():
                return call()
        except WriterBusy:
            pass
        return await run_in_threadpool(call)

    def checked() -> T:
        if check is not None:
            check()
        return call()

    return await run_in_threadpool(checked)


async def get_ctx(request: Request) -> ServiceContext:
    """The app's service context.

    The trivial dependencies here are ``async`` so that FastAPI calls them in the event
    loop instead of sending each to the thread pool (a hop per dependency per request).
    """
    return request.app.state.ctx  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_limits(request: Request) -> RateLimits:
    """The app's rate limits."""
    return request.app.state.limits  # type: ignore[no-any-return]


async def get_templates(request: Request) -> Jinja2Templates:
    """The app's page templates."""
    return request.app.state.templates  # type: ignore[no-any-return]


CtxDep = Annotated[ServiceContext, Depends(get_ctx)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]


def session_token(request: Request) -> str | None:
    """The raw session token from the cookie, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


async def optional_user(request: Request) -> User | None:
    """The signed-in user, or ``None`` (see :class:`SessionUsers` for the cache)."""
    token = session_token(request)
    if token is None:
        return None
    user = await request.app.state.session_users.lookup_async(token)
    request.state.user = user
    return user


MaybeUser = Annotated[User | None, Depends(optional_user)]


async def current_user(user: MaybeUser) -> User:
    """The signed-in user; 401 (or a redirect to sign in, for pages) otherwise."""
    if user is None:
        raise AuthenticationRequired("please sign in first")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def operator_user(user: CurrentUser) -> User:
    """The signed-in operator; 403 for anyone else."""
    if not user.is_operator:
        raise PermissionDenied("this page is for the platform's operators only")
    return user


OperatorUser = Annotated[User, Depends(operator_user)]


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or the one reported by a proxy listed in
    ``ENCORE_TRUSTED_PROXIES`` (applied by the app's proxy-headers middleware; no proxy
    header is believed otherwise)."""
    return request.client.host if request.client else "unknown"


def render(
    request: Request,
    name: str,
    *,
    user: User | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render page ``name`` with the user, the session's CSRF token and ``context``."""
    token = session_token(request)
    csrf = request.app.state.csrf_tokens.lookup(token) if (token and user) else None
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        name,
        {"user": user, "csrf_token": csrf, **context},
        status_code=status_code,
    )


def render_form_error(request: Request, name: str, exc: EncoreError, **context: Any) -> Response:
    """A page whose form failed, signed out: ``name`` again with the reason, the error's
    status and, for a rate limit, its ``Retry-After`` (as the JSON API answers)."""
    response = render(request, name, user=None, status_code=status_for(exc),
                      form_error=str(exc), **context)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


#: A password or an e-mail address in a request body: bounded here, checked by
#: :mod:`encore.services.accounts` (the password's minimum length, the address's form).
Password = Annotated[str, Field(min_length=1, max_length=accounts.MAX_PASSWORD_LENGTH)]
Email = Annotated[str, Field(min_length=3, max_length=accounts.MAX_EMAIL_LENGTH)]
