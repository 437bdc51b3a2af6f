"""Population files: the shipped ones parse, draws follow the shares, errors name the key."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.sim.features import AudioFeatures
from encore.sim.population import (
    POPULATIONS_DIR,
    SeedSong,
    draw_listeners,
    load_population,
    parse_population,
)

MINIMAL = """
listeners = 20
adversarial_share = 0.2
requests_per_round = 3
[adversaries]
max_min_listen = 1
random = 1
[[groups]]
name = "a"
share = 3
genres = ["x"]
[[groups.preferences]]
feature = "brightness"
width = 0.5
[[groups]]
name = "b"
share = 1
genres = ["y"]
noise = [0.1, 0.2]
[[groups.preferences]]
feature = "noisiness"
target = -2.5
shape = "below"
width = 0.3
"""


def pool() -> list[SeedSong]:
    def song(title: str, genre: str, b: float) -> SeedSong:
        return SeedSong(title, genre, b"", f"{title}.flac",
                        AudioFeatures(brightness=b, density=1.0, noisiness=-3.0, loudness=-15.0))
    return [song("x1", "x", 9.0), song("x2", "x", 10.0), song("x3", "x", 11.0),
            song("y1", "y", 12.0), song("y2", "y", 12.5)]


@pytest.mark.parametrize("path", sorted(POPULATIONS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_populations_parse(path: Path) -> None:
    pop = load_population(path)
    assert pop.listeners >= 1 and pop.groups
    assert load_population(path.stem) == pop  # a bare name finds the shipped file


def test_draw_follows_shares_and_genres() -> None:
    pop = parse_population(MINIMAL, source="mini.toml")
    listeners = draw_listeners(pop, pool(), np.random.default_rng(0))
    kinds = Counter(s.kind for s in listeners)
    assert kinds == {"honest": 16, "max_min_listen": 2, "random": 2}
    names = [s.name for s in listeners]
    assert len(set(names)) == 20
    for s in listeners:
        assert len(s.songs) == 2
        if s.group == "a":
            assert all(t.startswith("x") for t in s.songs)
            # "songs" target: the mean brightness of the listener's own songs
            own = np.mean([{"x1": 9.0, "x2": 10.0, "x3": 11.0}[t] for t in s.songs])
            assert s.taste.preferences[0].target == pytest.approx(own)
        elif s.group == "b":
            assert set(s.songs) == {"y1", "y2"}
            assert 0.1 <= s.noise <= 0.2
            assert s.taste.preferences[0].target == -2.5
    honest_groups = Counter(s.group for s in listeners if s.kind == "honest")
    assert set(honest_groups) <= {"a", "b"}


def test_draw_is_deterministic_for_a_seed() -> None:
    pop = parse_population(MINIMAL)
    a = draw_listeners(pop, pool(), np.random.default_rng(5))
    b = draw_listeners(pop, pool(), np.random.default_rng(5))
    c = draw_listeners(pop, pool(), np.random.default_rng(6))
    assert a == b and a != c


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("listeners = 20", "listeners = 0"), "listeners: 0 must be an integer >= 1"),
        (("adversarial_share = 0.2", "adversarial_share = 1.5"), "adversarial_share: 1.5 must be between"),
        (("random = 1", "lazy = 1"), "adversaries.lazy: unknown kind"),
        (('feature = "brightness"', 'feature = "timbre"'), r"groups\[0\].preferences\[0\].feature: 'timbre'"),
        (('shape = "below"', 'shape = "under"'), r"groups\[1\].preferences\[0\].shape: 'under'"),
        (("noise = [0.1, 0.2]", "noise = [0.3, 0.2]"), r"groups\[1\].noise: \[0.3, 0.2\]: lo must not exceed hi"),
        (("width = 0.5", "width = -1"), r"groups\[0\].preferences\[0\].width: -1"),
        (("requests_per_round = 3", "request_per_round = 3"), "request_per_round: unknown key"),
        (("requests_per_round = 3", "requests_per_round = 3\nwat = ["), "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_key(change: tuple[str, str], message: str) -> None:
    text = MINIMAL.replace(*change)
    with pytest.raises(InvalidInput, match=message) as info:
        parse_population(text, source="bad.toml")
    assert "bad.toml" in str(info.value)


def test_missing_groups_and_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="groups: at least one"):
        parse_population("listeners = 3\nrequests_per_round = 1\n", source="g.toml")
    with pytest.raises(InvalidInput, match="does not exist.*shipped: .*tiny"):
        load_population(tmp_path / "nope.toml")
