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


NEW_FEATURES = {"pitch", "tempo", "dynamic_range", "harmonicity"}


def full_pool(genres: set[str], per_genre: int = 3, seed: int = 0) -> list[SeedSong]:
    """Songs of every genre asked for (or of two made-up ones), with all features set."""
    rng = np.random.default_rng(seed)
    out = []
    for genre in sorted(genres) or ["g1", "g2"]:
        for k in range(per_genre):
            f = AudioFeatures(
                brightness=float(rng.normal(10.4, 0.4)), density=float(rng.normal(1.6, 0.6)),
                noisiness=float(rng.normal(-3.6, 0.6)), loudness=float(rng.normal(-15, 3)),
                pitch=float(rng.normal(7.4, 1.0)), tempo=float(rng.normal(6.9, 0.25)),
                dynamic_range=float(rng.uniform(2, 14)), harmonicity=float(rng.normal(8, 5)),
            )
            out.append(SeedSong(f"{genre}-{k}", genre, b"", f"{genre}-{k}.flac", f))
    return out


@pytest.mark.parametrize("path", sorted(POPULATIONS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_populations_draw_listeners_whose_tastes_can_judge_clips(path: Path) -> None:
    pop = load_population(path)
    songs = full_pool(pop.genres())
    listeners = draw_listeners(pop, songs, np.random.default_rng(0))
    assert len(listeners) == pop.listeners
    assert sum(s.adversarial for s in listeners) == pop.n_adversarial
    clips = full_pool(set(), per_genre=20, seed=1)
    for s in listeners:
        assert len(s.songs) == pop.songs_per_listener
        for c in clips:
            assert 0.0 <= s.taste.appeal(c.features) <= 1.0


def path_text(name: str) -> str:
    return (POPULATIONS_DIR / f"{name}.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["second", "opposed"])
def test_new_populations_are_the_full_pilots_size_with_every_adversary(name: str) -> None:
    pop = load_population(name)
    assert pop.listeners == 50 and pop.n_adversarial == 5
    assert pop.listeners * pop.requests_per_round <= 500 and pop.requests_per_round == 10
    assert pop.songs_per_listener == 2
    listeners = draw_listeners(pop, full_pool(pop.genres()), np.random.default_rng(3))
    assert {s.kind for s in listeners if s.adversarial} == {"max_min_listen", "random", "min_listen"}
    header = path_text(name).split("\nname")[0]
    assert "2026-12-04" in header and "before any pilot" in header


def test_the_second_population_has_other_groups_judging_the_new_features() -> None:
    second, default = load_population("second"), load_population("default")
    assert not {g.name for g in second.groups} & {g.name for g in default.groups}
    assert {g.genres for g in second.groups}.isdisjoint({g.genres for g in default.groups})
    for g in second.groups:
        assert {p.feature for p in g.preferences} & NEW_FEATURES, g.name
    # most of the weight of every group is on features the default population never used
    for g in second.groups:
        new = sum(p.weight[1] for p in g.preferences if p.feature in NEW_FEATURES)
        assert new > 0.5 * sum(p.weight[1] for p in g.preferences), g.name


def test_the_opposed_population_wants_opposite_things_of_the_same_clips() -> None:
    pop = load_population("opposed")
    a, b = pop.groups
    assert len(pop.groups) == 2 and a.share == b.share and a.genres == b.genres == ()
    for g in pop.groups:
        assert g.bias_sd == 0.6 and g.noise == (0.3, 0.7)
    (fa, sa), (fb, sb) = ((g.preferences[0].feature, g.preferences[0].shape) for g in pop.groups)
    assert fa == fb and {sa, sb} == {"above", "below"}
    listeners = [s for s in draw_listeners(pop, full_pool(set()), np.random.default_rng(0))
                 if not s.adversarial]
    clips = full_pool(set(), per_genre=30, seed=2)
    appeal = {g.name: np.mean([[s.taste.appeal(c.features) for c in clips]
                               for s in listeners if s.group == g.name], axis=0)
              for g in pop.groups}
    # the clips one group likes, the other dislikes
    assert np.corrcoef(appeal[a.name], appeal[b.name])[0, 1] < -0.3
