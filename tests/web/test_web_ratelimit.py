from __future__ import annotations

import pytest

from encore.web.ratelimit import Limit, RateLimited, RateLimits, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_accepts_up_to_count_then_refuses_until_the_window_slides() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)
    limit = Limit(3, 10.0)
    for _ in range(3):
        assert limiter.hit("a", limit) is None
        clock.now += 1.0  # hits at t0, t0 + 1, t0 + 2
    clock.now += 2.0  # t0 + 5
    assert limiter.hit("a", limit) == pytest.approx(5.0)  # the first leaves at t0 + 10
    clock.now += 5.01
    assert limiter.hit("a", limit) is None  # exactly one slot freed
    assert limiter.hit("a", limit) is not None


def test_refused_hits_are_not_counted_and_keys_are_independent() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)
    limit = Limit(1, 5.0)
    assert limiter.hit("a", limit) is None
    for _ in range(10):
        assert limiter.hit("a", limit) is not None
    assert limiter.hit("b", limit) is None
    clock.now += 5.01
    assert limiter.hit("a", limit) is None


def test_rate_limits_check_account_and_address_separately() -> None:
    limits = RateLimits(
        {"rating_account": Limit(2, 60), "rating_ip": Limit(3, 60)},
        SlidingWindowLimiter(FakeClock()),
    )
    limits.check("rating", account="u1", ip="1.2.3.4")
    limits.check("rating", account="u1", ip="1.2.3.4")
    with pytest.raises(RateLimited, match="rating requests from this account") as exc:
        limits.check("rating", account="u1", ip="1.2.3.4")
    assert exc.value.retry_after > 0
    limits.check("rating", account="u2", ip="1.2.3.4")  # third hit of this address
    with pytest.raises(RateLimited, match="from this address"):
        limits.check("rating", account="u3", ip="1.2.3.4")
    limits.check("upload", account="u1", ip="1.2.3.4")  # no limit configured for uploads


def test_limit_parse() -> None:
    assert Limit.parse("10/60") == Limit(10, 60.0)
    with pytest.raises(ValueError, match="'ten' is not 'count/seconds'"):
        Limit.parse("ten")
    with pytest.raises(ValueError):
        Limit(0, 1.0)
