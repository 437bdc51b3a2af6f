"""End to end in Debian's Chromium (Playwright) against a real ``encore serve`` with workers.

The server runs tiny seeded models, 2-second clips and a 1-second minimum listen, so the
whole path — sign up by invitation, upload, make music, play, rate, see it in the report —
takes seconds.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from encore.web.liveserver import LiveServer

from .browser_helpers import (
    BROWSER_MARKS,
    new_page,
    operator_client,
    sign_in,
    wait_analysed,
    wait_until,
)
from .web_helpers import song_bytes

MIN_LISTEN = 1.0

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(start_live_server: Any) -> Iterator[LiveServer]:
    # API requests without a length get one canvas; the page asks for its shortest length, 6 s
    # (pieces: test_web_browser_pieces.py)
    with start_live_server("live", ENCORE_DEFAULT_PIECE_SECONDS="2.0",
                           ENCORE_MIN_LISTEN_SECONDS=str(MIN_LISTEN)) as live:
        warm = threading.Thread(target=warm_up_worker, args=(live,), daemon=True)
        warm.start()  # runs while Chromium starts and the first pages are driven
        yield live
        warm.join(timeout=5)


def warm_up_worker(live: LiveServer) -> None:
    """Have the generation worker load its code and models once (the operator uploads a
    song and asks for music), so the browser flow does not wait for that first load."""
    with operator_client(live) as http:
        r = http.post("/api/songs", files={"file": ("warm.wav", song_bytes(40), "audio/wav")})
        song_id = r.json()["song"]["id"]
        wait_analysed(http, song_id)
        http.post("/api/music", json={"song_ids": [song_id]})


@pytest.fixture(scope="module")
def operator_page(browser: Any, server: LiveServer) -> Any:
    page = new_page(browser, server)
    sign_in(page, server.operator_email, server.operator_password)
    return page


def invitation_code(operator_page: Any) -> str:
    page = operator_page
    page.goto("/operator/users")
    page.click("text=Create an invitation code")
    box = page.locator(".code-box")
    box.wait_for()
    return str(box.inner_text()).strip()


def sign_up(browser: Any, server: LiveServer, operator_page: Any, name: str) -> Any:
    code = invitation_code(operator_page)
    page = new_page(browser, server)
    page.goto(f"/signup?code={code}")
    page.fill("#display_name", name)
    page.fill("#email", f"{name.lower()}@example.org")
    page.fill("#password", "a-long-password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))
    return page


@pytest.fixture(scope="module")
def ada(browser: Any, server: LiveServer, operator_page: Any) -> Any:
    return sign_up(browser, server, operator_page, "Ada")


def test_the_whole_loop_in_the_browser(ada: Any, operator_page: Any) -> None:
    page = ada
    # --- upload: one song and one file that is not audio, each with its own row
    page.set_input_files(
        "#files",
        files=[
            {"name": "Sunrise.wav", "mimeType": "audio/wav", "buffer": song_bytes(41, seconds=3.0)},
            {"name": "notes.mp3", "mimeType": "audio/mpeg", "buffer": b"these are my notes\n" * 40},
        ],
    )
    done = page.locator(".upload-item[data-state=done]")
    failed = page.locator(".upload-item[data-state=error]")
    done.wait_for()
    failed.wait_for()
    assert "Sunrise.wav" in done.locator(".upload-name").inner_text()
    assert "Sunrise" in done.locator(".upload-status").inner_text()
    assert "notes.mp3" in failed.locator(".upload-name").inner_text()
    error_text = failed.locator(".upload-status").inner_text()
    assert error_text and "%" not in error_text  # the server's reason, not the progress

    # --- make music: one song → a variation, with the closeness slider
    page.goto("/songs")
    page.check("input[name=song]")
    assert page.locator(".closeness").is_visible()
    page.fill("#closeness", "0.8")
    page.select_option("#make-seconds", "6")  # the shortest length offered
    page.click("button.make")
    page.wait_for_url(re.compile(r"/music/\d+$"))
    delivery_id = int(page.url.rsplit("/", 1)[1])

    # --- the player appears when the worker is done; the spectrogram shows
    page.locator(".player").wait_for(state="visible", timeout=240_000)
    wait_until(page, "document.querySelector('.spectrogram img').naturalWidth > 0")
    stars = page.locator(".rating .stars")
    assert stars.get_attribute("aria-disabled") == "true"
    assert page.locator("button.rate").is_disabled()

    # --- play: the playhead moves; the rating stays locked until the minimum listen
    page.click("button.play")
    wait_until(page, "document.querySelector('.player audio').currentTime > 0.2")
    assert stars.get_attribute("aria-disabled") == "true"
    left = page.evaluate("document.querySelector('.playhead').style.left")
    assert left.endswith("%") and float(left[:-1]) > 0
    page.locator('.rating .stars[aria-disabled="false"]').wait_for(timeout=30_000)
    played = page.evaluate("document.querySelector('.player audio').currentTime")
    assert played >= MIN_LISTEN - 0.05  # unlocked only once enough was really played

    # --- rate 4.5 stars with the keyboard
    stars.focus()
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    assert stars.get_attribute("aria-valuenow") == "4.5"
    page.click("button.rate")
    page.locator(".rating-hint", has_text="You rated this 4.5").wait_for()

    history = page.request.get("/api/history").json()["items"]
    assert history[0]["delivery_id"] == delivery_id and history[0]["rating"] == 4.5
    assert page.js_errors == []

    # --- the operator sees it: the CSV has the rating with its listened fraction; the report
    rows = list(csv.DictReader(io.StringIO(operator_page.request.get("/api/operator/ratings.csv").text())))
    mine = [r for r in rows if int(r["delivery_id"]) == delivery_id]
    assert len(mine) == 1 and float(mine[0]["stars"]) == 4.5
    clip_seconds = page.request.get(f"/api/deliveries/{delivery_id}").json()["clip_seconds"]
    assert 5.5 < clip_seconds < 6.5  # the length asked for on /songs
    assert float(mine[0]["listened_fraction"]) >= (MIN_LISTEN - 0.05) / clip_seconds
    operator_page.goto("/operator/report")
    assert "4.50" in operator_page.locator("table.table1").first.inner_text()
    wait_until(operator_page, "[...document.querySelectorAll('.plots img')].every(i => i.naturalWidth > 0)")
    assert operator_page.js_errors == []


def test_a_listener_cannot_open_another_listeners_song(
    browser: Any, server: LiveServer, operator_page: Any, ada: Any
) -> None:
    songs = ada.request.get("/api/songs").json()["songs"]
    if not songs:  # this test may run alone
        ada.request.post(
            "/api/songs",
            multipart={"file": {"name": "a.wav", "mimeType": "audio/wav", "buffer": song_bytes(42)}},
            headers={"x-csrf-token": ada.locator("meta[name=csrf-token]").get_attribute("content")},
        )
        songs = ada.request.get("/api/songs").json()["songs"]
    song_id = songs[0]["id"]
    bob = sign_up(browser, server, operator_page, "Bob")
    response = bob.goto(f"/songs/{song_id}")
    assert response.status == 403
    assert "belongs to another listener" in bob.locator("#error-message").inner_text()
    audio = bob.request.get(f"/api/songs/{song_id}/audio")
    assert audio.status == 403


def test_a_cross_site_post_is_refused(browser: Any, server: LiveServer, operator_page: Any) -> None:
    page = sign_up(browser, server, operator_page, "Carol")
    evil = (
        "<!doctype html><form id=f method=post action='" + server.url + "/api/auth/signout'>"
        "<input name=x value=1></form><script>document.getElementById('f').submit()</script>"
    )
    page.route("http://evil.test/**", lambda route: route.fulfill(body=evil, content_type="text/html"))
    page.goto("http://evil.test/")
    page.wait_for_url(server.url + "/api/auth/signout")
    assert "cross-site request refused" in page.content()
    page.goto("/songs")  # still signed in: the forged sign-out did nothing
    assert page.url.endswith("/songs")
    assert page.request.get("/api/me").json()["user"]["display_name"] == "Carol"


def test_played_ranges_exclude_skipped_parts(browser: Any, server: LiveServer) -> None:
    page = new_page(browser, server)
    page.goto("/signin")
    result = page.evaluate(
        """async () => {
            const { PlayedRanges, merge } = await import('/static/listening.js');
            const p = new PlayedRanges();
            p.start(0); p.advance(0.5); p.advance(1.0);
            p.close();                   // seeking
            p.start(3); p.advance(3.5);  // resumed after the seek
            p.advance(0.2);              // jumped back without a seek event (loop)
            p.advance(0.4);
            return { ranges: p.ranges(), total: p.total(), merged: merge([[2, 3], [0, 1], [0.5, 2.5]]) };
        }"""
    )
    assert result["ranges"] == [[0, 1], [3, 3.5]]
    assert result["total"] == pytest.approx(1.5)
    assert result["merged"] == [[0, 3]]


def test_password_change_export_and_deletion_in_the_browser(
    browser: Any, server: LiveServer, operator_page: Any
) -> None:
    """Issue 18: change the password (other sessions end), download the data, delete a song
    and the account, all through the pages; and the open-redirect probe against forms.js."""
    import zipfile

    page = sign_up(browser, server, operator_page, "Bea")
    page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm questions
    assert "may be played to other listeners" in page.locator("#sharing-notice").inner_text()
    page.set_input_files(
        "#files", files=[{"name": "Bea song.wav", "mimeType": "audio/wav", "buffer": song_bytes(43)}]
    )
    page.locator(".upload-item[data-state=done]").wait_for()
    song_id = page.request.get("/api/songs").json()["songs"][0]["id"]

    # A second browser signed in as Bea: the password change must end its session.
    elsewhere = new_page(browser, server)
    sign_in(elsewhere, "bea@example.org", "a-long-password")

    page.goto("/account")
    page.fill("#current_password", "a-long-password")
    page.fill("#new_password", "a-newer-long-password")
    page.click("#password-form button[type=submit]")
    page.locator("#password-form .form-result", has_text="Your password is changed").wait_for()
    elsewhere.goto("/songs")
    elsewhere.wait_for_url(re.compile(r"/signin\?next="))
    page.goto("/songs")
    assert page.url.endswith("/songs")  # this session stays

    # The data export downloads as a zip with the song as uploaded.
    page.goto("/account")
    with page.expect_download() as download_info:
        page.click("#export-link")
    archive = zipfile.ZipFile(download_info.value.path())
    assert {"account.json", "songs.json", "deliveries.json", "ratings.csv"} <= set(archive.namelist())
    assert any(n.startswith("songs/") and n.endswith(".wav") for n in archive.namelist())

    # Delete the song from its page.
    page.goto(f"/songs/{song_id}")
    page.click("#delete-song-form button[type=submit]")
    page.wait_for_url(re.compile(r"/songs$"))
    assert page.request.get("/api/songs").json()["songs"] == []

    # Delete the account: signed out, and the password no longer opens anything.
    page.goto("/account")
    page.fill("#delete_password", "a-newer-long-password")
    page.click("#delete-account-form button[type=submit]")
    page.wait_for_url(re.compile(r"/signin$"))
    refused = page.request.post(
        "/api/auth/signin", data={"email": "bea@example.org", "password": "a-newer-long-password"}
    )
    assert refused.status == 403
    assert page.js_errors == [] and elsewhere.js_errors == []

    # The open-redirect probe, in the browser's own URL parser (forms.js).
    probe = new_page(browser, server)
    probe.goto("/signin?next=/%09/evil.com")
    probe.fill("#email", server.operator_email)
    probe.fill("#password", server.operator_password)
    probe.click("button[type=submit]")
    probe.wait_for_url(re.compile(r"/(songs|operator/report)$"))
    assert probe.url.startswith(server.url)
    assert probe.evaluate(
        "async () => { const m = await import('/static/forms.js');"
        " return ['/\\t/evil.com', '//evil.com', '/\\\\evil.com', 'https://evil.com', '/songs?x=1']"
        ".map((n) => m.safeNext(n)); }"
    ) == [None, None, None, None, "/songs?x=1"]
