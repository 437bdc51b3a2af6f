"""Running one function in several threads at once (``from ..threads import …``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_in_threads(
    target: Callable[..., object], args: Iterable[tuple[Any, ...]], *, timeout: float | None = None
) -> list[BaseException]:
    """Run ``target(*a)`` for every ``a`` in ``args``, each in a thread of its own, all started
    before any is waited for (``timeout``: at most that long each); what they raised."""
    errors: list[BaseException] = []

    def run(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors
