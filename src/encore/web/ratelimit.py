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
