"""Web security: session cookie, CSRF, body size limits, security headers, safe settings.

- **Session**: the cookie holds the raw session token returned by
  ``services.accounts.sign_in`` (the database keeps only its hash). ``HttpOnly``,
  ``SameSite=Lax``, ``Path=/``, and ``Secure`` outside development and test.
- **CSRF** (:class:`CsrfMiddleware`), on every POST/PUT/PATCH/DELETE:
  1. Fetch Metadata / Origin: a request whose ``Sec-Fetch-Site`` is neither
     ``same-origin`` nor ``none`` is refused, unless its ``Origin`` is one of the trusted
     origins; without ``Sec-Fetch-Site`` an ``Origin`` (or ``Referer``) that is present must
     be this site's or a trusted one (clients that send neither are not browsers).
  2. Synchronizer token: when the request carries a valid session cookie, it must also carry
     the session's CSRF token in the ``X-CSRF-Token`` header or, for an url-encoded form, in
     the ``csrf_token`` field.
- **Body size** (:class:`BodyLimitMiddleware`): a ``Content-Length`` over the limit is refused
  at once (413); otherwise bytes are counted as they arrive and the request fails with 413
  the moment the limit is passed, before the whole body is buffered (chunked uploads too).
- **Headers** (:class:`SecurityHeadersMiddleware`): a CSP allowing only this site's scripts,
  styles, images and media, ``frame-ancestors 'none'``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import hmac
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from encore.config import Settings
from encore.errors import ConfigurationError
from encore.units import apart, format_size
from encore.web.errors import CsrfRefused, ErrorRenderer, RequestTooLarge

logger = logging.getLogger(__name__)

SESSION_COOKIE = "encore_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE = 14 * 24 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM_BYTES = 64 * 1024

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
)


# --- settings ------------------------------------------------------------------------------


def check_settings(settings: Settings) -> None:
    """Refuse to serve with unsafe settings in production.

    encore has no secret key: session tokens, CSRF tokens, invitation codes and reset links
    are random and only their hashes are stored, so nothing is signed with a server secret.

    Raises
    ------
    ConfigurationError
        In production without ``ENCORE_ALLOWED_HOSTS``: links built from the request
        (invitations, password resets) would carry whatever ``Host`` a client sent.
    """
    if settings.environment != "production":
        return
    if not settings.allowed_hosts:
        raise ConfigurationError(
            "ENCORE_ALLOWED_HOSTS is empty; in production list the host names this server "
            "answers for, e.g. ENCORE_ALLOWED_HOSTS='[\"music.example.org\"]'"
        )


def cookie_secure(settings: Settings) -> bool:
    """Whether the session cookie gets the ``Secure`` flag (HTTPS only)."""
    return settings.environment not in ("development", "test")


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """Attach the session cookie for ``token`` to ``response``."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_secure(settings),
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Make the browser forget the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(settings)
    )


# --- redirects -----------------------------------------------------------------------------

_NOT_IN_PATH = re.compile(r"[\x00-\x20\x7f\\]")


def safe_next(target: str | None, default: str = "/songs") -> str:
    """``target`` if it is a path of this site, else ``default`` (after sign-in).

    Only an absolute path is kept: it must start with one ``/``, and contain no
    whitespace or control character (browsers drop tabs and newlines, so ``/\t/evil.com``
    becomes ``//evil.com``), no backslash (read as ``/``), and parse with no scheme or host.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if _NOT_IN_PATH.search(target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


# --- file names ----------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


def display_filename(raw: str | None, *, max_length: int = 120) -> str:
    """A client file name reduced to something safe to *show* (never used as a path).

    Keeps the last path component, drops control characters and separators, normalises
    Unicode and trims the length; an empty result becomes ``"upload"``.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_NAME.sub("", name).strip().strip(".")
    if len(name) > max_length:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: max_length - len(ext) - 1] + dot + ext) if dot and len(ext) <= 8 else name[:max_length]
    return name or "upload"


# --- middlewares ---------------------------------------------------------------------------


def hsts_seconds(settings: Settings) -> int:
    """``Strict-Transport-Security`` max-age: ``ENCORE_HSTS_SECONDS`` in production (served
    over HTTPS there, the session cookie is ``Secure``), 0 (not sent) elsewhere."""
    return settings.hsts_seconds if settings.environment == "production" else 0


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response that does not set them, and
    ``Strict-Transport-Security`` when ``hsts_seconds`` > 0."""

    def __init__(self, app: ASGIApp, *, hsts_seconds: int = 0) -> None:
        self.app = app
        self.headers = list(SECURITY_HEADERS)
        if hsts_seconds > 0:
            self.headers.append(("strict-transport-security", f"max-age={hsts_seconds}"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AllowedHostsMiddleware:
    """Refuses requests whose ``Host`` is not in ``allowed_hosts`` (400), so that links
    built from the request (invitations, reset links) and origin checks never use a host
    an attacker chose. ``"*.example.org"`` allows the subdomains of example.org."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], renderer: ErrorRenderer) -> None:
        self.app = app
        self.exact = {h.lower() for h in allowed_hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))
        self.any = "*" in self.exact
        self.renderer = renderer

    def allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower()
        return self.any or name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if self.allowed(host):
            await self.app(scope, receive, send)
            return
        response = self.renderer.render(
            Request(scope), 400, f"this server does not answer for the host {host[:100]!r}",
            kind="InvalidHost",
        )
        await response(scope, receive, send)


