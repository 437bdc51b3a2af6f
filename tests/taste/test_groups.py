"""Taste groups recovered from a real taste model fitted on synthetic listeners whose groups
are known (tastes as in tests/taste/test_taste.py: a peak around one's own songs shifted by
an offset; a group shares its offsets, or its songs' region)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from encore.errors import InvalidInput
from encore.taste import ClipFeatures, ListenerProfile, TasteModel, TasteRatings
from encore.taste.features import N_DESCRIPTORS
from encore.taste.groups import TasteGroups, fit_taste_groups

D = N_DESCRIPTORS


def _world(seed, centres, offsets=None, per_group=12, per_listener=30):
    rng = np.random.default_rng(seed)
    clips, profiles, rows, truth = {}, {}, [], {}
    cid = u = 0
    for g, centre in enumerate(centres):
        off = offsets[g] if offsets is not None else np.zeros(2)
        for _ in range(per_group):
            song = centre + rng.normal(0, 0.4, D)
            profiles[u] = ListenerProfile(song, None)
            bias = rng.normal(0, 0.4)
            for _ in range(per_listener):
                d = song + rng.normal(0, 1.0, D)
                emb = rng.normal(0, 1, 8)
                clips[cid] = ClipFeatures(d, emb / np.linalg.norm(emb))
                appeal = (np.exp(-0.5 * ((d[0] - song[0] - off[0]) / 0.8) ** 2)
                          + 0.7 * np.exp(-0.5 * ((d[1] - song[1] - off[1]) / 1.0) ** 2)) / 1.7
                stars = np.clip(np.round((1 + 4 * appeal + bias + 0.3 * rng.normal()) * 2) / 2,
                                1, 5)
                rows.append((u, cid, stars))
                cid += 1
            truth[u] = g
            u += 1
    a = np.array(rows)
    ratings = TasteRatings(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2],
                           np.full(len(a), 0.5))
    return TasteModel.fit(ratings, clips, profiles), profiles, truth


def _ari(groups: TasteGroups, truth: dict[int, int]) -> float:
    ids = sorted(truth)
    return float(adjusted_rand_score([truth[u] for u in ids], [groups.group_of(u) for u in ids]))


SONGS3 = list(np.random.default_rng(7).normal(0, 2, (3, D)))
TASTE3 = ([np.zeros(D)] * 3, [np.array([1.5, 0.0]), np.array([-1.5, 0.0]), np.array([0.0, 1.5])])


def test_groups_by_songs_are_recovered_with_their_number():
    model, profiles, truth = _world(1, SONGS3)
    groups = fit_taste_groups(model, profiles, seed=0)
    assert groups.k == 3 and groups.structured
    assert _ari(groups, truth) >= 0.9
    assert sorted(groups.sizes, reverse=True) == groups.sizes and sum(groups.sizes) == 36


@pytest.mark.parametrize("world_seed", [1, 3])
def test_groups_by_taste_alone_are_recovered(world_seed):
    """Same songs' region for everyone: only the learned weights δ_u separate the groups."""
    model, profiles, truth = _world(world_seed, *TASTE3)
    groups = fit_taste_groups(model, profiles, seed=0)
    assert groups.k == 3 and groups.structured, (groups.bic, groups.silhouette)
    assert _ari(groups, truth) >= 0.9


def test_one_blob_gives_the_smallest_k_marked_unstructured():
    model, profiles, _ = _world(1, [np.zeros(D)], per_group=30)
    groups = fit_taste_groups(model, profiles, seed=0)
    assert groups.k == 2 and not groups.structured
    assert min(groups.bic, key=groups.bic.__getitem__) == 1


def test_deterministic_by_seed_and_json_round_trip():
    model, profiles, _ = _world(3, *TASTE3)
    a = fit_taste_groups(model, profiles, seed=4)
    b = fit_taste_groups(model, profiles, seed=4)
    assert a.to_json() == b.to_json()
    again = TasteGroups.from_json(a.to_json())
    assert again.to_json() == a.to_json()
    for u, prof in profiles.items():
        assert again.group_for(u, prof) == a.group_of(u)
        assert again.assign_from_songs(prof) == a.assign_from_songs(prof)


def test_new_and_thin_listeners_get_the_group_of_their_songs():
    model, profiles, truth = _world(1, SONGS3)
    groups = fit_taste_groups(model, profiles, seed=0)
    # a listener never rated: its songs near group g's region give g's listeners' group
    for g, centre in enumerate(SONGS3):
        members = [u for u, t in truth.items() if t == g]
        expected = groups.group_of(members[0])
        song = ListenerProfile(centre + 0.1, None)
        assert groups.assign_from_songs(song) == expected
        assert groups.group_for(10_000 + g, song) == expected
    assert groups.group_for(10_000, ListenerProfile(None, None)) is None


def test_listeners_with_too_few_ratings_are_assigned_from_songs():
    model, profiles, truth = _world(1, SONGS3)
    # three listeners of group 0 now count as having 3 ratings each
    full = fit_taste_groups(model, profiles, seed=0)
    for u in (0, 1, 2):
        model.listeners[u].n_ratings = 3
    groups = fit_taste_groups(model, profiles, seed=0, min_ratings=8)
    assert all(groups.sources[u] == "songs" for u in (0, 1, 2))
    assert all(groups.group_of(u) == groups.group_of(5) for u in (0, 1, 2))
    assert groups.sources[5] == "ratings" and full.sources[0] == "ratings"


def test_bad_input_is_refused():
    model, profiles, _ = _world(1, SONGS3, per_group=1)
    with pytest.raises(InvalidInput, match="need >= 6 listeners"):
        fit_taste_groups(model, profiles)
    model, profiles, _ = _world(1, SONGS3)
    with pytest.raises(InvalidInput, match="k_max"):
        fit_taste_groups(model, profiles, k_max=9)
    with pytest.raises(InvalidInput):
        fit_taste_groups(model, profiles, min_ratings=0)
    groups = fit_taste_groups(model, profiles)
    with pytest.raises(InvalidInput, match="descriptors"):
        groups.assign_from_songs(ListenerProfile(np.zeros(3), None))
    with pytest.raises(InvalidInput):
        groups.members(groups.k)
    for bad in ("not json", "[1]", '{"format": "other"}', groups.to_json().replace('"k": 3', '"k": 12')):
        with pytest.raises(InvalidInput):
            TasteGroups.from_json(bad)
