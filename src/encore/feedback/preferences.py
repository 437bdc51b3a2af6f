"""Preference data for fine-tuning: pairs for Diffusion-DPO, single labels for Diffusion-KTO.

Pure functions over plain rows (the service :mod:`encore.services.preferences` reads them from
the database). The rules:

- **Rated pairs.** Two clips rated by the *same listener* and made from the *same input
  song(s)* with different stars: the higher-rated one is the winner. A rater's bias adds the
  same offset to both ratings, so it cancels in the comparison; the song is the same, so the
  pair compares what the generator did with it. Weight: the rater's weight (quality control);
  flagged raters and raters of weight 0 give no pairs.
- **Taste-ranked pairs.** A best-of-n request keeps its unserved candidates (unrated). Where
  the served candidate was rated by the requesting listener, each unserved candidate of the
  same request forms a pair with it, ordered by the taste model's ``predicted_stars`` of both
  for that listener (at least ``taste_margin`` apart). They are marked ``source="taste"`` and
  capped at ``taste_share`` of all pairs (the most confident kept), so that the taste model
  can never dominate what the generator learns (reward hacking).
- **KTO labels.** Each counted rating of a usable clip compared with its listener's own mean
  rating (over all of the listener's counted ratings): above → desirable, below →
  undesirable, equal → no label. Weight: the rater's weight; flagged raters excluded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

PairSource = Literal["rating", "taste"]
RATING: Final = "rating"
TASTE: Final = "taste"


@dataclass(frozen=True)
class RatedClip:
    """One counted rating.

    Attributes
    ----------
    listener_id, clip_id : int
    stars : float
        1 to 5.
    song_key : str
        The clip's input songs, canonical (e.g. sorted ids joined by ``+``); ``""`` for a clip
        generated from noise.
    weight : float
        The rater's weight in [0, 1].
    flagged : bool
        The rater is flagged by quality control.
    usable : bool
        The clip can be trained on (a generated clip with a mel image); unusable ratings
        still count towards the listener's mean.
    request_id : str or None
        The best-of-n request the rating was given for, when the rater made that request.
    predicted_stars : float or None
        The taste model's prediction for the clip when it was served.
    """

    listener_id: int
    clip_id: int
    stars: float
    song_key: str
    weight: float = 1.0
    flagged: bool = False
    usable: bool = True
    request_id: str | None = None
    predicted_stars: float | None = None


@dataclass(frozen=True)
class UnratedCandidate:
    """An unserved best-of-n candidate with its taste prediction for the requesting listener."""

    clip_id: int
    request_id: str
    predicted_stars: float
    song_key: str


@dataclass(frozen=True)
class PreferencePair:
    """``winner`` was (or is predicted to be) preferred to ``loser`` by ``listener_id``."""

    winner: int
    loser: int
    listener_id: int
    song_key: str
    weight: float
    source: PairSource
    margin: float  # stars (rated) or predicted stars (taste) between them

    def to_dict(self) -> dict[str, object]:
        return {"winner": self.winner, "loser": self.loser, "listener_id": self.listener_id,
                "song_key": self.song_key, "weight": round(self.weight, 6), "source": self.source,
                "margin": round(self.margin, 4)}


@dataclass(frozen=True)
class PreferenceLabel:
    """A clip liked (``desirable``) or disliked by ``listener_id`` relative to its own mean."""

    clip_id: int
    listener_id: int
    desirable: bool
    weight: float
    deviation: float  # stars − the listener's mean

    def to_dict(self) -> dict[str, object]:
        return {"clip_id": self.clip_id, "listener_id": self.listener_id,
                "desirable": self.desirable, "weight": round(self.weight, 6),
                "deviation": round(self.deviation, 4)}


@dataclass(frozen=True)
class PreferenceRules:
    """How pairs and labels are made (``Settings.finetune_taste_pair_share`` sets the cap).

    ``taste_share``: the most taste-ranked pairs may be of all pairs, in [0, 1) (0: none).
    ``taste_margin``: predicted stars between a taste-ranked pair's clips, at least.
    ``min_gap``: stars between a rated pair's clips, at least (0.5 = any difference).
    ``label_margin``: stars from the listener's mean a KTO label needs (0 = any difference).
    """

    taste_share: float = 0.3
    taste_margin: float = 0.25
    min_gap: float = 0.5
    label_margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.taste_share < 1.0:
            raise ValueError(f"taste_share={self.taste_share!r} must be in [0, 1)")
        for name in ("taste_margin", "min_gap", "label_margin"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")


def _trusted(r: RatedClip) -> bool:
    return not r.flagged and r.weight > 0 and math.isfinite(r.stars)


def rated_pairs(ratings: Iterable[RatedClip], rules: PreferenceRules = PreferenceRules()) -> list[PreferencePair]:
    """Every pair of usable clips one trusted listener rated for the same songs, stars apart."""
    groups: dict[tuple[int, str], list[RatedClip]] = defaultdict(list)
    for r in ratings:
        if _trusted(r) and r.usable:
            groups[(r.listener_id, r.song_key)].append(r)
    pairs = []
    for (listener, song), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r.clip_id)
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                gap = a.stars - b.stars
                if a.clip_id == b.clip_id or abs(gap) < max(rules.min_gap, 1e-9):
                    continue
                win, lose = (a, b) if gap > 0 else (b, a)
                pairs.append(PreferencePair(win.clip_id, lose.clip_id, listener, song,
                                            float(a.weight), RATING, abs(gap)))
    return pairs


def taste_pairs(ratings: Iterable[RatedClip], candidates: Iterable[UnratedCandidate],
                rules: PreferenceRules = PreferenceRules()) -> list[PreferencePair]:
    """Unserved candidates against the rated served clip of their request, by predicted stars.

    Uncapped, most confident first (then by clip ids).
    """
    served: dict[str, RatedClip] = {}
    for r in ratings:
        if _trusted(r) and r.usable and r.request_id is not None and r.predicted_stars is not None:
            served.setdefault(r.request_id, r)
    pairs = []
    for c in candidates:
        s = served.get(c.request_id)
        if s is None or c.clip_id == s.clip_id or not math.isfinite(c.predicted_stars):
            continue
        assert s.predicted_stars is not None
        gap = c.predicted_stars - s.predicted_stars
        if abs(gap) < max(rules.taste_margin, 1e-9):
            continue
        win, lose = (c.clip_id, s.clip_id) if gap > 0 else (s.clip_id, c.clip_id)
        pairs.append(PreferencePair(win, lose, s.listener_id, s.song_key, float(s.weight), TASTE, abs(gap)))
    pairs.sort(key=lambda p: (-p.margin, p.winner, p.loser))
    return pairs


def taste_cap(n_rated: int, share: float) -> int:
    """The most taste-ranked pairs that keep their share of all pairs at or below ``share``."""
    if share <= 0:
        return 0
    return int(math.floor(share * n_rated / (1.0 - share) + 1e-9))


def preference_pairs(ratings: Sequence[RatedClip], candidates: Iterable[UnratedCandidate] = (),
                     rules: PreferenceRules = PreferenceRules()) -> list[PreferencePair]:
    """Rated pairs, then taste-ranked pairs up to ``rules.taste_share`` of the total."""
    rated = rated_pairs(ratings, rules)
    ranked = taste_pairs(ratings, candidates, rules)[: taste_cap(len(rated), rules.taste_share)]
    return rated + ranked


def listener_means(ratings: Iterable[RatedClip]) -> dict[int, float]:
    """Each listener's mean stars over all its counted ratings (usable or not)."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in ratings:
        if math.isfinite(r.stars):
            sums[r.listener_id][0] += r.stars
            sums[r.listener_id][1] += 1
    return {k: s / n for k, (s, n) in sums.items() if n > 0}


