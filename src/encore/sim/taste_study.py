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
3. Training phase: each listener makes ``train_requests`` requests; each request is 4
   candidates from pieces of the genre of one of its songs, one served uniformly at random
   (like v0), heard and rated by :func:`encore.sim.listeners.decide`.
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

    def candidates(u: int, k: int) -> list[StudyClip]:
        genre = song_by_title[specs[u].songs[k % len(specs[u].songs)]].genre
        pool = by_genre.get(genre) or clips
        return [pool[int(i)] for i in rng.choice(len(pool), size=n_candidates, replace=False)]

    def hear(u: int, clip: StudyClip, k: int) -> tuple[float, float, float]:
        d = decide(specs[u], clip.perceived, clip.seconds, min_listen,
                   np.random.default_rng([seed, u, k, clip.clip_id]))
        return d.stars, min(1.0, d.listened_seconds / clip.seconds), float(d.appeal or 0.0)

    rows = []
    t = 0
    for k in range(train_requests):
        for u in range(len(specs)):
            cand = candidates(u, k)
            served = cand[int(rng.integers(len(cand)))]
            stars, listened, _ = hear(u, served, k)
            rows.append((u, served.clip_id, stars, listened, t))
            t += 1
    a = np.array(rows, dtype=float)
    ratings = taste.TasteRatings(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2], a[:, 3],
                                 order=a[:, 4], song_keys=a[:, 0].astype(int))
    feature_map = {c.clip_id: c.features for c in clips}
    evaluation = taste.evaluate(ratings, feature_map, profiles, test_share=0.2)
    model = taste.TasteModel.fit(ratings, feature_map, profiles)

    picks: dict[str, list[float]] = {"taste": [], "uniform": [], "oracle": []}
    for k in range(train_requests, train_requests + test_requests):
        for u in range(len(specs)):
            cand = candidates(u, k)
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
        "population": population.name, "seed": seed, "listeners": n_l, "clips": len(clips),
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

    g, ap = result["stars_gain"], result["appeal"]
    return "\n".join([
        f"taste study: population {result['population']}, seed {result['seed']}, "
        f"{result['listeners']} honest listeners, {result['clips']} clips, "
        f"{result['train_ratings']} training ratings (uniform picks)",
        format_evaluation(result["evaluation"]),
        f"best-of-4 on later requests: hidden appeal uniform {ap['uniform']:.3f}, "
        f"taste pick {ap['taste']:.3f}, oracle {ap['oracle']:.3f}",
        f"expected stars gain of the taste pick over a uniform pick: {g['taste']:+.3f} "
        f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (listener-clustered 95 %); "
        f"a perfect selector: {g['oracle']:+.3f}",
    ])
