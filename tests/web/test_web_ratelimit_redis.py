"""Rate limits shared through Redis (the real server on 127.0.0.1:6379, database 15, a key
prefix of its own per test, deleted afterwards); in-process counters when no Redis is named."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from encore.config import Settings
from encore.web.ratelimit import (
    Limit,
    RateLimited,
    RateLimits,
    RedisLimiter,
    RedisSigninSlowdown,
    SigninSlowdown,
    SlidingWindowLimiter,
    limiter_for,
    signin_slowdown_for,
)

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted at the end."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    name = f"encore-test-limits-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _keys(prefix: str) -> list[bytes]:
    return list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{prefix}:*"))


def test_the_settings_choose_where_limits_count() -> None:
    assert Settings().resolved_rate_limit_url == ""  # SQLite queue: in-process
    assert Settings(queue_url=REDIS_URL).resolved_rate_limit_url == REDIS_URL  # the queue's
    assert Settings(queue_url=REDIS_URL, rate_limit_url="memory://").resolved_rate_limit_url == ""
    other = "redis://127.0.0.1:6379/3"
    assert Settings(rate_limit_url=other).resolved_rate_limit_url == other
    assert isinstance(limiter_for(Settings()), SlidingWindowLimiter)
    assert isinstance(limiter_for(Settings(queue_url=REDIS_URL)), RedisLimiter)
    assert type(signin_slowdown_for(Settings())) is SigninSlowdown
    assert isinstance(signin_slowdown_for(Settings(queue_url=REDIS_URL)), RedisSigninSlowdown)
    with pytest.raises(ValueError, match="rate_limit_url 'http://x'"):
        Settings(rate_limit_url="http://x")


def test_two_limiters_share_one_budget_and_the_window_slides(prefix: str) -> None:
    a = RedisLimiter(REDIS_URL, prefix=prefix)
    b = RedisLimiter(REDIS_URL, prefix=prefix)  # another process would hold its own pool
    limit = Limit(3, 3.0)
    assert a.hit("k", limit) is None
    time.sleep(1.0)
    assert b.hit("k", limit) is None
    assert a.hit("k", limit) is None
    wait = b.hit("k", limit)  # the fourth, wherever it arrives
    assert wait is not None and 0 < wait <= 2.0  # when the first (1 s older) leaves
    assert a.hit("k", limit) is not None
    assert a.hit("other", limit) is None  # keys are independent
    assert _keys(prefix)
    time.sleep(wait + 0.05)  # the first hit has left the window: exactly one slot
    assert b.hit("k", limit) is None
    assert a.hit("k", limit) is not None
    a.reset()
    assert _keys(prefix) == []
    assert b.hit("k", limit) is None


def test_a_separate_process_draws_from_the_same_budget(prefix: str) -> None:
    script = (
        "import sys\n"
        "from encore.web.ratelimit import Limit, RedisLimiter\n"
        "lim = RedisLimiter(sys.argv[1], prefix=sys.argv[2])\n"
        "print(sum(lim.hit('rating:ip:10.0.0.1', Limit(5, 60)) is None for _ in range(3)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, REDIS_URL, prefix], check=True,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "3"  # the other process spent 3 of 5
    here = RedisLimiter(REDIS_URL, prefix=prefix)
    results = [here.hit("rating:ip:10.0.0.1", Limit(5, 60)) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None and 55 < results[2] <= 60


def test_rate_limits_over_redis_raise_with_retry_after(prefix: str) -> None:
    limits = RateLimits({"rating_account": Limit(2, 60), "rating_ip": Limit(3, 60)},
                        RedisLimiter(REDIS_URL, prefix=prefix))
    other = RateLimits(dict(limits.limits), RedisLimiter(REDIS_URL, prefix=prefix))
    limits.check("rating", account="u1", ip="1.2.3.4")
    other.check("rating", account="u1", ip="1.2.3.4")
    with pytest.raises(RateLimited, match="rating requests from this account") as exc:
        limits.check("rating", account="u1", ip="1.2.3.4")
    assert 59 < exc.value.retry_after <= 60
    other.check("rating", account="u2", ip="1.2.3.4")  # the address's third
    with pytest.raises(RateLimited, match="from this address"):
        limits.check("rating", account="u3", ip="1.2.3.4")


def test_without_redis_reachable_the_limiter_counts_in_process(caplog) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="unreachable")  # nothing listens
    limit = Limit(2, 60)
    with caplog.at_level("WARNING", logger="encore.web.ratelimit"):
        assert limiter.hit("k", limit) is None
        assert not limiter._health.up()  # the next few seconds do not wait for Redis
        assert limiter.hit("k", limit) is None
        assert limiter.hit("k", limit) is not None
    assert sum("Redis cannot be reached" in r.message for r in caplog.records) == 1
    slowdown = RedisSigninSlowdown(300.0, "redis://127.0.0.1:1/0")
    slowdown.failed("ada@example.org", "1.2.3.4")
    with pytest.raises(RateLimited, match="1 failed sign-ins"):
        slowdown.check("ada@example.org", "1.2.3.4")


def test_signin_slowdown_is_shared_and_a_success_clears_it(prefix: str) -> None:
    a = RedisSigninSlowdown(300.0, REDIS_URL, prefix=prefix)
    b = RedisSigninSlowdown(300.0, REDIS_URL, prefix=prefix)
    a.check("ada@example.org", "1.2.3.4")
    a.failed("ada@example.org", "1.2.3.4")
    with pytest.raises(RateLimited, match="1 failed sign-ins") as exc:
        b.check("ada@example.org", "1.2.3.4")  # the failure seen by the other process
    assert 0 < exc.value.retry_after <= 1.0
    b.check("ada@example.org", "5.6.7.8")  # another address is not slowed
    b.failed("ada@example.org", "1.2.3.4")
    with pytest.raises(RateLimited, match="2 failed sign-ins"):
        a.check("ada@example.org", "1.2.3.4")
    keys = _keys(prefix)
    assert len(keys) == 1 and b"ada" not in keys[0]  # no e-mail address in Redis
    assert 0 < redis.Redis.from_url(REDIS_URL).ttl(keys[0]) <= 600
    b.succeeded("ada@example.org", "1.2.3.4")
    a.check("ada@example.org", "1.2.3.4")
    assert _keys(prefix) == []


def test_two_web_apps_on_one_redis_share_the_address_limit(
    make_app: Callable[..., FastAPI], prefix: str
) -> None:
    changes = {"rate_limit_url": REDIS_URL, "rate_limit_prefix": prefix,
               "limit_signin_ip": "3/60"}
    one, two = TestClient(make_app(**changes)), TestClient(make_app(**changes))
    codes = [client.post("/api/auth/signin",
                         json={"email": f"x{i}@example.org", "password": "x"}).status_code
             for i, client in enumerate((one, two, one, two))]
    assert codes == [403, 403, 403, 429]
    refused = one.post("/api/auth/signin", json={"email": "y@example.org", "password": "x"})
    assert refused.status_code == 429 and "from this address" in refused.text
    assert 55 <= int(refused.headers["retry-after"]) <= 60


def test_two_web_apps_on_one_redis_share_the_signin_slowdown(
    make_app: Callable[..., FastAPI], prefix: str
) -> None:
    changes = {"rate_limit_url": REDIS_URL, "rate_limit_prefix": prefix}
    one, two = TestClient(make_app(**changes)), TestClient(make_app(**changes))
    body = {"email": "ada@example.org", "password": "wrong"}
    assert one.post("/api/auth/signin", json=body).status_code == 403
    slowed = two.post("/api/auth/signin", json=body)
    assert slowed.status_code == 429 and "1 failed sign-ins" in slowed.text


def test_without_redis_each_app_counts_on_its_own(make_app: Callable[..., FastAPI]) -> None:
    one, two = make_app(limit_signin_ip="2/60"), make_app(limit_signin_ip="2/60")
    assert isinstance(one.state.limits.limiter, SlidingWindowLimiter)
    clients = TestClient(one), TestClient(two)
    codes = [[c.post("/api/auth/signin", json={"email": f"z{i}@example.org", "password": "x"}
                     ).status_code for i in range(3)] for c in clients]
    assert codes == [[403, 403, 429], [403, 403, 429]]  # each process allows the limit


def test_heartbeats_counted_in_redis_refuse_past_the_budget_and_write_nothing(
    make_app: Callable[..., FastAPI], prefix: str
) -> None:
    """The listen limit in Redis is checked in the thread pool with the write (never in the
    event loop): past the budget a heartbeat is refused and stores no listen event."""
    import sqlalchemy as sa

    from encore.services import accounts
    from encore.store import ListenEvent

    from .web_helpers import PASSWORD, signed_in, song_bytes, upload

    app = make_app(rate_limit_url=REDIS_URL, rate_limit_prefix=prefix, limit_listen_account="3/60")
    assert not app.state.limits.in_process
    accounts.create_user(app.state.ctx, email="ada@example.org", password=PASSWORD)
    ada = signed_in(app, "ada@example.org")
    song = upload(ada, song_bytes(1)).json()["song"]
    delivery = ada.post("/api/music", json={"song_ids": [song["id"]]}).json()["delivery_id"]
    ada.get(f"/api/deliveries/{delivery}/audio")
    codes = [ada.post(f"/api/deliveries/{delivery}/listens", json={"ranges": [[0, 0.1]]}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert any(b"listen" in key for key in _keys(prefix))
    with app.state.ctx.reading() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(ListenEvent)
                                .where(ListenEvent.delivery_id == delivery))
    assert stored == 3
