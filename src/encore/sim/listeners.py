"""Simulated listeners: a hidden taste over what they hear, a bias, rating noise, and a
listening behaviour that follows their interest — or an adversarial behaviour.

Everything here is pure (numpy only): :func:`decide` maps the perceived features of a clip,
its length and the platform's minimum listen to the played ranges and the stars the
listener will send. :mod:`encore.sim.pilot` does the HTTP.

Honest listener (``kind = "honest"``)
    ``appeal = Σ wₖ·prefₖ(featureₖ) / Σ wₖ`` in [0, 1], each preference a peak around a
    target (``shape = "peak"``: ``exp(−½((f − t)/width)²)``) or a soft threshold
    (``"below"``: ``1/(1 + exp((f − t)/width))``, ``"above"`` the mirror).
    Stars: ``1 + 4·appeal + bias + noise·N(0, 1)``, rounded to half stars and clipped to
    1..5. Listening: below ``skip_below`` appeal the listener stops soon after the rating
    unlocks; above it the listened fraction rises with appeal, sometimes with a seek forward
    (a skipped stretch) or a replay of the opening (overlapping ranges, which the server
    counts once).

Adversarial listeners
    ``max_min_listen``: 5 stars (sometimes 4.5) after exactly the minimum listen (the
    paper's named misbehaviour). ``random``: uniform half-star ratings, a random listened
    fraction. ``min_listen``: always the minimum listen and one fixed rating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from encore.sim.features import FEATURE_NAMES, AudioFeatures

ListenerKind = Literal["honest", "max_min_listen", "random", "min_listen"]
ADVERSARIAL_KINDS: tuple[str, ...] = ("max_min_listen", "random", "min_listen")
KINDS: tuple[str, ...] = ("honest", *ADVERSARIAL_KINDS)
Shape = Literal["peak", "below", "above"]

#: Seconds a listener plays past the unlock point, so rounding never denies the rating.
UNLOCK_MARGIN_SECONDS = 0.15


@dataclass(frozen=True)
class Preference:
    """One term of a taste: how much a listener likes a value of one feature.

    Attributes
    ----------
    feature : str
        One of :data:`encore.sim.features.FEATURE_NAMES`.
    target : float
        Peak position (``"peak"``) or threshold (``"below"``/``"above"``), in the feature's
        units.
    width : float > 0
        Tolerance in the feature's units.
    weight : float >= 0
    shape : "peak", "below" or "above"
    """

    feature: str
    target: float
    width: float
    weight: float = 1.0
    shape: Shape = "peak"

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_NAMES:
            raise ValueError(f"preference feature {self.feature!r} is not one of {FEATURE_NAMES}")
        if not (math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"preference width {self.width!r} must be > 0")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"preference weight {self.weight!r} must be >= 0")
        if self.shape not in ("peak", "below", "above"):
            raise ValueError(f"preference shape {self.shape!r} must be peak, below or above")

    def score(self, value: float) -> float:
        """Liking of ``value``, in [0, 1]."""
        z = (value - self.target) / self.width
        if self.shape == "peak":
            return math.exp(-0.5 * z * z)
        z = max(min(z, 50.0), -50.0)
        return 1.0 / (1.0 + math.exp(z if self.shape == "below" else -z))


@dataclass(frozen=True)
class Taste:
    """A listener's hidden taste: a weighted mean of preferences."""

    preferences: tuple[Preference, ...]

    def appeal(self, features: AudioFeatures) -> float:
        """How much the listener likes a clip with ``features``, in [0, 1]."""
        total = sum(p.weight for p in self.preferences)
        if total <= 0:
            return 0.5
        return sum(p.weight * p.score(features.get(p.feature)) for p in self.preferences) / total


@dataclass(frozen=True)
class ListenerSpec:
    """Who a simulated listener is (hidden from the platform).

    Attributes
    ----------
    name : str
        Unique; also the local part of its e-mail address.
    kind : str
        ``"honest"`` or one of :data:`ADVERSARIAL_KINDS`.
    group : str
        The population group it was drawn from.
    taste : Taste
    bias : float
        Stars added to every rating (honest listeners).
    noise : float >= 0
        SD of the rating noise in stars.
    skip_below : float
        Appeal under which the listener stops as soon as it may rate.
    seek_probability : float
        Chance to skip a stretch of a clip it is listening to.
    replay_probability : float
        Chance to replay the opening (overlapping ranges).
    fixed_stars : float
        The one rating of a ``min_listen`` adversary.
    songs : tuple of str
        Titles of the seed songs it uploads.
    """

    name: str
    kind: str
    group: str
    taste: Taste
    bias: float = 0.0
    noise: float = 0.3
    skip_below: float = 0.3
    seek_probability: float = 0.2
    replay_probability: float = 0.1
    fixed_stars: float = 3.0
    songs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def adversarial(self) -> bool:
        return self.kind != "honest"


