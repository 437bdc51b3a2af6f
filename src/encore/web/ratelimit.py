"""Rate limits: a sliding window per key, counted in Redis or in one process.

Two counter stores with one interface (:class:`Limiter`), chosen by
:func:`limiter_for` from ``Settings.resolved_rate_limit_url``:

- :class:`SlidingWindowLimiter` (no Redis configured): the counters live in the memory of
  one web process. With several processes (uvicorn ``--workers N``, several hosts) each
  counts on its own, so the effective limit is N times the configured one.
- :class:`RedisLimiter` (Redis configured, by default the queue's): the same sliding
  ("moving") window kept in Redis by the ``limits`` library, one list of timestamps per
  key updated by a Lua script, so every web process on every host draws from one budget.
  Windows are whole seconds there (a fraction is rounded up). When Redis cannot be reached
  the limiter counts in-process for a few seconds, then tries again, and logs a warning (a
  limit must not take the site down).

The sign-in slow-down (:class:`SigninSlowdown`) has the same two homes
(:class:`RedisSigninSlowdown`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from encore.errors import TooManyRequests

if TYPE_CHECKING:
    from encore.config import Settings

logger = logging.getLogger(__name__)

#: Seconds a Redis command may take before the limiter counts in-process instead. The
#: checks run in the event loop of the async routes (a round trip, like their short database
#: writes), so a Redis that stops answering must cost little, and rarely (below).
REDIS_TIMEOUT = 1.0
#: After a Redis error, count in-process for this many seconds before trying Redis again.
RETRY_REDIS_AFTER = 5.0
#: At most one warning per this many seconds while Redis cannot be reached.
_WARN_EVERY = 60.0


class RateLimited(TooManyRequests):
    """Too many requests of one kind from one account or address (429 with Retry-After)."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``seconds`` seconds for one key."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0:
            raise ValueError(f"a limit needs count >= 1 and seconds > 0, got {self}")

    @classmethod
    def parse(cls, text: str) -> Limit:
        """Read ``"count/seconds"`` (e.g. ``"10/60"``: ten per minute)."""
        try:
            count, seconds = text.split("/")
            return cls(int(count), float(seconds))
        except ValueError as exc:
            raise ValueError(f"rate limit {text!r} is not 'count/seconds'") from exc


class SlidingWindowLimiter:
    """Counts events per key over a sliding time window.

    Each key keeps the timestamps of its accepted events within the window (a deque, at
    most ``limit.count`` long), so memory is bounded by keys × count. Keys not hit for a
    whole window are dropped on the next sweep. Thread-safe: sync route handlers run in a
    thread pool.

    Parameters
    ----------
    clock
        Monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def hit(self, key: str, limit: Limit) -> float | None:
        """Record one event for ``key`` if the limit allows it.

        Returns
        -------
        float or None
            ``None`` when the event is accepted (and counted); otherwise the number of
            seconds until the oldest counted event leaves the window (the event is not
            counted).
        """
        now = self._clock()
        with self._lock:
            self._maybe_sweep(now, limit.seconds)
            window = self._events.setdefault(key, deque())
            while window and window[0] <= now - limit.seconds:
                window.popleft()
            if len(window) >= limit.count:
                return max(window[0] + limit.seconds - now, 0.001)
            window.append(now)
            return None

    def reset(self) -> None:
        """Forget every counter."""
        with self._lock:
            self._events.clear()

    def _maybe_sweep(self, now: float, seconds: float) -> None:
        if now - self._last_sweep < max(seconds, 60.0):
            return
        self._last_sweep = now
        stale = [k for k, w in self._events.items() if not w or w[-1] <= now - seconds]
        for key in stale:
            del self._events[key]


class Limiter(Protocol):
    """A counter store of :class:`RateLimits`."""

    def hit(self, key: str, limit: Limit) -> float | None:
        """``None`` when the event is accepted (and counted), else seconds to wait."""

    def reset(self) -> None:
        """Forget every counter."""


class _RedisHealth:
    """After a Redis error, Redis is skipped for :data:`RETRY_REDIS_AFTER` seconds (a hung
    Redis then costs one timeout per process every few seconds, not one per request); the
    error is logged at most once a minute per process."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last_warning = -math.inf
        self._down_until = -math.inf

    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + RETRY_REDIS_AFTER
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            logger.warning("%s: Redis cannot be reached (%s); counting in this process",
                           self.what, exc)


