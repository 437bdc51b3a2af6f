"""The similarity model's card (``MODEL_CARD.md``), written from its training and eval records."""

from __future__ import annotations

import json
from pathlib import Path

from encore.similarity.config import SimilarityConfig
from encore.similarity.model import WEIGHTS_FILE
from encore.similarity.training import SUMMARY_FILE

CARD_FILE = "MODEL_CARD.md"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_card(model_dir: Path) -> Path:
    """Write ``MODEL_CARD.md`` from ``training.json``, ``eval.json`` and the config."""
    config = SimilarityConfig.load(model_dir)
    train = _read(model_dir / SUMMARY_FILE)
    ev = _read(model_dir / "eval.json")
    size_kb = (model_dir / WEIGHTS_FILE).stat().st_size / 1024
    usage = train.get("usage", {})
    lines = [
        "# encore similarity model",
        "",
        "A VQ-VAE over mel-spectrogram slices with a genre metric head (docs/similarity.md; the "
        "paper's §4.3). A song, or a set of songs, is represented by the normalised histogram "
        "of the codebook entries used across all its slices (Eq. 3: counts are pooled, so any "
        "number of songs gives one vector, in any order) together with the metric head's "
        "embedding of the pooled statistics.",
        "",
        "## Similarity",
        "",
        f"`S(a, b) = α·(1 + cos(e_a, e_b))/2 + (1 − α)·Σ_k √(h_a[k]·h_b[k])` with α = {config.alpha:g}:",
        "the cosine of the unit metric embeddings mapped to [0, 1], and the Bhattacharyya "
        "coefficient of the code histograms. S is symmetric, in [0, 1], and S(a, a) = 1. "
        "Nearest-neighbour search uses the vector `u = [√(α/2)·e, √(1−α)·√h]`, "
        "for which `S(a, b) = α/2 + u_a·u_b`.",
        "",
        "## Architecture",
        "",
        f"- input: {config.image_height} mel bands × {config.image_width} frames per slice "
        f"(dB normalised to the slice maximum, [-1, 1]), average-pooled ×{config.pool}",
        f"- encoder: stride-2 convolutions {list(config.channels)}, a residual block, 1×1 to "
        f"{config.latent_dim} channels → a {config.latent_height}×{config.latent_width} latent grid "
        f"({config.tokens_per_slice} codes per slice)",
        f"- quantiser: `vector_quantize_pytorch.VectorQuantize`, K = {config.codebook_size}, "
        f"{'cosine' if config.cosine_codebook else 'Euclidean'} codes, k-means init, EMA decay "
        f"{config.codebook_decay}, dead codes replaced below EMA size {config.dead_code_threshold}",
        f"- metric head: LayerNorm → {config.head_hidden} → {config.embedding_dim} over "
        f"[√h, mean(z), std(z)] ({'per channel and latent row (frequency band)' if config.row_features else 'per channel'}, "
        f"pooled over all slices), supervised contrastive loss (τ = {config.temperature}) on genres",
        f"- weights: `{WEIGHTS_FILE}`, {size_kb:.0f} KB",
        f"- genres: {', '.join(config.genres) or '(none recorded)'}",
        "",
    ]
    if train:
        opts = train.get("options", {})
        lines += [
            "## Training",
            "",
            f"- command: `{train.get('command') or 'encore train similarity'}`",
            f"- corpus: `{train.get('corpus', '?')}`, {train.get('train_pieces', '?')} training pieces",
            f"- time: {train['total_seconds'] / 60:.1f} min on the CPU in all "
            f"({train['vqvae_seconds'] / 60:.1f} min VQ-VAE, {train['steps']} steps of "
            f"{opts.get('batch_size', '?')} slices; then encoding and {opts.get('head_steps', '?')} "
            f"metric-head steps), threads: {train.get('threads', '?')}",
            f"- VQ-VAE loss: reconstruction MSE + commitment + {opts.get('metric_weight', 0)} × a "
            "slice-level supervised contrastive loss on genres (an auxiliary projection of each "
            "slice's encoder statistics, discarded after training), so the codes are already "
            "genre-aware: the histogram baseline below measures them without the metric head",
            f"- reconstruction MSE (pooled slice, [-1, 1] units): {train['first_recon_loss']:.4f} → "
            f"{train['recon_loss']:.4f}",
            f"- codebook usage over all training slices ({usage.get('tokens', 0)} codes): "
            f"{usage.get('used')} of {config.codebook_size} entries used, {usage.get('dead')} dead, "
            f"perplexity {usage.get('perplexity', 0):.1f}",
            f"- metric head SupCon loss: {train['head_loss_first']:.3f} → {train['head_loss_last']:.3f}",
            "",
        ]
    if ev:
        rows = ev["rows"]
        genres = ", ".join(f"{g} ({n})" for g, n in zip(ev["genres"], ev["pieces_per_genre"], strict=True))
        lines += [
            "## Evaluation: genre retrieval on held-out pieces",
            "",
            f"`encore similarity eval --model {ev.get('model')} --corpus {ev.get('corpus')}`; relevant = "
            f"same genre. Genres of the {ev['n_pieces']} '{ev['split']}' pieces: {genres}.",
            "",
            f"Held-out among held-out: each held-out piece queries the other held-out pieces (with "
            f"so few pieces in some genres the best attainable P@5 is "
            f"{ev.get('best_precision_at_5', 1.0):.3f}):",
            "",
            "| method | P@5 | MRR | nDCG@10 |",
            "|---|---|---|---|",
        ]
        for r in rows:
            lines.append(f"| {r['method']} | {r['precision_at_5']:.3f} | {r['mrr']:.3f} | {r['ndcg_at_10']:.3f} |")
        if ev.get("catalogue_rows"):
            lines += [
                "",
                f"Held-out against the catalogue: each held-out piece queries the {ev['n_catalogue'] - 1} "
                "other pieces of the corpus (training and held-out), as the platform searches its "
                "dataset with a clip the model has never seen:",
                "",
                "| method | P@5 | MRR | nDCG@10 |",
                "|---|---|---|---|",
            ]
            for r in ev["catalogue_rows"]:
                lines.append(f"| {r['method']} | {r['precision_at_5']:.3f} | {r['mrr']:.3f} | {r['ndcg_at_10']:.3f} |")
        lines.append("")
        if (model_dir / "heldout_embeddings.png").is_file():
            lines += ["![held-out metric embeddings, t-SNE, coloured by genre](heldout_embeddings.png)", ""]
    lines += [
        "## Data and licences",
        "",
        "Trained only on encore's own corpus (`encore corpus build`, see docs/corpus.md): the "
        "scores in the corpus folder of the `music21` package (package BSD-3-Clause; its "
        "`corpus/license.txt` says the encodings are distributed with their encoders' permission "
        "and are out of copyright or licensed for use, possibly with restrictions on commercial "
        "use; the works are public domain), rendered with the General-MIDI soundfont "
        "`TimGM6mb.sf2` bundled by `pretty_midi` (GNU GPL v2) through `tinysoundfont` (MIT). "
        "Each music21 collection is a "
        "genre label. No external weights were used.",
        "",
    ]
    path = model_dir / CARD_FILE
    path.write_text("\n".join(lines))
    return path
