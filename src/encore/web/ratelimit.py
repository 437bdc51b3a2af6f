"""A small in-process sliding-window rate limiter.

The counters live in the memory of one web process: with several processes (uvicorn
``--workers N``, several hosts) each process counts on its own, so the effective limit is
N times the configured one. That is acceptable for the embedded default (one process); a
deployment with many web processes should also limit at its reverse proxy.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from encore.errors import TooManyRequests


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


class RateLimits:
    """The named limits of the web app, checked per account and per client address.

    Parameters
    ----------
    limits
        ``name -> Limit``; a name ending in ``_account`` is keyed by user (or e-mail for
        sign-in), one ending in ``_ip`` by client address.
    limiter
        The shared counter store.
    """

    def __init__(self, limits: dict[str, Limit], limiter: SlidingWindowLimiter | None = None):
        self.limits = dict(limits)
        self.limiter = limiter or SlidingWindowLimiter()

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


class SigninSlowdown:
    """Exponential slow-down of failed sign-ins per (account, address), never a lockout.

    After ``n`` consecutive failures for one e-mail address from one client address, the
    next attempt from there must wait ``min(2 ** (n - 1), max_delay)`` seconds; a success
    forgets the failures. Someone who tries a known e-mail address from their own address
    slows down only themselves: its owner, elsewhere, signs in as usual (the per-address
    hard limit stays in :class:`RateLimits`). Memory: entries idle for ``2 * max_delay`` are
    dropped; at most ``max_entries`` are kept.
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
        with self._lock:
            entry = self._failures.get((account, ip))
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
        with self._lock:
            self._failures.pop((account, ip), None)
