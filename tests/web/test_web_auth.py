"""Sign-up, sign-in, sign-out, the session cookie, CSRF and rate limits on the real app."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import PASSWORD, signed_in


def test_signin_sets_an_httponly_lax_session_cookie(anon: TestClient, app: FastAPI) -> None:
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    response = anon.post("/api/auth/signin", json={"email": "Ada@Example.org ", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["email"] == "ada@example.org" and body["csrf_token"]
    cookie = response.headers["set-cookie"]
    assert "encore_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # test environment: plain http
    assert anon.get("/api/me").json()["user"]["email"] == "ada@example.org"


def test_wrong_password_is_refused_without_saying_which_part(anon: TestClient, app: FastAPI) -> None:
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    for email, password in (("ada@example.org", "wrong-password"), ("nobody@example.org", PASSWORD)):
        response = anon.post("/api/auth/signin", json={"email": email, "password": password})
        assert response.status_code == 403
        assert response.json()["error"]["message"] == "wrong e-mail address or password"
    assert anon.get("/api/me").json() == {"user": None, "csrf_token": None}


def test_signin_is_slowed_per_account_and_limited_per_address(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(limit_signin_ip="5/60", signin_max_delay_seconds=0)  # no slow-down here
    client = TestClient(app)
    for _ in range(5):  # one address, any accounts: the address limit (5) is hard
        assert client.post("/api/auth/signin", json={"email": "b@example.org", "password": "x"}).status_code == 403
    by_ip = client.post("/api/auth/signin", json={"email": "c@example.org", "password": "x"})
    assert by_ip.status_code == 429 and "from this address" in by_ip.json()["error"]["message"]


def test_forms_without_javascript_answer_a_rate_limit_with_retry_after(
    make_app: Callable[..., FastAPI],
) -> None:
    """The sign-in and reset forms (no JavaScript) show the page again with the reason, a 429
    and Retry-After, as the JSON API does."""
    app = make_app(limit_signin_ip="2/60", signin_max_delay_seconds=0)
    client = TestClient(app)
    for _ in range(2):
        page = client.post("/signin", data={"email": "b@example.org", "password": "x"})
        assert page.status_code == 403 and "retry-after" not in page.headers
    for path, data in (("/signin", {"email": "b@example.org", "password": "x"}),
                       ("/reset/some-token", {"new_password": "a-fresh-password"})):
        limited = client.post(path, data=data, follow_redirects=False)
        assert limited.status_code == 429, (path, limited.text[:200])
        assert limited.headers["content-type"].startswith("text/html")
        assert "from this address" in limited.text
        assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_signup_needs_a_valid_invitation(anon: TestClient, operator: TestClient) -> None:
    body = {"email": "new@example.org", "password": PASSWORD, "display_name": "New"}
    no_code = anon.post("/api/auth/signup", json=body)
    assert no_code.status_code == 422
    assert no_code.json()["error"]["message"] == "an invitation code is required to sign up"
    bad = anon.post("/api/auth/signup", json={**body, "invitation_code": "not-a-code"})
    assert bad.status_code == 422 and "unknown or already used" in bad.json()["error"]["message"]

    invitation = operator.post("/api/operator/invitations")
    assert invitation.status_code == 201
    code = invitation.json()["code"]
    assert invitation.json()["url"].endswith(f"/signup?code={code}")
    created = anon.post("/api/auth/signup", json={**body, "invitation_code": code})
    assert created.status_code == 201, created.text
    assert created.json()["user"]["role"] == "listener"
    assert anon.get("/api/me").json()["user"]["email"] == "new@example.org"  # signed in

    again = TestClient(anon.app).post(
        "/api/auth/signup", json={**body, "email": "other@example.org", "invitation_code": code}
    )
    assert again.status_code == 422  # one-time code


def test_signup_short_password_and_duplicate(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(open_signup=True)
    client = TestClient(app)
    short = client.post("/api/auth/signup", json={"email": "a@example.org", "password": "short", "display_name": "A"})
    assert short.status_code == 422 and "at least 10 characters" in short.json()["error"]["message"]
    body = {"email": "a@example.org", "password": PASSWORD, "display_name": "A"}
    assert client.post("/api/auth/signup", json=body).status_code == 201
    duplicate = TestClient(app).post("/api/auth/signup", json=body)
    # Issue 18 §11: no 409 "already exists" that tells a stranger the address has an account.
    assert duplicate.status_code == 422
    assert "already exists" not in duplicate.json()["error"]["message"]
    assert "a@example.org" not in duplicate.json()["error"]["message"]


def test_malformed_json_is_422_with_the_field(anon: TestClient) -> None:
    response = anon.post("/api/auth/signin", json={"email": "a@example.org"})
    assert response.status_code == 422
    assert "password" in response.json()["error"]["message"]


def test_signout_ends_the_session(listener: TestClient) -> None:
    assert listener.get("/api/songs").status_code == 200
    response = listener.post("/api/auth/signout")
    assert response.status_code == 200
    assert 'encore_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    assert listener.get("/api/songs").status_code == 401


def test_the_old_cookie_is_dead_after_signout(app: FastAPI, listener: TestClient) -> None:
    token = listener.cookies.get("encore_session")
    listener.post("/api/auth/signout")
    thief = TestClient(app)
    thief.cookies.set("encore_session", token)
    assert thief.get("/api/songs").status_code == 401


def test_api_needs_a_session_and_pages_redirect_to_signin(anon: TestClient) -> None:
    for path in ("/api/songs", "/api/history", "/api/deliveries/1", "/api/operator/report"):
        response = anon.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["message"] == "please sign in first"
    page = anon.get("/history", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=%2Fhistory"


def test_signed_in_posts_need_the_csrf_token(listener: TestClient) -> None:
    token = listener.headers.pop("x-csrf-token")
    refused = listener.post("/api/music", json={"song_ids": [1]})
    assert refused.status_code == 403 and refused.json()["error"]["kind"] == "CsrfRefused"
    listener.headers["x-csrf-token"] = token
    cross = listener.post("/api/music", json={"song_ids": [1]}, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    assert "cross-site request refused" in cross.json()["error"]["message"]
    assert listener.post("/api/music", json={"song_ids": [1]}).status_code == 404  # passes CSRF


def test_deactivated_user_is_signed_out_everywhere(app: FastAPI, operator: TestClient) -> None:
    accounts.create_user(app.state.ctx, email="bob@example.org", password=PASSWORD)
    bob = signed_in(app, "bob@example.org")
    assert bob.get("/api/songs").status_code == 200  # his session is now in the process's cache
    users = operator.get("/api/operator/users").json()["users"]
    bob_id = next(u["id"] for u in users if u["email"] == "bob@example.org")
    response = operator.post(f"/api/operator/users/{bob_id}/active", json={"active": False})
    assert response.status_code == 200 and response.json()["user"]["active"] is False
    assert bob.get("/api/songs").status_code == 401
    again = TestClient(app).post("/api/auth/signin", json={"email": "bob@example.org", "password": PASSWORD})
    assert again.status_code == 403


def test_another_web_process_notices_a_sign_out_within_the_session_cache_time(
    make_app: Callable[..., FastAPI],
) -> None:
    """Two apps on one database stand for two web processes: each caches sessions for
    ``session_cache_seconds``; the process that signs out forgets at once."""
    import time

    first = make_app(session_cache_seconds=0.5)
    second = make_app(session_cache_seconds=0.5)
    second.state.ctx = first.state.ctx  # the same database and blob store
    second.state.session_users.ctx = first.state.ctx
    second.state.csrf_tokens.ctx = first.state.ctx
    accounts.create_user(first.state.ctx, email="bob@example.org", password=PASSWORD)
    here = signed_in(first, "bob@example.org")
    there = TestClient(second, cookies=here.cookies)
    assert there.get("/api/songs").status_code == 200
    assert here.post("/api/auth/signout").status_code == 200
    assert here.get("/api/songs").status_code == 401
    assert there.get("/api/songs").status_code == 200  # still cached over there
    time.sleep(0.6)
    assert there.get("/api/songs").status_code == 401


def test_a_session_lookup_that_races_a_sign_out_is_not_cached() -> None:
    from encore.web.deps import _PerSession

    class Racing(_PerSession[str]):
        def _load(self, session_token: str) -> str | None:
            self.forget(session_token)  # the session ends while its user is being read
            return "bob"

    cache = Racing(ctx=None, ttl=60)  # type: ignore[arg-type]
    assert cache.lookup("token") == "bob"
    assert cache.cached("token") is None  # the next request asks the database again