def redis_client(url: str) -> Any:
    """A Redis client for ``url`` with short timeouts (a slow Redis must not hold requests)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                                socket_connect_timeout=REDIS_TIMEOUT)


class RedisLimiter:
    """The sliding window of :class:`SlidingWindowLimiter`, kept in Redis (``limits``'
    moving-window strategy), so that every process sharing the Redis shares each budget.

    Each key is a Redis list of the accepted events' times (at most ``limit.count`` long,
    expiring one window after the last event); a Lua script checks and appends atomically.
    Times come from each web host's clock (keep them in sync, e.g. NTP).

    Parameters
    ----------
    url
        ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
    prefix
        Put before every key (several installations may share one Redis).
    fallback
        Counts while Redis cannot be reached (default: a fresh in-process limiter).
    """

    def __init__(self, url: str, *, prefix: str = "encore:limits",
                 fallback: SlidingWindowLimiter | None = None) -> None:
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.url = url
        self.prefix = prefix
        self.client = redis_client(url)
        self._storage = RedisStorage(url, connection_pool=self.client.connection_pool,
                                     key_prefix=prefix)
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._errors = self._storage.base_exceptions
        self._fallback = fallback or SlidingWindowLimiter()
        self._health = _RedisHealth("rate limits")

    def hit(self, key: str, limit: Limit) -> float | None:
        from limits import RateLimitItemPerSecond

        if not self._health.up():
            return self._fallback.hit(key, limit)
        item = RateLimitItemPerSecond(limit.count, math.ceil(limit.seconds))
        try:
            if self._strategy.hit(item, key):
                return None
            stats = self._strategy.get_window_stats(item, key)
        except self._errors as exc:
            self._health.failed(exc)
            return self._fallback.hit(key, limit)
        return max(stats.reset_time - time.time(), 0.001)

    def reset(self) -> None:
        """Delete every key under this limiter's prefix (and the in-process fallback's)."""
        self._storage.reset()
        self._fallback.reset()


class RateLimits:
    """The named limits of the web app, checked per account and per client address.

    Parameters
    ----------
    limits
        ``name -> Limit``; a name ending in ``_account`` is keyed by user (or e-mail for
        sign-in), one ending in ``_ip`` by client address.
    limiter
        The counter store (default: in-process).
    """

    def __init__(self, limits: dict[str, Limit], limiter: Limiter | None = None):
        self.limits = dict(limits)
        self.limiter: Limiter = limiter or SlidingWindowLimiter()

    @property
    def in_process(self) -> bool:
        """Whether the counts live in this process (a check is a few µs of CPU and may run in
        the event loop); False when they live in Redis (a network round trip)."""
        return isinstance(self.limiter, SlidingWindowLimiter)

    def pending(self, action: str, *, account: str | None, ip: str | None) -> PendingCheck:
        """:meth:`check` of ``action``, to be run later (by :func:`encore.web.deps.run_short_write`,
        where it runs with the write)."""
        return PendingCheck(self, action, account, ip)

    async def check_async(self, action: str, *, account: str | None, ip: str | None) -> None:
        """:meth:`check` from the event loop: in it when the counts are in-process, in the thread
        pool when they are in Redis (the loop never waits on the network)."""
        if self.in_process:
            self.check(action, account=account, ip=ip)
        else:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(self.check, action, account=account, ip=ip)

    def check(self, action: str, *, account: str | None, ip: str | None) -> None:
        """Count one ``action`` for the account and the address, or raise.

        Raises
        ------
        RateLimited
            When either the per-account or the per-address limit of ``action`` is used up.
        """
        for scope, key in (("account", account), ("ip", ip)):
            limit = self.limits.get(f"{action}_{scope}")
            if limit is None or key is None:
                continue
            wait = self.limiter.hit(f"{action}:{scope}:{key}", limit)
            if wait is not None:
                raise RateLimited(
                    f"too many {action} requests from this {'account' if scope == 'account' else 'address'}; "
                    f"try again in {math.ceil(wait)} s",
                    retry_after=wait,
                )


@dataclass(frozen=True)
class PendingCheck:
    """One rate-limit check of :class:`RateLimits`, called later (:meth:`RateLimits.pending`)."""

    limits: RateLimits
    action: str
    account: str | None
    ip: str | None

    @property
    def in_process(self) -> bool:
        return self.limits.in_process

    def __call__(self) -> None:
        self.limits.check(self.action, account=self.account, ip=self.ip)


class SigninSlowdown:
    """Exponential slow-down of failed sign-ins per (account, address), never a lockout.

    After ``n`` consecutive failures for one e-mail address from one client address, the
    next attempt from there must wait ``min(2 ** (n - 1), max_delay)`` seconds; a success
    forgets the failures. Someone who tries a known e-mail address from their own address
    slows down only themselves: its owner, elsewhere, signs in as usual (the per-address
    hard limit stays in :class:`RateLimits`). Memory: entries idle for ``2 * max_delay`` are
    dropped; at most ``max_entries`` are kept. The failures live in this process;
    :class:`RedisSigninSlowdown` keeps them in Redis.
    """

    def __init__(self, max_delay: float, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 100_000) -> None:
        self.max_delay = max_delay
        self._clock = clock
        self._max_entries = max_entries
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def check(self, account: str, ip: str) -> None:
        """Raise :class:`RateLimited` while the pair must still wait."""
        if self.max_delay <= 0:
            return
        entry = self._entry(account, ip)
        if entry is None:
            return
        n, last = entry
        wait = last + min(2.0 ** (n - 1), self.max_delay) - self._clock()
        if wait > 0:
            raise RateLimited(
                f"{n} failed sign-ins for this account from this address; "
                f"try again in {math.ceil(wait)} s",
                retry_after=wait,
            )

    def failed(self, account: str, ip: str) -> None:
        """Count one failed sign-in of ``account`` from ``ip``."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._max_entries:
                horizon = now - 2 * self.max_delay
                for key in [k for k, (_, t) in self._failures.items() if t < horizon]:
                    del self._failures[key]
                if len(self._failures) >= self._max_entries:
                    self._failures.pop(next(iter(self._failures)))
            n, _ = self._failures.get((account, ip), (0, now))
            self._failures[(account, ip)] = (n + 1, now)

    def succeeded(self, account: str, ip: str) -> None:
        """Forget the failures of ``account`` from ``ip``."""
        with self._lock:
            self._failures.pop((account, ip), None)

    def _entry(self, account: str, ip: str) -> tuple[int, float] | None:
        with self._lock:
            return self._failures.get((account, ip))


