"""The song page in Debian's Chromium (issue 19): the listener sees the song's spectrogram,
clicks where the music should start, picks a length, and gets a request with that start —
a piece of that length, made by a real generation worker from there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from encore.web.liveserver import LiveServer

from .browser_helpers import BROWSER_MARKS, new_page, sign_in, upload_as_operator, wait_until
from .web_helpers import song_bytes

pytestmark = BROWSER_MARKS

SONG_SECONDS = 10.0


@pytest.fixture(scope="module")
def server(start_live_server: Any) -> Iterator[LiveServer]:
    with start_live_server("pieces", ENCORE_PIECE_OVERLAP_SECONDS="0.5", ENCORE_BEST_OF_N="2",
                           ENCORE_DISPATCH_REVIEW_SHARE="0") as live:
        yield live


def _upload(live: LiveServer) -> int:
    (song_id,) = upload_as_operator(live, [("ten.wav", song_bytes(8, SONG_SECONDS))])
    return song_id


def test_marking_a_start_on_the_spectrogram_makes_a_piece_from_there(
    browser: Any, server: LiveServer
) -> None:
    song_id = _upload(server)
    page = new_page(browser, server)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, server.operator_email, server.operator_password)
    page.goto(f"/songs/{song_id}")
    wait_until(page, "document.querySelector('.song-spectrogram img').naturalWidth > 0")
    # nothing marked: the automatic start
    assert page.input_value("#piece-start") == ""
    assert "loudest part" in page.text_content("#piece-make")
    # a start past the end is refused with the reason, and nothing is made
    page.fill("#piece-start", "60")
    page.click("#piece-make")
    wait_until(page, "!document.querySelector('#make-piece .form-error').hidden")
    assert "past the end" in page.text_content("#make-piece .form-error")
    # click at 40 % of the picture's width: the start is 40 % into the song
    box = page.locator(".song-spectrogram").bounding_box()
    page.mouse.click(box["x"] + 0.4 * box["width"], box["y"] + box["height"] / 2)
    marked = float(page.input_value("#piece-start"))
    assert marked == pytest.approx(0.4 * SONG_SECONDS, abs=0.15)
    assert page.is_visible(".song-spectrogram .start-mark")
    assert "0:04" in page.text_content("#piece-make")
    page.select_option("#piece-seconds", "6")
    page.click("#piece-make")
    page.wait_for_url(re.compile(r"/music/\d+$"))
    delivery_id = int(page.url.rsplit("/", 1)[1])
    view = page.evaluate(
        f"() => fetch('/api/deliveries/{delivery_id}').then((r) => r.json())")
    assert view["start_seconds"] == pytest.approx(marked)
    assert view["piece_seconds"] == 6 and view["loop"] is False
    # the worker makes the 6-second piece from there
    wait_until(page, f"fetch('/api/deliveries/{delivery_id}').then((r) => r.json())"
               ".then((v) => v.status === 'ready' || v.status === 'failed')", timeout=240)
    view = page.evaluate(
        f"() => fetch('/api/deliveries/{delivery_id}').then((r) => r.json())")
    assert view["status"] == "ready", (view, server.log())
    assert view["clip_seconds"] == pytest.approx(6.0, abs=0.01)
    assert page.js_errors == []
