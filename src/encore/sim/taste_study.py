"""An offline study of the taste model against simulated listeners (no server, no generation).

What it answers: on the shipped populations' tastes, how well does the taste model — which
sees only ratings, listening, descriptors and embeddings, never the tastes — order clips for
one listener, and what would best-of-4 selection buy in hidden appeal and stars? It is a
study, not the pilot: the clips are excerpts of corpus pieces (four windows of pieces of the
genre of the song a listener asks for stand in for four candidates), not clips the diffusion
model made, so it says what the selector can do, not what the loop did.

Protocol (seeded):

1. Seed songs from the corpus and listeners drawn from the population exactly as the pilot
   does (:func:`encore.sim.population.draw_listeners`); only honest listeners take part.
2. Clip pool: ``windows`` excerpts of ``clip_seconds`` from every seed song. Every clip gets
   the platform's features (audio descriptors, the similarity model's embedding) and the
   listeners' perceived features (:mod:`encore.sim.features`).
3. Training phase: each listener makes ``train_requests`` requests for one of its songs;
   each request is 4 candidates — windows of pieces of that song's genre (``genre``) or
   windows of the song itself (``own``, takes of one song: a conservative stand-in for
   variations) — one served uniformly at random (like v0), heard and rated by
   :func:`encore.sim.listeners.decide`.
4. The taste model is fitted on those ratings (and evaluated on a time-ordered split
   against the baselines); then ``test_requests`` more requests per listener are served by
   the model's pick, and the pick's hidden appeal and expected stars are compared with the
   uniform pick's and the best candidate's (the oracle) on the same candidate sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encore import taste
from encore.audio.descriptors import audio_descriptors, descriptor_vector
from encore.sim.features import audio_features
from encore.sim.listeners import decide
from encore.sim.population import Population, draw_listeners
from encore.sim.seeds import SAMPLE_RATE, corpus_seed_songs


@dataclass(frozen=True)
class StudyClip:
    clip_id: int
    genre: str
    song: str
    features: taste.ClipFeatures
    perceived: Any  # AudioFeatures
    seconds: float


def _clips(songs: list[Any], similarity: Any, windows: int, clip_seconds: float,
           rng: np.random.Generator) -> list[StudyClip]:
    from encore.audio.decode import load_audio

    out = []
    n = int(clip_seconds * SAMPLE_RATE)
    for s in songs:
        y = load_audio(s.data, sr=SAMPLE_RATE, max_seconds=None)
        if len(y) < n:
            continue
        starts = rng.choice(max(1, len(y) - n), size=windows, replace=False)
        for a in sorted(int(x) for x in starts):
            w = y[a : a + n]
            rep = similarity.represent_audio(w, SAMPLE_RATE)
            feats = taste.ClipFeatures(descriptor_vector(audio_descriptors(w, SAMPLE_RATE)),
                                       rep.embedding.astype(np.float64))
            out.append(StudyClip(len(out), s.genre, s.title, feats,
                                 audio_features(w, SAMPLE_RATE), clip_seconds))
    return out


def run_study(
    population: Population, corpus_dir: Path, similarity_dir: Path, *, seed: int = 0,
    n_songs: int = 40, windows: int = 6, clip_seconds: float = 5.9, train_requests: int = 30,
    test_requests: int = 30, n_candidates: int = 4, min_listen: float = 3.0,
) -> dict[str, Any]:
    """Run the study (see the module docstring) and return its figures."""
    from encore.audio.decode import load_audio
    from encore.similarity.model import SimilarityModel

    rng = np.random.default_rng([seed, 17])
    songs = corpus_seed_songs(corpus_dir, n_songs, genres=population.genres(), seconds=30.0,
                              seed=seed)
    specs = [s for s in draw_listeners(population, songs, np.random.default_rng([seed, 0]))
             if s.kind == "honest"]
    similarity = SimilarityModel.load(similarity_dir)
    clips = _clips(songs, similarity, windows, clip_seconds, rng)
    by_genre: dict[str, list[StudyClip]] = {}
    for c in clips:
        by_genre.setdefault(c.genre, []).append(c)
    song_by_title = {s.title: s for s in songs}
    profiles: dict[int, taste.ListenerProfile] = {}
    for u, spec in enumerate(specs):
        descs, embs = [], []
        for title in spec.songs:
            y = load_audio(song_by_title[title].data, sr=SAMPLE_RATE, max_seconds=None)
            descs.append(descriptor_vector(audio_descriptors(y, SAMPLE_RATE)))
            embs.append(similarity.represent_audio(y, SAMPLE_RATE).embedding)
        profiles[u] = taste.ListenerProfile(np.mean(descs, axis=0),
                                            np.mean(embs, axis=0).astype(np.float64))

    by_song: dict[str, list[StudyClip]] = {}
    for c in clips:
        by_song.setdefault(c.song, []).append(c)
    feature_map = {c.clip_id: c.features for c in clips}
    return {
        "population": population.name, "seed": seed, "listeners": len(specs),
        "clips": len(clips),
        "modes": {mode: _protocol(mode, specs, profiles, song_by_title, by_genre, by_song, clips,
                                  feature_map, seed, train_requests, test_requests,
                                  n_candidates, min_listen)
                  for mode in ("genre", "own")},
    }


def _protocol(
    mode: str, specs: list[Any], profiles: dict[int, taste.ListenerProfile],
    song_by_title: dict[str, Any], by_genre: dict[str, list[StudyClip]],
    by_song: dict[str, list[StudyClip]], clips: list[StudyClip],
    feature_map: dict[int, taste.ClipFeatures], seed: int, train_requests: int,
    test_requests: int, n_candidates: int, min_listen: float,
) -> dict[str, Any]:
    """Training and test phases with one way of drawing candidates: ``genre`` — windows of
    any pieces of the requested song's genre (candidates differ like different pieces);
    ``own`` — windows of the requested song itself (they differ like takes of one song, a
    conservative stand-in for variations)."""
    rng = np.random.default_rng([seed, 23, len(mode)])

    def candidates(u: int, k: int) -> tuple[str, list[StudyClip]]:
        title = specs[u].songs[int(rng.integers(len(specs[u].songs)))]
        if mode == "own":
            pool = by_song.get(title) or clips
        else:
            pool = by_genre.get(song_by_title[title].genre) or clips
        size = min(n_candidates, len(pool))
        return title, [pool[int(i)] for i in rng.choice(len(pool), size=size, replace=False)]

    def hear(u: int, clip: StudyClip, k: int) -> tuple[float, float]:
        d = decide(specs[u], clip.perceived, clip.seconds, min_listen,
                   np.random.default_rng([seed, u, k, clip.clip_id]))
        return d.stars, min(1.0, d.listened_seconds / clip.seconds)

    rows = []
    t = 0
    for k in range(train_requests):
        for u in range(len(specs)):
            title, cand = candidates(u, k)
            served = cand[int(rng.integers(len(cand)))]
            stars, listened = hear(u, served, k)
            rows.append((u, served.clip_id, stars, listened, t, title))
            t += 1
    ratings = taste.TasteRatings(
        np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
        order=np.array([r[4] for r in rows], dtype=float),
        song_keys=np.array([r[5] for r in rows], dtype=object),
    )
    evaluation = taste.evaluate(ratings, feature_map, profiles, test_share=0.2)
    model = taste.TasteModel.fit(ratings, feature_map, profiles)

    picks: dict[str, list[float]] = {"taste": [], "uniform": [], "oracle": []}
    for k in range(train_requests, train_requests + test_requests):
        for u in range(len(specs)):
            _, cand = candidates(u, k)
            appeal = np.array([specs[u].taste.appeal(c.perceived) for c in cand])
            predicted, _ = model.predict(u, [c.features for c in cand], profiles[u])
            picks["taste"].append(float(appeal[int(np.argmax(predicted))]))
            picks["uniform"].append(float(appeal.mean()))
            picks["oracle"].append(float(appeal.max()))
    taste_a, uniform_a, oracle_a = (np.array(picks[k]) for k in ("taste", "uniform", "oracle"))
    gain = taste_a - uniform_a
    boot = np.random.default_rng([seed, 99])
    n_l = len(specs)
    per_listener = gain.reshape(test_requests, n_l).mean(axis=0)
    draws = [per_listener[boot.integers(n_l, size=n_l)].mean() for _ in range(2000)]
    return {
        "train_ratings": len(ratings), "evaluation": evaluation.as_dict(),
        "appeal": {"taste": float(taste_a.mean()), "uniform": float(uniform_a.mean()),
                   "oracle": float(oracle_a.mean())},
        # stars = 1 + 4·appeal (+ bias + noise, which cancel in expectation)
        "stars_gain": {"taste": float(4 * gain.mean()),
                       "ci": [float(4 * np.quantile(draws, 0.025)),
                              float(4 * np.quantile(draws, 0.975))],
                       "oracle": float(4 * (oracle_a - uniform_a).mean())},
    }


def format_study(result: dict[str, Any]) -> str:
    from encore.commands.taste import format_evaluation

    lines = [f"taste study: population {result['population']}, seed {result['seed']}, "
             f"{result['listeners']} honest listeners, {result['clips']} clips"]
    for mode, m in result["modes"].items():
        g, ap = m["stars_gain"], m["appeal"]
        what = ("windows of pieces of the requested song's genre" if mode == "genre"
                else "windows of the requested song itself")
        lines += [
            f"candidates: {mode} ({what}); {m['train_ratings']} training ratings (uniform picks)",
            format_evaluation(m["evaluation"]),
            f"best-of-4 on later requests: hidden appeal uniform {ap['uniform']:.3f}, "
            f"taste pick {ap['taste']:.3f}, oracle {ap['oracle']:.3f}",
            f"expected stars gain of the taste pick over a uniform pick: {g['taste']:+.3f} "
            f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (listener-clustered 95 %); "
            f"a perfect selector: {g['oracle']:+.3f}",
            "",
        ]
    return "\n".join(lines)
