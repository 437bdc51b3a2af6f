"""Taste groups: listeners clustered by what the taste model learned about them.

A listener's **taste vector** has two blocks:

- its own weights ``δ_u`` on the local features ``d`` and ``d²`` (:mod:`encore.taste.model`;
  the memory weights are left out: they say how much a listener's history predicts, not
  what it likes) — how it wants a clip to differ from its own songs;
- its songs' standardised descriptors ``z_songs`` — where it starts from (a listener of
  chorales who wants "a bit brighter" is not one of fiddle tunes who wants the same).

Every column is centred; each block is then divided by the square root of its total
variance, so the two blocks weigh the same and the columns of a block keep their relative
sizes (per-column standardisation would blow up weights nobody's taste uses into unit noise).
The vectors are projected on their first ``n_components`` (2) principal components. Whether
there is group structure at all is decided by BIC: a Gaussian mixture (diagonal covariances,
seeded restarts) is fitted for every k from 1 to ``k_max``; when k = 1 has the lowest BIC the
data are one blob, the groups are the smallest allowed number (``K_MIN`` = 2, the issue's
range is 2–8) and :attr:`TasteGroups.structured` is False — the two groups then split one
blob and conditioning on them is not expected to help. Otherwise k is the one (2..``k_max``)
whose k-means partition has the highest silhouette, and the groups are that partition
(k-means recovers separated groups more reliably than the mixture's own labels on a few
dozen listeners; two components did better than three on the synthetic groups of
tests/taste/test_groups.py, 20–30 ratings per listener, ARI 0.8–1.0 against 0.6–1.0).

Only listeners with at least ``min_ratings`` ratings are clustered: with fewer, the ridge
penalty keeps ``δ_u ≈ 0`` and the vector says nothing. Such a listener — and any listener
the model has not seen — gets the group predicted from its songs (a logistic regression on
``z_songs`` fitted on the clustered listeners); one without analysed songs gets no group
(``None``: serve it unconditioned). Groups are numbered by size, largest first.

:class:`TasteGroups` is plain data and round-trips through JSON (:meth:`TasteGroups.to_json`),
so it is stored next to the taste model it was fitted from (:mod:`encore.services.taste`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from encore.errors import InvalidInput
from encore.taste.features import N_DESCRIPTORS, ListenerProfile
from encore.taste.model import TasteModel

K_MIN = 2
K_MAX = 8
FORMAT = "encore.taste_groups/1"

Source = Literal["ratings", "songs"]


@dataclass(frozen=True)
class TasteGroups:
    """Listeners' taste groups (build with :func:`fit_taste_groups`).

    Attributes
    ----------
    k : int
        Number of groups, ``K_MIN..K_MAX``; group ids are ``0..k-1``, largest first.
    structured : bool
        False when BIC preferred a single component (``k`` is then ``K_MIN``).
    assignments : dict[int, int]
        Group of every listener known at fit time.
    sources : dict[int, str]
        How each was assigned: ``"ratings"`` (clustered) or ``"songs"`` (predicted).
    bic : dict[int, float]
        BIC of the diagonal Gaussian mixture for each k tried (1 included): decides
        ``structured``.
    silhouette : dict[int, float]
        Silhouette of the k-means partition for each k tried: the highest picks ``k``.
    song_mean, song_scale : np.ndarray [shape=(D,)]
        Standardisation of song descriptors for :meth:`assign_from_songs`.
    song_coef : np.ndarray [shape=(k, D)], song_intercept : np.ndarray [shape=(k,)]
        Linear scores of the songs classifier (the highest wins).
    min_ratings, seed : int
        The fit's settings.
    """

    k: int
    structured: bool
    assignments: dict[int, int]
    sources: dict[int, str]
    bic: dict[int, float]
    silhouette: dict[int, float]
    song_mean: np.ndarray
    song_scale: np.ndarray
    song_coef: np.ndarray
    song_intercept: np.ndarray
    min_ratings: int
    seed: int

    @property
    def sizes(self) -> list[int]:
        """Listeners per group (fit time, both sources)."""
        return [int(c) for c in np.bincount(
            np.array(list(self.assignments.values()), dtype=np.int64), minlength=self.k)]

    # --- lookup -------------------------------------------------------------------------

    def group_of(self, listener_id: int) -> int | None:
        """The group assigned at fit time, or None for a listener the fit did not know."""
        return self.assignments.get(int(listener_id))

    def assign_from_songs(self, profile: ListenerProfile) -> int | None:
        """The group predicted from a listener's songs (None without analysed songs)."""
        if profile.descriptors is None:
            return None
        d = np.asarray(profile.descriptors, dtype=np.float64).reshape(-1)
        if d.shape[0] != self.song_mean.shape[0]:
            raise InvalidInput(
                f"song descriptors have {d.shape[0]} values, the groups expect "
                f"{self.song_mean.shape[0]}")
        z = np.nan_to_num((d - self.song_mean) / self.song_scale)
        return int(np.argmax(self.song_coef @ z + self.song_intercept))

    def group_for(self, listener_id: int, profile: ListenerProfile) -> int | None:
        """The group to serve a listener with: its fitted group, else the one its songs
        predict, else None (no rating and no analysed song)."""
        known = self.group_of(listener_id)
        return known if known is not None else self.assign_from_songs(profile)

    def members(self, group: int) -> list[int]:
        """Listeners assigned to ``group`` at fit time, sorted."""
        if not 0 <= int(group) < self.k:
            raise InvalidInput(f"group {group} does not exist (k = {self.k})")
        return sorted(u for u, g in self.assignments.items() if g == int(group))

    # --- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "k": self.k, "structured": self.structured,
            "assignments": {str(u): g for u, g in sorted(self.assignments.items())},
            "sources": {str(u): s for u, s in sorted(self.sources.items())},
            "bic": {str(k): v for k, v in sorted(self.bic.items())},
            "silhouette": {str(k): v for k, v in sorted(self.silhouette.items())},
            "song_mean": self.song_mean.tolist(), "song_scale": self.song_scale.tolist(),
            "song_coef": self.song_coef.tolist(),
            "song_intercept": self.song_intercept.tolist(),
            "min_ratings": self.min_ratings, "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TasteGroups:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            k = int(data["k"])
            coef = np.asarray(data["song_coef"], dtype=np.float64).reshape(k, -1)
            groups = cls(
                k=k, structured=bool(data["structured"]),
                assignments={int(u): int(g) for u, g in data["assignments"].items()},
                sources={int(u): str(s) for u, s in data["sources"].items()},
                bic={int(n): float(v) for n, v in data["bic"].items()},
                silhouette={int(n): float(v) for n, v in data["silhouette"].items()},
                song_mean=np.asarray(data["song_mean"], dtype=np.float64),
                song_scale=np.asarray(data["song_scale"], dtype=np.float64),
                song_coef=coef,
                song_intercept=np.asarray(data["song_intercept"], dtype=np.float64).reshape(k),
                min_ratings=int(data["min_ratings"]), seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not a taste-groups record: {exc}") from exc
        if not K_MIN <= groups.k <= K_MAX or any(
                not 0 <= g < groups.k for g in groups.assignments.values()):
            raise InvalidInput(f"not a taste-groups record: k = {groups.k} or a group id "
                               "out of range")
        return groups

    @classmethod
    def from_json(cls, text: str | bytes) -> TasteGroups:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"not a taste-groups record: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("not a taste-groups record: not a JSON object")
        return cls.from_dict(data)


def taste_vectors(
    model: TasteModel, profiles: Mapping[int, ListenerProfile], listener_ids: list[int]
) -> np.ndarray:
    """Raw taste vectors ``[δ_u on d and d², z_songs]`` (``(n, 3D)``); a listener without
    analysed songs gets the mean ``z_songs`` of the others (0 after centring)."""
    n_d = 2 * N_DESCRIPTORS
    if model.n_local < n_d:
        raise InvalidInput(f"taste model has {model.n_local} local weights, expected >= {n_d}")
    deltas = np.stack([model.listeners[u].delta_r[:n_d] for u in listener_ids])
    songs = np.full((len(listener_ids), N_DESCRIPTORS), np.nan)
    for i, u in enumerate(listener_ids):
        prof = profiles.get(u)
        if prof is not None and prof.descriptors is not None:
            songs[i] = model.scaler(prof.descriptors)
    if np.all(np.isnan(songs)):
        songs[:] = 0.0
    else:
        songs = np.where(np.isnan(songs), np.nanmean(songs, axis=0), songs)
    return np.hstack([deltas, songs])


def _standardise_blocks(x: np.ndarray, blocks: list[slice]) -> np.ndarray:
    x = x - x.mean(axis=0)
    out = np.zeros_like(x)
    for b in blocks:
        total = float(np.sqrt(np.sum(x[:, b].var(axis=0))))
        out[:, b] = x[:, b] / total if total > 1e-12 else 0.0
    return out


def fit_taste_groups(
    model: TasteModel,
    profiles: Mapping[int, ListenerProfile],
    *,
    min_ratings: int = 8,
    k_max: int = K_MAX,
    min_group_size: int = 3,
    n_components: int = 2,
    seed: int = 0,
    n_init: int = 5,
) -> TasteGroups:
    """Cluster the listeners of a fitted taste model into taste groups.

    Parameters
    ----------
    model : TasteModel
        The fitted model; its listeners with ``>= min_ratings`` ratings are clustered.
    profiles : mapping listener id -> ListenerProfile
        Their songs (for the song block and the songs classifier); listeners missing here
        count as having no analysed song.
    min_ratings : int
        Ratings a listener needs to be clustered on its own parameters.
    k_max : int
        Largest k tried (``K_MIN..K_MAX``); also capped so that every group could have
        ``min_group_size`` clustered listeners.
    n_components : int
        Principal components clustered (>= 1).
    seed, n_init : int
        Initialisation of the mixture and k-means (the result is a function of the inputs
        and these).

    Raises
    ------
    InvalidInput
        Bad settings, or fewer than ``K_MIN * min_group_size`` listeners with enough ratings.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    if not K_MIN <= k_max <= K_MAX:
        raise InvalidInput(f"k_max={k_max} must be in {K_MIN}..{K_MAX}")
    if min(min_ratings, min_group_size, n_init, n_components) < 1:
        raise InvalidInput("min_ratings, min_group_size, n_components and n_init must be >= 1")
    reliable = sorted(u for u, s in model.listeners.items() if s.n_ratings >= min_ratings)
    need = K_MIN * min_group_size
    if len(reliable) < need:
        raise InvalidInput(
            f"taste groups need >= {need} listeners with >= {min_ratings} ratings; "
            f"the taste model has {len(reliable)}")
    raw = taste_vectors(model, profiles, reliable)
    n_d = 2 * N_DESCRIPTORS
    x = _standardise_blocks(raw, [slice(0, n_d), slice(n_d, raw.shape[1])])
    n = len(reliable)
    n_comp = max(1, min(n_components, n - 1, x.shape[1]))
    y = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit_transform(x)

    top = min(k_max, n // min_group_size)
    bic: dict[int, float] = {}
    for k in range(1, top + 1):
        gm = GaussianMixture(k, covariance_type="diag", n_init=n_init, random_state=seed,
                             reg_covar=1e-4).fit(y)
        bic[k] = float(gm.bic(y))
    structured = min(bic, key=lambda k: (bic[k], k)) >= K_MIN
    silhouette: dict[int, float] = {}
    labels: dict[int, np.ndarray] = {}
    for k in range(K_MIN, top + 1 if structured else K_MIN + 1):
        labels[k] = KMeans(k, n_init=n_init, random_state=seed).fit_predict(y)
        silhouette[k] = float(silhouette_score(y, labels[k]))
    k = max(silhouette, key=lambda k: (silhouette[k], -k))
    lab = labels[k]
    # number groups by size (largest first), ties by first member
    present = sorted(set(lab.tolist()), key=lambda g: (-int(np.sum(lab == g)),
                                                       int(np.argmax(lab == g))))
    renumber = {g: i for i, g in enumerate(present)}
    lab = np.array([renumber[g] for g in lab.tolist()])
    assignments = {u: int(g) for u, g in zip(reliable, lab, strict=True)}
    sources: dict[int, str] = {u: "ratings" for u in reliable}

    # songs classifier on the clustered listeners that have songs
    with_songs = [i for i, u in enumerate(reliable)
                  if profiles.get(u) is not None and profiles[u].descriptors is not None]
    d = N_DESCRIPTORS
    song_mean, song_scale = np.zeros(d), np.ones(d)
    coef = np.zeros((k, d))
    intercept = -np.arange(k, dtype=np.float64)  # no song to learn from: the largest group
    if with_songs:
        s = np.stack([np.asarray(profiles[reliable[i]].descriptors, dtype=np.float64)
                      for i in with_songs])
        song_mean = s.mean(axis=0)
        sd = s.std(axis=0)
        song_scale = np.where(sd > 1e-9, sd, 1.0)
        ys = lab[with_songs]
        classes = np.unique(ys)
        intercept = np.where(np.isin(np.arange(k), classes), 0.0, -1e9)
        if len(classes) == 1:
            intercept[classes[0]] = 1.0
        else:
            clf = LogisticRegression(C=1.0, max_iter=2000).fit((s - song_mean) / song_scale, ys)
            if len(classes) == 2:  # one score for classes[1]: split it symmetrically
                coef[classes] = np.vstack([-clf.coef_, clf.coef_]) / 2
                intercept[classes] = np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2
            else:
                coef[classes] = clf.coef_
                intercept[classes] = clf.intercept_
    groups = TasteGroups(
        k=k, structured=structured, assignments=assignments, sources=sources, bic=bic,
        silhouette=silhouette, song_mean=song_mean, song_scale=song_scale, song_coef=coef,
        song_intercept=intercept, min_ratings=min_ratings, seed=seed,
    )
    for u in sorted(model.listeners):
        if u not in assignments:
            g = groups.assign_from_songs(profiles.get(u, ListenerProfile(None, None)))
            if g is not None:
                assignments[u] = g
                sources[u] = "songs"
    return groups
