"""Best-of-n selection with ε-exploration, and the propensity of what was served.

With probability ``1 − ε`` the candidate the taste model scores highest is served
(*taste*); with probability ``ε`` a uniformly random one (*explore*). The propensity —
the probability that the served candidate would be served under this policy — is
``(1 − ε)·[it is the best] + ε/n``; recorded with every delivery it makes the ratings an
unbiased sample for training and for off-policy estimates in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encore.errors import InvalidInput


@dataclass(frozen=True)
class Selection:
    """The served candidate: its index, how it was chosen and its propensity."""

    index: int
    mode: str  # "taste", "explore" or "single"
    propensity: float
    best: int


def select(scores: np.ndarray | None, n: int, epsilon: float, rng: np.random.Generator) -> Selection:
    """Choose one of ``n`` candidates.

    Parameters
    ----------
    scores : np.ndarray [shape=(n,)] or None
        The taste model's scores; None: no model, every pick is uniform (``explore``).
    n : int >= 1
    epsilon : float in [0, 1]
    rng : np.random.Generator
    """
    if n < 1:
        raise InvalidInput(f"n={n!r} candidates; need at least one")
    if not 0.0 <= epsilon <= 1.0:
        raise InvalidInput(f"epsilon={epsilon!r} must be in [0, 1]")
    if n == 1:
        return Selection(0, "single", 1.0, 0)
    if scores is None:
        i = int(rng.integers(n))
        return Selection(i, "explore", 1.0 / n, -1)
    s = np.asarray(scores, dtype=float).reshape(-1)
    if s.shape[0] != n or not np.all(np.isfinite(s)):
        raise InvalidInput(f"scores must be {n} finite values")
    best = int(np.argmax(s))
    explore = rng.random() < epsilon
    i = int(rng.integers(n)) if explore else best
    propensity = (1.0 - epsilon) * (i == best) + epsilon / n
    return Selection(i, "explore" if explore else "taste", float(propensity), best)
