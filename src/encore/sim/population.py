"""Populations of simulated listeners, described in TOML so new ones need no code.

A population file (see ``src/encore/sim/populations/default.toml``)::

    name = "default"
    listeners = 40              # how many
    adversarial_share = 0.10    # share of adversarial listeners (rounded, at least 0)
    requests_per_round = 12     # requests each listener makes per round
    songs_per_listener = 2      # seed songs each uploads
    blend_share = 0.15          # share of requests blending two of its songs
    closeness = 0.3             # optional "how close to my song" (0..1); default: server's

    [adversaries]               # relative shares of the adversarial kinds
    max_min_listen = 0.5
    random = 0.25
    min_listen = 0.25

    [[groups]]                  # honest listeners, drawn by share
    name = "chorale"
    share = 0.5
    genres = ["bach"]           # seed songs come from these genres ([] = any)
    bias_sd = 0.4               # listener bias ~ N(0, bias_sd²) stars
    noise = [0.2, 0.5]          # a number, or [lo, hi]: uniform per listener
    skip_below = [0.25, 0.4]
    seek_probability = 0.2
    replay_probability = 0.1

    [[groups.preferences]]
    feature = "brightness"      # brightness | density | noisiness | loudness | pitch |
                                # tempo | dynamic_range | harmonicity (encore.sim.features)
    target = "songs"            # the mean of the listener's own songs, or a number
    offset = [-0.3, 0.6]        # added to the target, per listener
    width = 0.8
    weight = 1.0
    shape = "peak"              # peak | below | above

Every value may be a number or a ``[lo, hi]`` range drawn uniformly per listener. Errors name
the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encore.errors import InvalidInput
from encore.sim.features import FEATURE_NAMES, AudioFeatures
from encore.sim.listeners import ADVERSARIAL_KINDS, ListenerSpec, Preference, Taste

POPULATIONS_DIR = Path(__file__).resolve().parent / "populations"

_TOP_KEYS = {
    "name", "description", "listeners", "adversarial_share", "requests_per_round",
    "songs_per_listener", "blend_share", "closeness", "adversaries", "groups",
}
_GROUP_KEYS = {
    "name", "share", "genres", "bias_sd", "noise", "skip_below", "seek_probability",
    "replay_probability", "preferences",
}
_PREF_KEYS = {"feature", "target", "offset", "width", "weight", "shape"}

Range = tuple[float, float]


@dataclass(frozen=True)
class PreferenceSpec:
    feature: str
    target: float | str  # a number, or "songs"
    offset: Range
    width: Range
    weight: Range
    shape: str


@dataclass(frozen=True)
class GroupSpec:
    name: str
    share: float
    genres: tuple[str, ...]
    bias_sd: float
    noise: Range
    skip_below: Range
    seek_probability: Range
    replay_probability: Range
    preferences: tuple[PreferenceSpec, ...]


@dataclass(frozen=True)
class Population:
    """A parsed population file (listeners are drawn from it by :func:`draw_listeners`)."""

    name: str
    description: str
    listeners: int
    adversarial_share: float
    requests_per_round: int
    songs_per_listener: int
    blend_share: float
    closeness: float | None
    adversaries: tuple[tuple[str, float], ...]
    groups: tuple[GroupSpec, ...]
    source: str

    @property
    def n_adversarial(self) -> int:
        return int(round(self.listeners * self.adversarial_share))

    def genres(self) -> set[str]:
        """Genres some group asks for (empty: any)."""
        return {g for group in self.groups for g in group.genres}


@dataclass(frozen=True)
class SeedSong:
    """A song simulated listeners can upload: its title, genre, file bytes and features."""

    title: str
    genre: str
    data: bytes
    filename: str
    features: AudioFeatures


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> InvalidInput:
        return InvalidInput(f"population {self.source}: {key}: {message}")

    def number(self, table: Mapping[str, Any], key: str, path: str, default: Any = None,
               lo: float = -math.inf, hi: float = math.inf) -> float:
        value = table.get(key, default)
        where = f"{path}{key}"
        if value is None:
            raise self.fail(where, "is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(where, f"{value!r} must be a number")
        if not lo <= value <= hi:
            raise self.fail(where, f"{value!r} must be between {lo:g} and {hi:g}")
        return float(value)

    def integer(self, table: Mapping[str, Any], key: str, path: str, default: Any = None,
                lo: int = 0) -> int:
        value = table.get(key, default)
        where = f"{path}{key}"
        if value is None:
            raise self.fail(where, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.fail(where, f"{value!r} must be an integer >= {lo}")
        return int(value)

    def range(self, table: Mapping[str, Any], key: str, path: str, default: Any,
              lo: float = -math.inf, hi: float = math.inf) -> Range:
        value = table.get(key, default)
        where = f"{path}{key}"
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(where, f"{value!r} must be a number or [lo, hi]")
            a = self.number({"v": value[0]}, "v", where + "[0]", lo=lo, hi=hi)
            b = self.number({"v": value[1]}, "v", where + "[1]", lo=lo, hi=hi)
            if b < a:
                raise self.fail(where, f"{value!r}: lo must not exceed hi")
            return (a, b)
        x = self.number({key: value}, key, path, lo=lo, hi=hi)
        return (x, x)

    def unknown(self, table: Mapping[str, Any], allowed: set[str], path: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise self.fail(path + extra[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def tables(self, items: list[Any], allowed: set[str],
               path: str) -> Iterator[tuple[int, Mapping[str, Any], str]]:
        """Each table of an array of tables with the prefix of its keys (``groups[0].``),
        checked to be a table with only ``allowed`` keys."""
        for i, item in enumerate(items):
            prefix = f"{path}[{i}]."
            if not isinstance(item, dict):
                raise self.fail(prefix[:-1], "must be a table")
            self.unknown(item, allowed, prefix)
            yield i, item, prefix


def parse_population(text: str, *, source: str = "<string>") -> Population:
    """Parse a population from TOML text.

    Raises
    ------
    InvalidInput
        Not TOML, an unknown or missing key, or a value out of range; the message names
        ``source`` and the key.
    """
    r = _Reader(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"population {source}: not valid TOML: {exc}") from exc
    r.unknown(doc, _TOP_KEYS, "")
    listeners = r.integer(doc, "listeners", "", lo=1)
    adversarial_share = r.number(doc, "adversarial_share", "", 0.10, 0.0, 1.0)
    adv = doc.get("adversaries", {"max_min_listen": 0.5, "random": 0.25, "min_listen": 0.25})
    if not isinstance(adv, dict):
        raise r.fail("adversaries", "must be a table of kind = share")
    adversaries = []
    for kind in adv:
        if kind not in ADVERSARIAL_KINDS:
            raise r.fail(f"adversaries.{kind}", f"unknown kind (known: {', '.join(ADVERSARIAL_KINDS)})")
        adversaries.append((kind, r.number(adv, kind, "adversaries.", lo=0.0)))
    if adversarial_share > 0 and sum(s for _, s in adversaries) <= 0:
        raise r.fail("adversaries", "shares must not all be zero when adversarial_share > 0")
    groups_raw = doc.get("groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise r.fail("groups", "at least one [[groups]] table is required")
    groups = []
    for i, g, path in r.tables(groups_raw, _GROUP_KEYS, "groups"):
        genres = g.get("genres", [])
        if not isinstance(genres, list) or not all(isinstance(x, str) for x in genres):
            raise r.fail(path + "genres", f"{genres!r} must be a list of genre names")
        prefs_raw = g.get("preferences", [])
        if not isinstance(prefs_raw, list) or not prefs_raw:
            raise r.fail(path + "preferences", "at least one [[groups.preferences]] is required")
        prefs = []
        for _, p, ppath in r.tables(prefs_raw, _PREF_KEYS, f"{path}preferences"):
            feature = p.get("feature")
            if feature not in FEATURE_NAMES:
                raise r.fail(ppath + "feature", f"{feature!r} is not one of {', '.join(FEATURE_NAMES)}")
            target = p.get("target", "songs")
            if target != "songs":
                target = r.number(p, "target", ppath)
            shape = p.get("shape", "peak")
            if shape not in ("peak", "below", "above"):
                raise r.fail(ppath + "shape", f"{shape!r} must be peak, below or above")
            prefs.append(PreferenceSpec(
                feature=feature, target=target, shape=shape,
                offset=r.range(p, "offset", ppath, 0.0),
                width=r.range(p, "width", ppath, None, lo=1e-6),
                weight=r.range(p, "weight", ppath, 1.0, lo=0.0),
            ))
        groups.append(GroupSpec(
            name=str(g.get("name", f"group{i}")),
            share=r.number(g, "share", path, 1.0, lo=0.0),
            genres=tuple(genres),
            bias_sd=r.number(g, "bias_sd", path, 0.3, lo=0.0),
            noise=r.range(g, "noise", path, 0.3, lo=0.0),
            skip_below=r.range(g, "skip_below", path, 0.3, 0.0, 1.0),
            seek_probability=r.range(g, "seek_probability", path, 0.2, 0.0, 1.0),
            replay_probability=r.range(g, "replay_probability", path, 0.1, 0.0, 1.0),
            preferences=tuple(prefs),
        ))
    if sum(g.share for g in groups) <= 0:
        raise r.fail("groups", "shares must not all be zero")
    closeness = doc.get("closeness")
    return Population(
        name=str(doc.get("name", Path(source).stem)),
        description=str(doc.get("description", "")),
        listeners=listeners,
        adversarial_share=adversarial_share,
        requests_per_round=r.integer(doc, "requests_per_round", "", lo=1),
        songs_per_listener=r.integer(doc, "songs_per_listener", "", 2, lo=1),
        blend_share=r.number(doc, "blend_share", "", 0.0, 0.0, 1.0),
        closeness=None if closeness is None else r.number(doc, "closeness", "", lo=0.0, hi=1.0),
        adversaries=tuple(adversaries),
        groups=tuple(groups),
        source=source,
    )


def load_population(path: str | Path) -> Population:
    """Read a population file; a bare name (``"tiny"``) means a shipped population.

    Raises
    ------
    InvalidInput
        The file does not exist or does not parse (see :func:`parse_population`).
    """
    p = Path(path)
    if not p.exists() and p.suffix == "" and (POPULATIONS_DIR / f"{p.name}.toml").is_file():
        p = POPULATIONS_DIR / f"{p.name}.toml"
    if not p.is_file():
        shipped = ", ".join(sorted(x.stem for x in POPULATIONS_DIR.glob("*.toml")))
        raise InvalidInput(f"population file {str(path)!r} does not exist (shipped: {shipped})")
    return parse_population(p.read_text(encoding="utf-8"), source=str(p))


def _draw(rng: np.random.Generator, r: Range) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def _shares(rng: np.random.Generator, n: int, items: Sequence[tuple[str, float]]) -> list[str]:
    """``n`` labels in proportion to the shares (largest remainder), in a random order."""
    if n == 0:
        return []
    total = sum(s for _, s in items)
    exact = [n * s / total for _, s in items]
    counts = [int(math.floor(x)) for x in exact]
    for k in sorted(range(len(items)), key=lambda k: -(exact[k] - counts[k]))[: n - sum(counts)]:
        counts[k] += 1
    labels = [name for (name, _), c in zip(items, counts, strict=True) for _ in range(c)]
    return [labels[i] for i in rng.permutation(len(labels))]


def draw_listeners(
    population: Population, songs: Sequence[SeedSong], rng: np.random.Generator
) -> list[ListenerSpec]:
    """Draw the population's listeners: kinds, groups, tastes, biases and seed songs.

    Parameters
    ----------
    population : Population
    songs : sequence of SeedSong
        The pool of seed songs (a listener takes ``songs_per_listener`` of its group's
        genres, or of any genre when none match).
    rng : np.random.Generator

    Returns
    -------
    list of ListenerSpec
        Named ``listener-000`` …, in a fixed order.
    """
    if not songs:
        raise InvalidInput("no seed songs to give the simulated listeners")
    n_adv = population.n_adversarial
    kinds = _shares(rng, n_adv, population.adversaries) + ["honest"] * (population.listeners - n_adv)
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    group_labels = _shares(rng, population.listeners, [(g.name, g.share) for g in population.groups])
    by_name = {g.name: g for g in population.groups}
    out = []
    for i, (kind, gname) in enumerate(zip(kinds, group_labels, strict=True)):
        group = by_name[gname]
        pool = [s for s in songs if not group.genres or s.genre in group.genres] or list(songs)
        k = min(population.songs_per_listener, len(pool))
        chosen = [pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False))]
        own = AudioFeatures.mean([s.features for s in chosen])
        prefs = []
        for p in group.preferences:
            base = own.get(p.feature) if p.target == "songs" else float(p.target)
            prefs.append(Preference(
                feature=p.feature, target=base + _draw(rng, p.offset), width=_draw(rng, p.width),
                weight=_draw(rng, p.weight), shape=p.shape,  # type: ignore[arg-type]
            ))
        out.append(ListenerSpec(
            name=f"listener-{i:03d}",
            kind=kind,
            group=group.name if kind == "honest" else f"adversary:{kind}",
            taste=Taste(tuple(prefs)),
            bias=float(rng.normal(0.0, group.bias_sd)) if group.bias_sd > 0 else 0.0,
            noise=_draw(rng, group.noise),
            skip_below=_draw(rng, group.skip_below),
            seek_probability=_draw(rng, group.seek_probability),
            replay_probability=_draw(rng, group.replay_probability),
            fixed_stars=float(rng.integers(2, 11)) / 2,
            songs=tuple(s.title for s in chosen),
        ))
    return out
