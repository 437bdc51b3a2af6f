from __future__ import annotations

import math

import pytest

from encore.errors import InvalidInput
from encore.feedback import minimum_listen_seconds, rating_allowed, summarize_listen


def _listen(ranges, clip=10.0, wall=100.0, slack=1.0):
    return summarize_listen(ranges, clip_seconds=clip, wall_seconds=wall, slack_seconds=slack)


def test_overlapping_ranges_count_once() -> None:
    s = _listen([(0, 4), (2, 6), (3, 5)])
    assert (s.listened_seconds, s.fraction) == (6.0, 0.6)


def test_seeking_forward_and_back_counts_the_union() -> None:
    # played 0-2, seeked to 5, played to 7, seeked back to 6, played to 9, replayed 0-1
    s = _listen([(0, 2), (5, 7), (6, 9), (0, 1)])
    assert s.listened_seconds == 6.0
    assert (s.dropped_ranges, s.clamped_ranges) == (0, 0)


def test_ranges_outside_the_clip_are_clamped_and_counted() -> None:
    s = _listen([(-3, 2), (8, 15), (12, 20)])
    assert s.listened_seconds == 4.0
    assert s.clamped_ranges == 3


def test_replays_never_exceed_the_clip_length() -> None:
    assert _listen([(0, 10)] * 5).fraction == 1.0


def test_wall_clock_clamp() -> None:
    s = summarize_listen([(0, 30)], clip_seconds=30, wall_seconds=5, slack_seconds=1)
    assert (s.listened_seconds, s.union_seconds, s.wall_clamped) == (6.0, 30.0, True)
    assert s.fraction == pytest.approx(0.2)
    ok = summarize_listen([(0, 5.5)], clip_seconds=30, wall_seconds=5, slack_seconds=1)
    assert (ok.listened_seconds, ok.wall_clamped) == (5.5, False)


def test_reversed_and_nan_ranges_are_dropped_with_a_count() -> None:
    s = _listen([(4, 2), (math.nan, 3), (1, math.inf), (0, 3)])
    assert (s.listened_seconds, s.dropped_ranges) == (3.0, 3)


def test_empty_report_is_no_listening() -> None:
    s = _listen([])
    assert (s.listened_seconds, s.fraction, s.dropped_ranges) == (0.0, 0.0, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_seconds": 0.0, "wall_seconds": 1.0}, "clip_seconds=0.0"),
        ({"clip_seconds": math.nan, "wall_seconds": 1.0}, "clip_seconds=nan"),
        ({"clip_seconds": 5.0, "wall_seconds": -2.0}, "wall_seconds=-2.0"),
    ],
)
def test_bad_server_values_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        summarize_listen([(0, 1)], **kwargs)


def test_a_range_that_is_not_a_pair_raises() -> None:
    with pytest.raises(InvalidInput, match=r"played range \(1, 2, 3\)"):
        _listen([(1, 2, 3)])


@pytest.mark.parametrize(
    ("listened", "clip", "allowed"),
    [
        (2.95, 5.9, True),  # half of a 5.9 s clip
        (2.9, 5.9, False),
        (5.0, 60.0, True),  # 5 s of a long clip
        (4.99, 60.0, False),
        (4.0, 8.0, True),
        (3.99, 8.0, False),
    ],
)
def test_rating_allowed_after_min_of_5s_or_half_the_clip(listened: float, clip: float,
                                                         allowed: bool) -> None:
    assert rating_allowed(listened, clip) is allowed


def test_minimum_listen_follows_the_settings() -> None:
    assert minimum_listen_seconds(60.0, min_seconds=10.0, min_fraction=0.1) == 6.0
    assert rating_allowed(6.0, 60.0, min_seconds=10.0, min_fraction=0.1)
    with pytest.raises(InvalidInput, match="listened_seconds=-1"):
        rating_allowed(-1, 10.0)


def test_summary_keeps_the_merged_played_ranges_for_the_next_report() -> None:
    first = summarize_listen([(0, 2), (1, 3), (8, 12), (5, float("nan"))], clip_seconds=10,
                             wall_seconds=None)
    assert first.played == ((0.0, 3.0), (8.0, 10.0))
    # Merging the kept ranges with a later report gives the union of everything reported.
    later = summarize_listen([*first.played, (2.5, 6)], clip_seconds=10, wall_seconds=None)
    assert later.played == ((0.0, 6.0), (8.0, 10.0))
    assert later.listened_seconds == pytest.approx(8.0)