def request_origin(scope: Scope) -> str:
    """``scheme://host[:port]`` of this request as the browser addressed it."""
    headers = Headers(scope=scope)
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def cross_site_reason(scope: Scope, trusted_origins: Iterable[str]) -> str | None:
    """Why a state-changing request looks cross-site, or ``None`` if it is acceptable.

    Parameters
    ----------
    scope
        The ASGI scope of the request.
    trusted_origins
        Origins (``scheme://host[:port]``) allowed besides this site's own.
    """
    headers = Headers(scope=scope)
    own = request_origin(scope)
    allowed = {own, *trusted_origins}
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none") or (origin is not None and origin in allowed):
            return None
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    if origin is not None:
        if origin in allowed:
            return None
        return f"cross-site request refused (Origin: {origin})"
    referer = headers.get("referer")
    if referer is not None and _origin_of(referer) not in allowed:
        return f"cross-site request refused (Referer from {_origin_of(referer)})"
    return None


TokenLookup = Callable[[str], Awaitable[str | None]]


class CsrfMiddleware:
    """Refuses cross-site state-changing requests and requests without the CSRF token.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    token_for_session
        ``async (session_token) -> expected CSRF token``, or ``None`` when the session is
        unknown or expired (then the request is treated as anonymous: routes that need a
        user refuse it themselves).
    renderer
        Builds the 403 response.
    trusted_origins
        Extra origins allowed to post (a reverse proxy's public origin).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token_for_session: TokenLookup,
        renderer: ErrorRenderer,
        trusted_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.token_for_session = token_for_session
        self.renderer = renderer
        self.trusted_origins = tuple(o.rstrip("/") for o in trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        reason = cross_site_reason(scope, self.trusted_origins)
        if reason is not None:
            logger.info("CSRF: %s %s: %s", scope["method"], scope["path"], reason)
            await self._refuse(scope, receive, send, reason)
            return
        request = Request(scope)
        session_token = request.cookies.get(SESSION_COOKIE)
        expected = await self.token_for_session(session_token) if session_token else None
        if expected is None:
            await self.app(scope, receive, send)
            return
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            body = await _read_body(receive, MAX_FORM_BYTES)
            if body is None:
                await self._refuse(scope, receive, send, "form too large", status=413)
                return
            values = parse_qs(body.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
            sent = values[0] if values else None
            receive = _replay(body)
        if sent is None or not hmac.compare_digest(sent.encode(), expected.encode()):
            logger.info("CSRF: %s %s: missing or wrong token", scope["method"], scope["path"])
            await self._refuse(
                scope, receive, send, "missing or wrong CSRF token; reload the page and retry"
            )
            return
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, message: str, status: int = 403
    ) -> None:
        kind = CsrfRefused.__name__ if status == 403 else RequestTooLarge.__name__
        response = self.renderer.render(Request(scope), status, message, kind=kind)
        await response(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class BodyLimitMiddleware:
    """Caps request bodies while they stream in.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    default_limit
        Bytes allowed for any request body.
    limits
        ``(path_prefix, bytes)`` pairs for routes that accept more (uploads); the first
        matching prefix wins.
    file_limits
        ``(path_prefix, bytes)`` pairs for routes whose body carries one file with its own
        limit (the body's limit adds the multipart overhead): the 413 then states the
        file's limit, in MB, as the listener knows it.
    renderer
        Builds the 413 response for a too-large ``Content-Length``.

    Notes
    -----
    Past the limit, ``receive()`` raises :class:`~encore.web.errors.RequestTooLarge`, which
    the error mapping turns into 413 (also when a framework wraps it while parsing).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        limits: Iterable[tuple[str, int]] = (),
        file_limits: Iterable[tuple[str, int]] = (),
        renderer: ErrorRenderer,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = tuple(limits)
        self.file_limits = tuple(file_limits)
        self.renderer = renderer

    def _too_large(self, path: str, limit: int, length: int | None) -> str:
        for prefix, file_limit in self.file_limits:
            if path.startswith(prefix):
                size = "" if length is None else f" (the request is {format_size(length)})"
                return f"the file is over the limit of {format_size(file_limit)}{size}"
        if length is None:
            return f"request body is over the limit of {format_size(limit)}"
        got, most = apart(format_size, length, limit)
        return f"request body of {got} is over the limit of {most}"

    def limit_for(self, path: str) -> int:
        """The body limit (bytes) of requests to ``path``."""
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            message = self._too_large(scope["path"], limit, int(length))
            response = self.renderer.render(
                Request(scope), 413, message, kind=RequestTooLarge.__name__,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(self._too_large(scope["path"], limit, None))
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLarge as exc:  # raised past any handler (e.g. inside a middleware)
            if started:
                raise
            response = self.renderer.render(
                Request(scope), 413, str(exc), kind=RequestTooLarge.__name__,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
