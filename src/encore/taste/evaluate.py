"""Held-out evaluation of the taste model against three baselines, in one run.

The split is by time: the model is fitted on the earlier ratings and judged on the later
ones, as it is used (it only ever predicts ratings it has not seen). Figures:

- **same-listener pairwise accuracy**: over every pair of held-out ratings by the same
  listener with different stars, the share the predictions order the same way (a tie in
  the predictions counts half). This is what best-of-n needs: rank candidates for *one*
  listener; rater bias cancels.
- **Spearman ρ** between predictions and ratings, pooled, and the mean of the per-listener
  ρ (listeners with ≥ 3 held-out ratings of at least two values).

Baselines, fitted on the same training part: the global mean (a constant: pairwise 0.5),
the mean rating of the request's input song(s) (the global mean for an unseen song), and
the similarity of the clip to the listener's own songs (cosine of the embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from encore.errors import InvalidInput
from encore.taste.features import ClipFeatures, ListenerProfile
from encore.taste.model import TasteConfig, TasteModel, TasteRatings


@dataclass(frozen=True)
class Scores:
    """One method's held-out figures."""

    method: str
    pairwise_accuracy: float
    n_pairs: int
    spearman: float
    listener_spearman: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {"method": self.method, "pairwise_accuracy": self.pairwise_accuracy,
                "n_pairs": self.n_pairs, "spearman": self.spearman,
                "listener_spearman": self.listener_spearman}


@dataclass(frozen=True)
class Evaluation:
    n_train: int
    n_test: int
    n_listeners: int
    scores: tuple[Scores, ...]

    def as_dict(self) -> dict[str, object]:
        return {"n_train": self.n_train, "n_test": self.n_test, "n_listeners": self.n_listeners,
                "scores": [s.as_dict() for s in self.scores]}

    def best_baseline(self) -> Scores:
        return max(self.scores[1:], key=lambda s: s.pairwise_accuracy)


def time_split(ratings: TasteRatings, test_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(train, test)``: the last ``test_share`` of the ratings by time are the test."""
    if not 0.0 < test_share < 1.0:
        raise InvalidInput(f"test_share={test_share!r} must be between 0 and 1")
    n = len(ratings)
    order = np.argsort(ratings.order, kind="stable")
    n_test = int(round(n * test_share))
    test = np.zeros(n, dtype=bool)
    test[order[n - n_test:]] = True
    return ~test, test


def pairwise_accuracy(
    listener_ids: np.ndarray, truth: np.ndarray, predicted: np.ndarray
) -> tuple[float, int]:
    """Same-listener pairwise accuracy and the number of pairs (see the module docstring)."""
    hits, pairs = 0.0, 0
    for u in np.unique(listener_ids):
        rows = np.flatnonzero(listener_ids == u)
        if len(rows) < 2:
            continue
        t = truth[rows]
        p = predicted[rows]
        dt = np.sign(t[:, None] - t[None, :])
        dp = np.sign(p[:, None] - p[None, :])
        upper = np.triu(np.ones_like(dt, dtype=bool), 1) & (dt != 0)
        n = int(upper.sum())
        if n == 0:
            continue
        agree = (dt == dp) & upper
        ties = (dp == 0) & upper
        hits += float(agree.sum()) + 0.5 * float(ties.sum())
        pairs += n
    return (hits / pairs if pairs else float("nan")), pairs


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def _scores(method: str, ratings: TasteRatings, predicted: np.ndarray) -> Scores:
    acc, n = pairwise_accuracy(ratings.listener_ids, ratings.stars, predicted)
    per = []
    for u in np.unique(ratings.listener_ids):
        rows = ratings.listener_ids == u
        if rows.sum() >= 3 and np.ptp(ratings.stars[rows]) > 0:
            per.append(_spearman(ratings.stars[rows], predicted[rows]))
    return Scores(method, acc, n, _spearman(ratings.stars, predicted),
                  float(np.mean(per)) if per else 0.0)


def predict_ratings(
    model: TasteModel, ratings: TasteRatings, clips: Mapping[int, ClipFeatures],
    profiles: Mapping[int, ListenerProfile],
) -> np.ndarray:
    """The model's predicted stars for every rating (one call per listener)."""
    out = np.zeros(len(ratings))
    for u in np.unique(ratings.listener_ids):
        rows = np.flatnonzero(ratings.listener_ids == u)
        feats = [clips[int(c)] for c in ratings.clip_ids[rows]]
        stars, _ = model.predict(int(u), feats, profiles.get(int(u), ListenerProfile(None, None)))
        out[rows] = stars
    return out


def evaluate(
    ratings: TasteRatings,
    clips: Mapping[int, ClipFeatures],
    profiles: Mapping[int, ListenerProfile],
    *,
    test_share: float = 0.2,
    config: TasteConfig | None = None,
) -> Evaluation:
    """Fit on the earlier ratings, score the later ones; the model and three baselines."""
    keep = np.array([c in clips for c in ratings.clip_ids], dtype=bool) & (ratings.weights > 0)
    data = ratings.subset(keep)
    train_mask, test_mask = time_split(data, test_share)
    train, test = data.subset(train_mask), data.subset(test_mask)
    if len(train) < 2 or len(test) < 2:
        raise InvalidInput(f"too few ratings to evaluate ({len(data)} usable)")
    model = TasteModel.fit(train, clips, profiles, config)
    predicted = predict_ratings(model, test, clips, profiles)

    mu = float(np.average(train.stars, weights=train.weights))
    song_mean: dict[object, float] = {}
    for key in set(train.song_keys.tolist()):
        rows = train.song_keys == key
        song_mean[key] = float(np.average(train.stars[rows], weights=train.weights[rows]))
    by_song = np.array([song_mean.get(k, mu) for k in test.song_keys.tolist()])
    closeness = np.zeros(len(test))
    for i, (u, c) in enumerate(zip(test.listener_ids, test.clip_ids, strict=True)):
        emb = profiles.get(int(u), ListenerProfile(None, None)).embedding
        if emb is not None and np.linalg.norm(emb) > 0:
            closeness[i] = float(clips[int(c)].embedding @ emb / np.linalg.norm(emb))
    scores = (
        _scores("taste model", test, predicted),
        _scores("global mean", test, np.full(len(test), mu)),
        _scores("input song's mean rating", test, by_song),
        _scores("similarity to own songs", test, closeness),
    )
    return Evaluation(len(train), len(test), len(np.unique(data.listener_ids)), scores)
