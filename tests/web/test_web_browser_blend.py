"""The blend form in Debian's Chromium (issue 19): choosing several songs shows how close to
stay, each song's share and the length; the request carries them, a blend whose shares are
all zero is refused with the reason, nothing made, and the blend is as long as asked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from encore.web.liveserver import LiveServer

from .browser_helpers import BROWSER_MARKS, new_page, sign_in, upload_as_operator, wait_until
from .web_helpers import song_bytes

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(start_live_server: Any) -> Iterator[LiveServer]:
    with start_live_server("blend", ENCORE_DISPATCH_REVIEW_SHARE="0") as live:
        yield live


def _upload(live: LiveServer, seeds: tuple[int, ...]) -> list[int]:
    return upload_as_operator(live, [(f"s{seed}.wav", song_bytes(seed, 4.0)) for seed in seeds])


def _share(page: Any, song_id: int) -> Any:
    return page.locator(f'li[data-song-id="{song_id}"] .blend-weight')


def test_the_blend_form_sends_each_song_s_share(browser: Any, server: LiveServer) -> None:
    a, b = _upload(server, (31, 32))
    page = new_page(browser, server)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the form must fit
    sign_in(page, server.operator_email, server.operator_password)
    page.goto("/songs")
    page.check(f'li[data-song-id="{a}"] input[name="song"]')
    # one song: a variation, no shares
    assert page.is_visible(".closeness") and not _share(page, a).is_visible()
    assert "my song" in page.text_content(".closeness label")
    page.check(f'li[data-song-id="{b}"] input[name="song"]')
    # two: a blend, how close to both, and each one's share (equal at first)
    assert _share(page, a).is_visible() and _share(page, b).is_visible()
    assert "my songs" in page.text_content(".closeness label")
    assert page.text_content("button.make") == "Blend 2 songs"
    assert _share(page, a).locator("output").text_content() == "50 %"
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right"
        " > window.innerWidth + 0.5).map((e) => e.tagName + '.' + e.className + ' '"
        " + Math.round(e.getBoundingClientRect().right))")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    # both shares at zero: refused with the reason, nothing made
    for song in (a, b):
        _share(page, song).locator("input").fill("0")
    assert _share(page, a).locator("output").text_content() == "–"
    page.click("button.make")
    wait_until(page, "!document.querySelector('.make-bar .form-error').hidden")
    assert "above 0" in page.text_content(".make-bar .form-error")
    assert page.url.endswith("/songs")
    # 0.8 and 0.2: 80 % and 20 %, sent with the closeness
    _share(page, a).locator("input").fill("0.8")
    _share(page, b).locator("input").fill("0.2")
    assert _share(page, a).locator("output").text_content() == "80 %"
    assert _share(page, b).locator("output").text_content() == "20 %"
    page.fill("#closeness", "0.6")
    assert page.is_visible("#make-seconds") and page.is_visible("#make-loop")
    page.select_option("#make-seconds", "6")  # three 2-s windows
    with page.expect_request(lambda r: r.url.endswith("/api/music") and r.method == "POST") as sent:
        page.click("button.make")
    body = sent.value.post_data_json
    # in the page's order (newest first), each song with its own share
    assert sorted(body["song_ids"]) == [a, b]
    assert dict(zip(body["song_ids"], body["weights"], strict=True)) == {a: 0.8, b: 0.2}
    assert body["closeness"] == pytest.approx(0.6)
    assert body["seconds"] == 6 and body["loop"] is False
    page.wait_for_url(re.compile(r"/music/\d+$"))
    delivery_id = int(page.url.rsplit("/", 1)[1])
    wait_until(page, f"fetch('/api/deliveries/{delivery_id}').then((r) => r.json())"
               ".then((v) => v.status === 'ready' || v.status === 'failed')", timeout=240)
    view = page.evaluate(f"() => fetch('/api/deliveries/{delivery_id}').then((r) => r.json())")
    assert view["status"] == "ready", (view, server.log())
    assert view["input_song_ids"] == body["song_ids"]
    assert view["clip_seconds"] == pytest.approx(6.0, abs=0.05)
    assert page.js_errors == []
