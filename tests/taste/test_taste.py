"""The taste model on seeded synthetic listeners whose hidden taste is known."""

from __future__ import annotations

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.taste import (
    ClipFeatures,
    ListenerProfile,
    TasteModel,
    TasteRatings,
    evaluate,
    pairwise_accuracy,
    select,
)
from encore.taste.features import N_DESCRIPTORS


def _world(seed: int, n_listeners: int = 30, per_listener: int = 40, noise: float = 0.3):
    """Clips with random descriptors/embeddings; each listener likes clips near its songs
    (a personal offset and width on two descriptors) and dislikes a high third one."""
    rng = np.random.default_rng(seed)
    clips: dict[int, ClipFeatures] = {}
    profiles: dict[int, ListenerProfile] = {}
    rows = []
    cid = 0
    for u in range(n_listeners):
        song = rng.normal(0, 1, N_DESCRIPTORS)
        emb = rng.normal(0, 1, 16)
        emb /= np.linalg.norm(emb)
        profiles[u] = ListenerProfile(song, emb)
        offset = rng.normal(0, 0.5, 2)
        bias = rng.normal(0, 0.4)
        for k in range(per_listener):
            d = song + rng.normal(0, 1.0, N_DESCRIPTORS)
            e = emb + rng.normal(0, 0.5, 16)
            e /= np.linalg.norm(e)
            clips[cid] = ClipFeatures(d, e)
            appeal = (np.exp(-0.5 * ((d[0] - song[0] - offset[0]) / 0.8) ** 2)
                      + 0.7 * np.exp(-0.5 * ((d[1] - song[1] - offset[1]) / 1.0) ** 2)
                      + 1.5 / (1 + np.exp((d[2] - song[2] - 0.5) / 0.3))) / 3.2
            stars = np.clip(np.round((1 + 4 * appeal + bias + noise * rng.normal()) * 2) / 2, 1, 5)
            listened = float(np.clip(appeal + rng.normal(0, 0.1), 0.05, 1))
            rows.append((u, cid, stars, listened, k * n_listeners + u, appeal))
            cid += 1
    a = np.array(rows, dtype=float)
    ratings = TasteRatings(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2], a[:, 3],
                           order=a[:, 4], song_keys=a[:, 0].astype(int))
    return ratings, clips, profiles, a[:, 5]


def test_taste_model_beats_every_baseline_on_held_out_ratings():
    ratings, clips, profiles, _ = _world(0)
    ev = evaluate(ratings, clips, profiles, test_share=0.25)
    model, *baselines = ev.scores
    assert model.method == "taste model"
    assert model.pairwise_accuracy > 0.70, ev.as_dict()
    for b in baselines:
        assert model.pairwise_accuracy > b.pairwise_accuracy + 0.05, ev.as_dict()
    # the constant baseline cannot order anything
    assert baselines[0].pairwise_accuracy == pytest.approx(0.5)


def test_selection_by_the_model_raises_the_hidden_appeal_of_what_is_served():
    ratings, clips, profiles, appeal = _world(1)
    train = ratings.subset(ratings.order < np.quantile(ratings.order, 0.75))
    model = TasteModel.fit(train, clips, profiles)
    rng = np.random.default_rng(5)
    gains = []
    for u in range(30):
        test_rows = np.flatnonzero((ratings.listener_ids == u)
                                   & (ratings.order >= np.quantile(ratings.order, 0.75)))
        for _ in range(20):
            pick = rng.choice(test_rows, size=4, replace=False)
            stars, _ = model.predict(u, [clips[int(ratings.clip_ids[i])] for i in pick],
                                     profiles[u])
            gains.append(appeal[pick[int(np.argmax(stars))]] - appeal[pick].mean())
    assert np.mean(gains) > 0.05, np.mean(gains)


def test_new_listener_gets_the_global_model_and_round_trip_is_exact():
    ratings, clips, profiles, _ = _world(2, n_listeners=10, per_listener=20)
    model = TasteModel.fit(ratings, clips, profiles)
    some = [clips[i] for i in range(5)]
    again = TasteModel.from_bytes(model.to_bytes())
    for u in (0, 3, 99):
        prof = profiles.get(u, ListenerProfile(None, None))
        a = model.predict(u, some, prof)
        b = again.predict(u, some, prof)
        np.testing.assert_allclose(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1])
    # an unseen listener is predicted around the global mean, not around anyone's bias
    unseen, _ = model.predict(99, some, ListenerProfile(None, None))
    assert abs(float(np.mean(unseen)) - model.global_mean_r) < 1.0
    with pytest.raises(InvalidInput):
        TasteModel.from_bytes(b"not a model")


def test_weights_exclude_flagged_raters():
    ratings, clips, profiles, _ = _world(3, n_listeners=6, per_listener=15)
    w = np.where(ratings.listener_ids == 0, 0.0, 1.0)
    weighted = TasteRatings(ratings.listener_ids, ratings.clip_ids, ratings.stars,
                            ratings.listened, weights=w)
    model = TasteModel.fit(weighted, clips, profiles)
    assert 0 not in model.listeners and model.n_ratings == int(w.sum())


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput):
        TasteRatings([1], [1], [7.0], [0.5])
    with pytest.raises(InvalidInput):
        TasteRatings([1, 2], [1], [3.0], [0.5])
    with pytest.raises(InvalidInput):
        TasteModel.fit(TasteRatings([1], [1], [3.0], [0.5]), {}, {})


def test_pairwise_accuracy_counts_ties_half():
    acc, n = pairwise_accuracy(np.array([1, 1, 1]), np.array([1.0, 2.0, 3.0]),
                               np.array([0.0, 0.0, 1.0]))
    assert n == 3 and acc == pytest.approx((0.5 + 1 + 1) / 3)


def test_select_propensities_are_the_policy_probabilities():
    rng = np.random.default_rng(0)
    scores = np.array([0.1, 0.9, 0.3, 0.2])
    counts = np.zeros(4)
    props = {}
    for _ in range(20000):
        s = select(scores, 4, 0.2, rng)
        counts[s.index] += 1
        props[s.index] = s.propensity
    freq = counts / counts.sum()
    for i in range(4):
        assert freq[i] == pytest.approx(props[i], abs=0.01)
    assert props[1] == pytest.approx(0.8 + 0.05)
    assert select(None, 4, 0.2, rng).mode == "explore"
    assert select(np.array([1.0]), 1, 0.2, rng).mode == "single"
    with pytest.raises(InvalidInput):
        select(np.array([1.0, np.nan]), 2, 0.2, rng)