class RedisSigninSlowdown(SigninSlowdown):
    """:class:`SigninSlowdown` with the failures in Redis, shared by every web process.

    One hash per (account, address), named by a digest of the pair (no e-mail address in
    Redis), holding the count and the wall-clock time of the last failure; it expires
    ``2 * max_delay`` after that failure. While Redis cannot be reached, failures are
    counted in this process.
    """

    def __init__(self, max_delay: float, url: str, *, prefix: str = "encore:limits") -> None:
        super().__init__(max_delay, clock=time.time)
        import redis

        self.prefix = prefix
        self.client = redis_client(url)
        self._errors: type[Exception] = redis.RedisError
        self._health = _RedisHealth("sign-in slow-down")

    def _key(self, account: str, ip: str) -> str:
        digest = hashlib.blake2b(f"{account}\0{ip}".encode(), digest_size=16).hexdigest()
        return f"{self.prefix}:signin:{digest}"

    def _entry(self, account: str, ip: str) -> tuple[int, float] | None:
        if not self._health.up():
            return super()._entry(account, ip)
        try:
            n, last = self.client.hmget(self._key(account, ip), ["n", "last"])
        except self._errors as exc:
            self._health.failed(exc)
            return super()._entry(account, ip)
        if n is None or last is None:
            return super()._entry(account, ip)
        return int(n), float(last)

    def failed(self, account: str, ip: str) -> None:
        if not self._health.up():
            super().failed(account, ip)
            return
        key = self._key(account, ip)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "n", 1)
                pipe.hset(key, "last", repr(self._clock()))
                pipe.expire(key, max(math.ceil(2 * self.max_delay), 1))
                pipe.execute()
        except self._errors as exc:
            self._health.failed(exc)
            super().failed(account, ip)

    def succeeded(self, account: str, ip: str) -> None:
        super().succeeded(account, ip)
        if not self._health.up():
            return
        try:
            self.client.delete(self._key(account, ip))
        except self._errors as exc:
            self._health.failed(exc)


def limiter_for(settings: Settings) -> Limiter:
    """Redis when ``settings`` name one (``Settings.resolved_rate_limit_url``), else this
    process."""
    url = settings.resolved_rate_limit_url
    if not url:
        return SlidingWindowLimiter()
    return RedisLimiter(url, prefix=settings.rate_limit_prefix)


def signin_slowdown_for(settings: Settings) -> SigninSlowdown:
    """The sign-in slow-down, in Redis when the rate limits are."""
    url = settings.resolved_rate_limit_url
    if not url:
        return SigninSlowdown(settings.signin_max_delay_seconds)
    return RedisSigninSlowdown(settings.signin_max_delay_seconds, url,
                               prefix=settings.rate_limit_prefix)
