"""Issue 18 §3, §5, §7, §8: redirects after sign-in, forms without JavaScript, invitations
used once, password changes, sessions ended, resets — each probe of the issue as a test."""

from __future__ import annotations

import re
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.services import accounts
from encore.web.security import safe_next

from .web_helpers import PASSWORD, signed_in

REDIRECT_PROBES = [
    "/\t/evil.com", "/\n/evil.com", "/\r/evil.com", "//evil.com", "/\\evil.com", "/\\/evil.com",
    "https://evil.com", "/ /evil.com", "\t//evil.com", "javascript:alert(1)", "", None,
]


@pytest.mark.parametrize("target", REDIRECT_PROBES)
def test_safe_next_refuses_every_other_origin(target: str | None) -> None:
    assert safe_next(target) == "/songs"


def test_safe_next_keeps_paths_of_this_site() -> None:
    for target in ("/songs", "/music/3?x=1#top", "/history", "/%2F/evil.com"):
        assert safe_next(target) == target


def test_signin_page_never_carries_a_foreign_next(anon: TestClient) -> None:
    page = anon.get("/signin", params={"next": "/\t/evil.com"})  # the issue's /%09/evil.com
    assert page.status_code == 200
    assert 'name="next" value="/songs"' in page.text and "evil.com" not in page.text


def test_signin_and_signup_forms_post_to_the_server(anon: TestClient) -> None:
    for path in ("/signin", "/signup"):
        html = anon.get(path).text
        forms = re.findall(r"<form [^>]*>", html)
        assert forms and all('method="post"' in f and f'action="{path}"' in f for f in forms), forms


