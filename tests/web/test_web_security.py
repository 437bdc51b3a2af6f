"""The security middlewares and the error mapping on a tiny app (no services needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from encore.config import Settings
from encore.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotAudio,
    NotFound,
    PermissionDenied,
)
from encore.web.errors import (
    AuthenticationRequired,
    ErrorRenderer,
    install_error_handlers,
    status_for,
)
from encore.web.ratelimit import RateLimited
from encore.web.security import (
    SESSION_COOKIE,
    BodyLimitMiddleware,
    CsrfMiddleware,
    SecurityHeadersMiddleware,
    check_settings,
    display_filename,
)
from encore.web.templating import make_templates

SESSIONS = {"good-session": "the-csrf-token"}
ERRORS: dict[str, Exception] = {
    "notfound": NotFound("song 7 does not exist"),
    "denied": PermissionDenied("song 7 is not yours"),
    "conflict": Conflict("clip 3 is already rated"),
    "invalid": InvalidInput("stars 7 is not between 1 and 5"),
    "notaudio": NotAudio("'x.mp3' is not audio"),
    "limited": RateLimited("too many rating requests", retry_after=12.2),
    "signin": AuthenticationRequired("please sign in first"),
    "config": ConfigurationError("bad settings"),
}


def make_app(*, body_limit: int = 1000, trusted: tuple[str, ...] = ()) -> FastAPI:
    renderer = ErrorRenderer(make_templates())
    app = FastAPI()
    install_error_handlers(app, renderer)

    @app.post("/api/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"received": len(await request.body())}

    @app.post("/api/json")
    def json_body(payload: dict[str, Any]) -> dict[str, Any]:
        return {"keys": sorted(payload)}

    @app.post("/form")
    async def form(request: Request) -> dict[str, Any]:
        data = await request.form()
        return {"fields": sorted(data.keys()), "name": data.get("name")}

    @app.get("/api/raise/{name}")
    @app.get("/raise/{name}")
    def raise_(name: str) -> None:
        raise ERRORS[name]

    async def lookup(token: str) -> str | None:
        return SESSIONS.get(token)

    app.add_middleware(CsrfMiddleware, token_for_session=lookup, renderer=renderer, trusted_origins=trusted)
    app.add_middleware(BodyLimitMiddleware, default_limit=body_limit, limits=[("/api/upload", 5000)], renderer=renderer)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


def test_security_headers_on_every_response(client: TestClient) -> None:
    for response in (client.get("/nowhere"), client.post("/api/echo", content=b"x")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/page"},
    ],
)
def test_cross_site_posts_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/api/echo", content=b"x", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["kind"] == "CsrfRefused"
    assert "cross-site request refused" in response.json()["error"]["message"]


def test_cross_site_form_post_gets_an_html_page(client: TestClient) -> None:
    response = client.post("/form", data={"name": "x"}, headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "cross-site request refused" in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
        {"origin": "http://testserver"},
        {"referer": "http://testserver/songs"},
        {},  # a non-browser client (no Origin, no Fetch Metadata)
    ],
)
def test_same_origin_anonymous_posts_pass(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/api/echo", content=b"hello", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 5}


def test_trusted_origin_passes_even_when_cross_site() -> None:
    client = TestClient(make_app(trusted=("https://music.example.org",)))
    headers = {"origin": "https://music.example.org", "sec-fetch-site": "cross-site"}
    assert client.post("/api/echo", content=b"x", headers=headers).status_code == 200


def test_session_requests_need_the_csrf_token(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "good-session")
    same = {"sec-fetch-site": "same-origin"}
    missing = client.post("/api/echo", content=b"x", headers=same)
    assert missing.status_code == 403
    assert "CSRF token" in missing.json()["error"]["message"]
    wrong = client.post("/api/echo", content=b"x", headers={**same, "x-csrf-token": "nope"})
    assert wrong.status_code == 403
    right = client.post("/api/echo", content=b"x", headers={**same, "x-csrf-token": "the-csrf-token"})
    assert right.status_code == 200


def test_form_field_token_is_accepted_and_the_body_still_reaches_the_route(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "good-session")
    response = client.post("/form", data={"name": "Ada", "csrf_token": "the-csrf-token"})
    assert response.status_code == 200, response.text
    assert response.json() == {"fields": ["csrf_token", "name"], "name": "Ada"}
    refused = client.post("/form", data={"name": "Ada", "csrf_token": "wrong"})
    assert refused.status_code == 403


def test_unknown_session_is_treated_as_anonymous(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "expired-session")
    assert client.post("/api/echo", content=b"x").status_code == 200


def test_safe_methods_are_not_checked(client: TestClient) -> None:
    response = client.get("/api/raise/notfound", headers={"sec-fetch-site": "cross-site"})
    assert response.status_code == 404


def test_declared_length_over_the_limit_is_refused_at_once(client: TestClient) -> None:
    response = client.post("/api/echo", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        "request body of 1001 bytes is over the limit of 1000 bytes"
    )
    assert client.post("/api/echo", content=b"x" * 1000).status_code == 200
    assert client.post("/api/upload", content=b"x" * 4000).status_code == 404  # per-path limit


def test_too_large_json_body_is_413_not_400(client: TestClient) -> None:
    body = b'{"a": "' + b"x" * 2000 + b'"}'

    def chunks():  # no Content-Length: counted while streaming
        yield body[:500]
        yield body[500:]

    response = client.post("/api/json", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_streamed_body_is_cut_off_while_streaming() -> None:
    """Chunked body without Content-Length: the app stops reading at the limit."""
    app = make_app(body_limit=1000)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 300, "more_body": pulled < 100}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/api/echo", "raw_path": b"/api/echo",
        "query_string": b"", "headers": [(b"host", b"testserver")], "scheme": "http",
        "server": ("testserver", 80), "client": ("127.0.0.1", 5000), "root_path": "",
        "http_version": "1.1", "asgi": {"version": "3.0"}, "app": app,
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled == 4  # 4 × 300 bytes > 1000: stopped there, not after 100 chunks


@pytest.mark.parametrize(
    ("name", "status"),
    [("notfound", 404), ("denied", 403), ("conflict", 409), ("invalid", 422),
     ("notaudio", 422), ("limited", 429), ("signin", 401), ("config", 500)],
)
def test_error_mapping_json(client: TestClient, name: str, status: int) -> None:
    response = client.get(f"/api/raise/{name}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["status"] == status
    assert error["message"] == str(ERRORS[name])
    assert error["kind"] == type(ERRORS[name]).__name__
    if name == "limited":
        assert response.headers["retry-after"] == "13"  # rounded up: never too early


def test_error_mapping_html(client: TestClient) -> None:
    response = client.get("/raise/denied")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "song 7 is not yours" in response.text
    redirect = client.get("/raise/signin?x=1", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/signin?next=%2Fraise%2Fsignin%3Fx%3D1"
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "there is nothing at /no/such/page" in missing.text


def test_status_for_unknown_exception_is_500() -> None:
    assert status_for(ValueError("x")) == 500


def test_production_needs_an_allowed_hosts_list_and_there_is_no_secret_key() -> None:
    with pytest.raises(ConfigurationError, match="ENCORE_ALLOWED_HOSTS is empty"):
        check_settings(Settings(environment="production"))
    check_settings(Settings(environment="production", allowed_hosts=["music.example.org"]))
    # The secret key was checked but signed nothing (issue 18 §11): it is gone.
    assert "secret_key" not in Settings.model_fields
    check_settings(Settings(environment="development"))


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\song.mp3", "song.mp3"),
        ("evil\x00name.wav", "evilname.wav"),
        ("", "upload"),
        ("..", "upload"),
        ("a" * 300 + ".flac", "a" * 115 + ".flac"),
    ],
)
def test_display_filename_is_never_a_path(raw: str, shown: str) -> None:
    assert display_filename(raw) == shown
