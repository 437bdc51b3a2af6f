"""Durations and sizes as the server shows them (issue 19): one rule, whole seconds rounded
down as ``m:ss`` like the browser's audio element; sizes in kB/MB/GB; limits that never read
the same as the value they refuse."""

from __future__ import annotations

import pytest

from encore.units import apart, format_duration, format_size, human_duration


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0, "0:00"), (0.999, "0:00"), (5.94, "0:05"), (5.999, "0:05"), (6.0, "0:06"),
     (59.99, "0:59"), (60.0, "1:00"), (78.9, "1:18"), (79.0, "1:19"), (900.4, "15:00"),
     (3599.99, "59:59"), (3600.0, "60:00"), (None, "—"), (-1.0, "—"), (float("nan"), "—")],
)
def test_durations_are_whole_seconds_rounded_down(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_decimals_are_rounded_down_too() -> None:
    assert format_duration(65.37, decimals=1) == "1:05.3"
    assert format_duration(0.3, decimals=1) == "0:00.3"  # 0.3 · 10 is 2.9999… in floats
    assert format_duration(900.0, decimals=2) == "15:00.00"


@pytest.mark.parametrize(
    "seconds, text",
    [(0.2, "0.2 s"), (0.29, "0.2 s"), (3.0, "3.0 s"), (59.96, "59.9 s"), (60.0, "1:00"),
     (900.0, "15:00"), (901.7, "15:01")],
)
def test_durations_in_messages(seconds, text) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    "n, text",
    [(0, "0 bytes"), (1000, "1000 bytes"), (1024, "1.0 kB"), (400_000, "390.6 kB"),
     (12 * 1024**2, "12.0 MB"), (100 * 1024**2, "100.0 MB"), (100 * 1024**2 + 90_000, "100.0 MB"),
     (3 * 1024**3 + 1, "3.0 GB")],
)
def test_sizes(n, text) -> None:
    assert format_size(n) == text


def test_a_value_over_its_limit_never_reads_as_equal() -> None:
    assert apart(format_size, 100 * 1024**2 + 90_000, 100 * 1024**2) == ("100.08 MB", "100.00 MB")
    assert apart(format_size, 13 * 1024**2, 12 * 1024**2) == ("13.0 MB", "12.0 MB")
    assert apart(human_duration, 900.4, 900.0) == ("15:00.4", "15:00.0")
    assert apart(human_duration, 960.0, 900.0) == ("16:00", "15:00")
    assert apart(human_duration, 0.2, 3.0) == ("0.2 s", "3.0 s")
    assert apart(human_duration, 3.04, 3.0) == ("3.04 s", "3.00 s")
    assert apart(human_duration, 2.999, 3.0) == ("2.9 s", "3.0 s")  # under reads under


def test_the_pages_duration_filter_is_this_rule() -> None:
    from encore.web.templating import make_templates

    env = make_templates().env
    assert env.from_string("{{ 5.94|duration }} {{ 78.9|duration }}").render() == "0:05 1:18"