def preference_labels(ratings: Sequence[RatedClip],
                      rules: PreferenceRules = PreferenceRules()) -> list[PreferenceLabel]:
    """Desirable / undesirable labels: a rating above / below its listener's own mean."""
    means = listener_means(ratings)
    labels = []
    for r in sorted(ratings, key=lambda r: (r.listener_id, r.clip_id)):
        if not (_trusted(r) and r.usable):
            continue
        deviation = r.stars - means[r.listener_id]
        if abs(deviation) <= max(rules.label_margin, 1e-9):
            continue
        labels.append(PreferenceLabel(r.clip_id, r.listener_id, deviation > 0, float(r.weight), deviation))
    return labels


def summarize(pairs: Sequence[PreferencePair], labels: Sequence[PreferenceLabel]) -> dict[str, float | int]:
    """Counts for logs and the run record."""
    n_taste = sum(p.source == TASTE for p in pairs)
    return {
        "pairs": len(pairs), "rated_pairs": len(pairs) - n_taste, "taste_pairs": n_taste,
        "taste_share": round(n_taste / len(pairs), 4) if pairs else 0.0,
        "pair_listeners": len({p.listener_id for p in pairs}),
        "labels": len(labels), "desirable": sum(lab.desirable for lab in labels),
        "undesirable": sum(not lab.desirable for lab in labels),
    }