def test_signin_without_javascript_posts_the_form_and_never_leaks_the_password(
    anon: TestClient, app: FastAPI
) -> None:
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    # What a browser without JavaScript sends for the form.
    form = {"next": "/\t/evil.com", "email": "ada@example.org", "password": PASSWORD}
    r = anon.post("/signin", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/songs"
    assert "encore_session=" in r.headers["set-cookie"]
    assert anon.get("/api/me").json()["user"]["email"] == "ada@example.org"
    # The password is never echoed back, not even on failure.
    fresh = TestClient(app)
    bad = fresh.post("/signin", data={**form, "password": "wrong-password"})
    assert bad.status_code == 403 and "wrong e-mail address or password" in bad.text
    assert "wrong-password" not in bad.text


def test_signin_form_keeps_a_local_next(anon: TestClient, app: FastAPI) -> None:
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    form = {"next": "/history", "email": "ada@example.org", "password": PASSWORD}
    r = anon.post("/signin", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/history"


def test_signup_form_without_javascript(anon: TestClient, operator: TestClient) -> None:
    code = operator.post("/api/operator/invitations").json()["code"]
    form = {"invitation_code": code, "display_name": "New", "email": "new@example.org",
            "password": PASSWORD}
    r = anon.post("/signup", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/upload"
    assert anon.get("/api/me").json()["user"]["email"] == "new@example.org"
    again = TestClient(anon.app).post("/signup", data={**form, "email": "other@example.org"})
    assert again.status_code == 422 and "unknown or already used" in again.text


def test_signout_without_javascript(listener: TestClient) -> None:
    page = listener.get("/songs").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    plain = TestClient(listener.app, cookies=listener.cookies)
    r = plain.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert listener.get("/api/me").json()["user"] is None


def test_one_invitation_opens_one_account_when_two_sign_ups_race_on_postgresql(
    tmp_path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe: two sign-ups with one code at the same moment, on PostgreSQL."""
    import threading

    from encore.services.context import ServiceContext
    from encore.store import User, UserRole

    from ..postgres import migrated_postgres_database
    from .conftest import web_settings

    with migrated_postgres_database() as url:
        settings = web_settings(tmp_path / "var", tiny_models, database_url=url)
        ctx = ServiceContext.from_settings(settings, queues=False)
        op = accounts.create_user(ctx, email="op@example.org", password=PASSWORD,
                                  role=UserRole.OPERATOR)
        code = accounts.create_invitation(ctx, operator=op)
        # Both sign-ups hash their password at once (a barrier inside the hash): without a
        # lock both have read the invitation unused by then.
        barrier = threading.Barrier(2)
        real = accounts._hasher()

        class Racing:
            def hash(self, password: str) -> str:
                try:
                    barrier.wait(timeout=2)
                except threading.BrokenBarrierError:
                    pass  # the other sign-up waits on the invitation's row lock
                return real.hash(password)

            def __getattr__(self, name: str):
                return getattr(real, name)

        monkeypatch.setattr(accounts, "_hasher", lambda: Racing())
        results: list[object] = []

        def sign_up(i: int) -> None:
            try:
                results.append(accounts.sign_up(ctx, email=f"racer{i}@example.org",
                                                password=PASSWORD, invitation_code=code))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        ctx.engine.dispose()
        created = [r for r in results if isinstance(r, User)]
        refused = [r for r in results if not isinstance(r, User)]
        assert len(created) == 1, results
        assert len(refused) == 1 and "unknown or already used" in str(refused[0])


# --- §8: sessions end with deactivation and password changes; resets -----------------------


def _user(app: FastAPI, name: str) -> tuple[str, TestClient]:
    email = f"{name}@example.org"
    accounts.create_user(app.state.ctx, email=email, password=PASSWORD)
    return email, signed_in(app, email)


def test_reactivating_an_account_does_not_bring_its_sessions_back(
    app: FastAPI, operator: TestClient
) -> None:
    email, ada = _user(app, "ada")
    ada_id = ada.get("/api/me").json()["user"]["id"]
    assert operator.post(f"/api/operator/users/{ada_id}/active", json={"active": False}).status_code == 200
    assert ada.get("/api/me").json()["user"] is None
    assert operator.post(f"/api/operator/users/{ada_id}/active", json={"active": True}).status_code == 200
    assert ada.get("/api/me").json()["user"] is None  # the 14-day session stays ended
    assert signed_in(app, email).get("/api/me").json()["user"]["email"] == email


def test_changing_the_password_ends_the_other_sessions(app: FastAPI) -> None:
    email, ada = _user(app, "ada")
    other = signed_in(app, email)
    wrong = ada.post("/api/account/password",
                     json={"current_password": "not-it-at-all", "new_password": "another-password"})
    assert wrong.status_code == 403 and "current password is wrong" in wrong.json()["error"]["message"]
    short = ada.post("/api/account/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.json()["error"]["message"]
    ok = ada.post("/api/account/password",
                  json={"current_password": PASSWORD, "new_password": "another-password"})
    assert ok.status_code == 200 and ok.json()["sessions_ended"] == 1
    assert ada.get("/api/me").json()["user"]["email"] == email  # this session stays
    assert other.get("/api/me").json()["user"] is None
    old = TestClient(app).post("/api/auth/signin", json={"email": email, "password": PASSWORD})
    assert old.status_code == 403
    time.sleep(1.1)  # one failed sign-in from this address: the next one waits a second
    signed_in(app, email, "another-password")


def test_sign_out_everywhere(app: FastAPI) -> None:
    email, ada = _user(app, "ada")
    other = signed_in(app, email)
    r = ada.post("/api/account/signout-everywhere")
    assert r.status_code == 200 and r.json()["sessions_ended"] == 2
    assert ada.get("/api/me").json()["user"] is None and other.get("/api/me").json()["user"] is None


def test_account_page_has_the_password_form(listener: TestClient) -> None:
    html = listener.get("/account").text
    assert 'action="/api/account/password"' in html and "Sign out everywhere" in html


def test_an_operator_reset_link_works_once_and_ends_the_sessions(
    app: FastAPI, operator: TestClient
) -> None:
    email, ada = _user(app, "ada")
    ada_id = ada.get("/api/me").json()["user"]["id"]
    assert ada.post(f"/api/operator/users/{ada_id}/password-reset").status_code == 403
    link = operator.post(f"/api/operator/users/{ada_id}/password-reset")
    assert link.status_code == 201
    url = link.json()["url"]
    token = url.rsplit("/", 1)[1]
    anon = TestClient(app)
    page = anon.get(f"/reset/{token}")
    assert page.status_code == 200 and email in page.text
    r = anon.post("/api/auth/reset", json={"token": token, "new_password": "a-fresh-password"})
    assert r.status_code == 200, r.text
    assert ada.get("/api/me").json()["user"] is None
    signed_in(app, email, "a-fresh-password")
    again = anon.post("/api/auth/reset", json={"token": token, "new_password": "yet-another-one"})
    assert again.status_code == 422 and "unknown, used or expired" in again.json()["error"]["message"]
    assert anon.get(f"/reset/{token}").status_code == 422


def test_reset_form_without_javascript(app: FastAPI, operator: TestClient) -> None:
    email, ada = _user(app, "ada")
    ada_id = ada.get("/api/me").json()["user"]["id"]
    token = operator.post(f"/api/operator/users/{ada_id}/password-reset").json()["url"].rsplit("/", 1)[1]
    anon = TestClient(app)
    r = anon.post(f"/reset/{token}", data={"new_password": "a-fresh-password"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    signed_in(app, email, "a-fresh-password")


def test_users_command_sets_passwords_and_deactivates(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from encore import cli
    from encore.commands import users

    monkeypatch.setattr(users, "service_context", lambda **_: app.state.ctx)
    email, ada = _user(app, "ada")
    assert cli.main(["users", "set-password", email, "--password", "operator-chosen"]) == 0
    assert ada.get("/api/me").json()["user"] is None
    ada = signed_in(app, email, "operator-chosen")
    assert cli.main(["users", "deactivate", email]) == 0
    assert "deactivated" in capsys.readouterr().out
    assert ada.get("/api/me").json()["user"] is None
    refused = TestClient(app).post("/api/auth/signin", json={"email": email, "password": "operator-chosen"})
    assert refused.status_code == 403
    assert cli.main(["users", "reactivate", email]) == 0
    assert ada.get("/api/me").json()["user"] is None
    time.sleep(1.1)  # one failed sign-in from this address: the next one waits a second
    signed_in(app, email, "operator-chosen")
    assert cli.main(["users", "set-password", "nobody@example.org", "--password", "whatever-long"]) == 2
