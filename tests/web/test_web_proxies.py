"""Issue 18 §9, §11: trusted proxies, sign-in slow-down instead of lockout, HSTS, Host
allow-list."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts

from .web_helpers import PASSWORD


def _signin(client: TestClient, email: str, password: str, ip: str | None = None):
    headers = {"x-forwarded-for": ip} if ip else {}
    return client.post("/api/auth/signin", json={"email": email, "password": password}, headers=headers)


def test_a_stranger_cannot_lock_out_a_known_address(make_app: Callable[..., FastAPI]) -> None:
    """Failures from one address slow down that address for that account only."""
    app = make_app(trusted_proxies=["*"], limit_signin_ip="1000/60")
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    client = TestClient(app)
    assert _signin(client, "ada@example.org", "guess-0000", "203.0.113.9").status_code == 403
    slowed = _signin(client, "ada@example.org", "guess-0001", "203.0.113.9")
    assert slowed.status_code == 429, slowed.text
    assert "1 failed sign-ins for this account from this address" in slowed.json()["error"]["message"]
    assert int(slowed.headers["retry-after"]) >= 1
    # The attacker keeps trying (each refused at once); the owner, elsewhere, signs in.
    codes = [_signin(client, "ada@example.org", f"guess-{i}", "203.0.113.9").status_code
             for i in range(30)]
    assert set(codes) <= {403, 429} and codes.count(403) <= 4  # 1, 2, 4, 8 s apart at best
    owner = TestClient(app)
    assert _signin(owner, "ada@example.org", PASSWORD, "198.51.100.7").status_code == 200


def test_the_slowdown_doubles_and_a_success_resets_it() -> None:
    from encore.web.ratelimit import RateLimited, SigninSlowdown

    now = [0.0]
    slow = SigninSlowdown(300.0, clock=lambda: now[0])
    for expected in (1, 2, 4, 8):
        slow.failed("a", "ip")
        with pytest.raises(RateLimited) as exc:
            slow.check("a", "ip")
        assert exc.value.retry_after == pytest.approx(expected)
        now[0] += expected
        slow.check("a", "ip")
    slow.check("a", "other-ip")
    slow.succeeded("a", "ip")
    slow.failed("a", "ip")
    with pytest.raises(RateLimited) as exc:
        slow.check("a", "ip")
    assert exc.value.retry_after == pytest.approx(1)


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(make_app: Callable[..., FastAPI]) -> None:
    """Default: no proxy header is believed; spoofed X-Forwarded-For shares the peer's bucket."""
    app = make_app(limit_signin_ip="3/60", signin_max_delay_seconds=0)
    client = TestClient(app)
    for i in range(3):
        assert _signin(client, f"u{i}@example.org", "x", f"10.0.0.{i}").status_code == 403
    assert _signin(client, "u9@example.org", "x", "10.0.0.99").status_code == 429
    # Behind a trusted proxy, each client has its own bucket.
    proxied = make_app(limit_signin_ip="3/60", signin_max_delay_seconds=0, trusted_proxies=["*"])
    client = TestClient(proxied)
    for i in range(6):
        assert _signin(client, f"u{i}@example.org", "x", f"10.0.0.{i}").status_code == 403


def test_serve_tells_uvicorn_to_trust_no_proxy_header(
    tmp_path: Path, tiny_models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    env_settings: Callable[..., None],
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default; encore serve turns that off."""
    import uvicorn

    from encore.commands import serve as serve_cmd

    base, sim = tiny_models
    env_settings(ENCORE_DATA_DIR=str(tmp_path / "var"), ENCORE_BASE_MODEL_DIR=str(base),
                 ENCORE_SIMILARITY_MODEL_DIR=str(sim), ENCORE_ENVIRONMENT="test")
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    args = argparse.Namespace(host=None, port=None, web_workers=1, no_workers=True,
                              generate_workers=1)
    assert serve_cmd.serve(args) == 0
    assert calls and calls[0]["proxy_headers"] is False


def test_hsts_in_production_only(make_app: Callable[..., FastAPI]) -> None:
    prod = make_app(environment="production", allowed_hosts=["testserver"])
    r = TestClient(prod, base_url="https://testserver").get("/signin")
    assert r.headers["strict-transport-security"] == "max-age=31536000"
    dev = TestClient(make_app()).get("/signin")
    assert "strict-transport-security" not in dev.headers


def test_hosts_outside_the_allow_list_are_refused(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(allowed_hosts=["encore.example.org", "*.encore.test"])
    ok = TestClient(app, base_url="http://encore.example.org").get("/signin")
    assert ok.status_code == 200
    sub = TestClient(app, base_url="http://a.encore.test:8000").get("/signin")
    assert sub.status_code == 200
    bad = TestClient(app, base_url="http://evil.example.com").get("/api/me")
    assert bad.status_code == 400 and "evil.example.com" in bad.json()["error"]["message"]
