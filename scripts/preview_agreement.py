"""Does a best-of-n choice made on cheap vocoder previews pick the candidate the full vocoder would?

Best-of-n serving scores every candidate on features of its *audio* (the similarity model's
embedding and the audio descriptors, encore.taste) and serves the best. Vocoding all n in
full costs n vocoder runs; ``Engine.preview_audio`` makes a preview from the first few
Griffin-Lim iterations, and ``Engine.finish`` completes only the served one (bit for bit the
same audio). This script measures, on real songs, how far the previews' features are from
the full audio's and how often a choice made on them differs:

- per feature, the correlation between preview and full values over all candidates, and
  the same within requests (candidate minus its request's mean: what a choice compares);
- choice agreement of random linear scorers: ``w ~ N(0, I)`` over the standardised
  features (descriptors and embedding, the inputs of the taste model's linear parts), the
  argmax of each request on preview features against that on full features, and the regret
  (full-feature score of the full choice minus that of the preview choice) in units of the
  within-request spread;
- the vocoder's CPU cost per candidate at each preview length.

    .venv/bin/python scripts/preview_agreement.py --songs /path/to/audio --requests 24

No taste model or listener is read: the scorers are random, so the figure holds for any
linear scorer of these features, not for one fitted model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=Path, required=True, help="folder of audio files")
    ap.add_argument("--requests", type=int, default=24, help="songs to vary (one request each)")
    ap.add_argument("--n", type=int, default=4, help="candidates per request")
    ap.add_argument("--previews", default="0,1,2,4,8", help="preview iterations to compare")
    ap.add_argument("--scorers", type=int, default=2000, help="random linear scorers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from encore.audio.decode import load_audio
    from encore.audio.descriptors import audio_descriptors, descriptor_vector
    from encore.config import get_settings
    from encore.diffusion.engine import Engine
    from encore.similarity.model import SimilarityModel

    engine = Engine()
    similarity = SimilarityModel.load(get_settings().similarity_model_dir)
    sr = engine.sample_rate
    previews = [int(p) for p in args.previews.split(",")]
    files = sorted(p for p in args.songs.iterdir() if p.suffix in (".flac", ".wav", ".ogg", ".mp3"))
    rng = np.random.default_rng(args.seed)
    files = [files[i] for i in rng.choice(len(files), size=min(args.requests, len(files)), replace=False)]
    print(f"{len(files)} requests x {args.n} candidates, vocoder {engine.vocoder()!r}, "
          f"torch threads {torch.get_num_threads()}")

    def features(audio: np.ndarray) -> np.ndarray:
        rep = similarity.represent_audio(audio, sr)
        return np.hstack([descriptor_vector(audio_descriptors(audio, sr)),
                          np.asarray(rep.embedding, dtype=np.float64)])

    from encore.audio.mel import image_to_mel_power

    vocoder = engine.vocoder().with_threads(1)
    n_iter = vocoder.n_iter
    full: list[np.ndarray] = []
    prev: dict[int, list[np.ndarray]] = {p: [] for p in previews}
    cost: dict[int, list[float]] = {p: [] for p in previews + [n_iter]}

    def audio_of(state: object, n: int) -> np.ndarray:
        return vocoder.audio(state).cpu().numpy()[0, :n]

    for k, path in enumerate(files):
        song = load_audio(path, sr=sr)
        clips = engine.vary_batch(song, 0.7, seeds=[100 * k + j for j in range(args.n)])
        seconds = clips[0].params["seconds"]
        n = int(round(seconds * sr))
        powers = [image_to_mel_power(c.image[None], engine.mel).astype(np.float32) for c in clips]
        for p in previews:
            t0 = time.process_time()
            states = [vocoder.start(m, p) for m in powers]
            audio = [audio_of(st, n) for st in states]
            cost[p].append((time.process_time() - t0) / args.n)
            prev[p].append(np.stack([features(a) for a in audio]))
        # the full audio, as served: 0-iteration previews finished (what best-of-n would do)
        states = [vocoder.start(m, 0) for m in powers]
        t0 = time.process_time()
        audio = [audio_of(vocoder.resume(st, n_iter), n) for st in states]
        cost[n_iter].append((time.process_time() - t0) / args.n)
        full.append(np.stack([features(a) for a in audio]))
        print(f"  {k + 1}/{len(files)} {path.name}", flush=True)

    f = np.stack(full)  # (requests, n, d)
    mu, sd = f.reshape(-1, f.shape[-1]).mean(0), f.reshape(-1, f.shape[-1]).std(0) + 1e-12
    z_full = (f - mu) / sd
    w = rng.standard_normal((args.scorers, f.shape[-1]))
    s_full = np.einsum("rnd,kd->krn", z_full, w)
    best_full = s_full.argmax(-1)
    spread = s_full.std(-1) + 1e-12
    print(f"\nvocoder CPU per candidate: full ({n_iter} it.) {np.median(cost[n_iter]) * 1000:.1f} ms")
    print("preview it. | CPU ms/cand. | corr. all (median, min feature) | corr. within request "
          "(median, min) | choice agreement | mean regret (within-request SD)")
    for p in previews:
        g = (np.stack(prev[p]) - mu) / sd
        flat_f, flat_g = z_full.reshape(-1, f.shape[-1]), g.reshape(-1, f.shape[-1])
        wf, wg = (z_full - z_full.mean(1, keepdims=True)).reshape(-1, f.shape[-1]), \
            (g - g.mean(1, keepdims=True)).reshape(-1, f.shape[-1])
        corr = [np.corrcoef(flat_f[:, i], flat_g[:, i])[0, 1] for i in range(f.shape[-1])]
        wcorr = [np.corrcoef(wf[:, i], wg[:, i])[0, 1] for i in range(f.shape[-1])]
        best_prev = np.einsum("rnd,kd->krn", g, w).argmax(-1)
        agree = float((best_prev == best_full).mean())
        regret = (np.take_along_axis(s_full, best_full[..., None], -1)[..., 0]
                  - np.take_along_axis(s_full, best_prev[..., None], -1)[..., 0]) / spread
        print(f"{p:11d} | {np.median(cost[p]) * 1000:12.1f} | {np.nanmedian(corr):.3f}, {np.nanmin(corr):.3f}"
              f"{'':16} | {np.nanmedian(wcorr):.3f}, {np.nanmin(wcorr):.3f}{'':20} | {agree:16.3f} | "
              f"{float(regret.mean()):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