@dataclass(frozen=True)
class Decision:
    """What a listener does with one clip.

    Attributes
    ----------
    ranges : tuple of (float, float)
        Played ranges in seconds of the clip, in the order they are played.
    stars : float
        The rating, 1..5 in half steps.
    appeal : float or None
        The hidden appeal (honest listeners), for the simulation's own log only.
    """

    ranges: tuple[tuple[float, float], ...]
    stars: float
    appeal: float | None = None

    @property
    def play_seconds(self) -> float:
        """Wall time the playback takes (sum of range lengths, overlaps included)."""
        return float(sum(b - a for a, b in self.ranges))

    @property
    def listened_seconds(self) -> float:
        """Union of the ranges (what the server will count)."""
        total, end = 0.0, -math.inf
        for a, b in sorted(self.ranges):
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        return total


def half_stars(x: float) -> float:
    """Round to the rating scale: 1..5 in steps of 0.5."""
    return float(min(max(round(x * 2) / 2, 1.0), 5.0))


def stars_for(appeal: float, bias: float, noise: float, rng: np.random.Generator) -> float:
    """An honest rating: ``1 + 4·appeal + bias + noise·N(0, 1)`` on the half-star scale."""
    return half_stars(1.0 + 4.0 * appeal + bias + noise * float(rng.standard_normal()))


def _minimum_ranges(min_listen: float, clip_seconds: float) -> tuple[tuple[float, float], ...]:
    end = min(clip_seconds, min_listen + UNLOCK_MARGIN_SECONDS)
    return ((0.0, round(end, 3)),)


def honest_ranges(
    spec: ListenerSpec,
    appeal: float,
    clip_seconds: float,
    min_listen: float,
    rng: np.random.Generator,
) -> tuple[tuple[float, float], ...]:
    """Played ranges of an honest listener: more of the clip the more it likes it."""
    if appeal < spec.skip_below:
        return _minimum_ranges(min_listen, clip_seconds)
    lo = min(1.0, (min_listen + UNLOCK_MARGIN_SECONDS) / clip_seconds)
    interest = (appeal - spec.skip_below) / max(1.0 - spec.skip_below, 1e-9)
    target = lo + (1.0 - lo) * min(1.0, interest * float(rng.uniform(0.8, 1.4)))
    listened = max(min(target, 1.0) * clip_seconds, min_listen + UNLOCK_MARGIN_SECONDS)
    listened = min(listened, clip_seconds)
    ranges: list[tuple[float, float]] = []
    if rng.random() < spec.replay_probability:
        first = min(clip_seconds, float(rng.uniform(0.3, 1.0)) * min(listened, clip_seconds))
        ranges.append((0.0, first))  # played, then restarted from the top
    gap = clip_seconds - listened
    if gap > 0.2 and rng.random() < spec.seek_probability:
        # Play the opening, seek forward over the gap, play on to the end.
        cut = max(min_listen + UNLOCK_MARGIN_SECONDS, float(rng.uniform(0.3, 0.8)) * listened)
        cut = min(cut, listened)
        ranges += [(0.0, cut), (cut + gap, clip_seconds)]
    else:
        ranges.append((0.0, listened))
    return tuple((round(a, 3), round(b, 3)) for a, b in ranges)


def decide(
    spec: ListenerSpec,
    features: AudioFeatures,
    clip_seconds: float,
    min_listen: float,
    rng: np.random.Generator,
) -> Decision:
    """What ``spec`` does with a clip it heard as ``features``.

    Parameters
    ----------
    spec : ListenerSpec
    features : AudioFeatures
        Computed on the downloaded audio.
    clip_seconds : float > 0
        The clip's length.
    min_listen : float >= 0
        The platform's minimum listen before a rating (it tells the player).
    rng : np.random.Generator
        This decision's random stream.
    """
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds={clip_seconds!r} must be > 0")
    if spec.kind == "honest":
        appeal = spec.taste.appeal(features)
        ranges = honest_ranges(spec, appeal, clip_seconds, min_listen, rng)
        return Decision(ranges, stars_for(appeal, spec.bias, spec.noise, rng), appeal)
    if spec.kind == "max_min_listen":
        stars = 5.0 if rng.random() < 0.9 else 4.5
        return Decision(_minimum_ranges(min_listen, clip_seconds), stars)
    if spec.kind == "random":
        lo = min(1.0, (min_listen + UNLOCK_MARGIN_SECONDS) / clip_seconds)
        end = float(rng.uniform(lo, 1.0)) * clip_seconds
        stars = float(rng.integers(2, 11)) / 2
        return Decision(((0.0, round(end, 3)),), stars)
    if spec.kind == "min_listen":
        return Decision(_minimum_ranges(min_listen, clip_seconds), half_stars(spec.fixed_stars))
    raise ValueError(f"unknown listener kind {spec.kind!r}; known: {', '.join(KINDS)}")
