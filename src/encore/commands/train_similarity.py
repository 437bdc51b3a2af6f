"""``encore train similarity``: train the similarity model (VQ-VAE + metric head) on a corpus.

Registered into the ``encore train`` group by :mod:`encore.commands.train`.
"""

from __future__ import annotations

import argparse
import sys

from encore.commands import options


def register(group: argparse._SubParsersAction) -> None:
    p = group.add_parser(
        "similarity",
        help="train the similarity model (VQ-VAE over slices + genre metric head)",
        description=(
            "Train the VQ-VAE on random slices of the corpus's training pieces for most of the "
            "wall-time budget (checkpointed to OUT/checkpoint.pt), then encode every training "
            "piece and train the metric head with a supervised contrastive loss on the genres. "
            "The model folder is OUT itself (similarity_config.json, model.safetensors, "
            "mel_config.json, training.json); the log is OUT/train_log.jsonl."
        ),
    )
    options.add_corpus(p, help="corpus folder (manifest.jsonl, mel_config.json)")
    options.add_out(p, help="output (model) folder")
    p.add_argument("--minutes", type=float, default=18.0, help="wall-time budget of the whole run (default 18)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--codebook-size", type=int, default=512, help="codebook entries K (default 512)")
    p.add_argument("--alpha", type=float, default=0.8, help="weight of the metric embedding in S (default 0.8)")
    p.add_argument("--batch", type=int, default=32, help="VQ-VAE batch size (default 32)")
    p.add_argument("--steps", type=int, default=None, help="stop the VQ-VAE phase after this many steps")
    p.add_argument("--metric-weight", type=float, default=0.1,
                   help="weight of the slice-level genre contrastive loss while training the VQ-VAE "
                        "(default 0.1; 0 = plain VQ-VAE)")
    p.add_argument("--head-steps", type=int, default=1500, help="metric-head steps (default 1500)")
    options.add_threads(p, default=2, help="torch threads (default 2)")
    options.add_seed(p)
    options.add_no_progress(p, help="no progress bars")
    p.set_defaults(handler=run_train_similarity)


def run_train_similarity(args: argparse.Namespace) -> int:
    from encore.similarity.config import SimilarityConfig
    from encore.similarity.training import TrainOptions, train_similarity

    options.corpus_folder(args.corpus)
    options.set_threads(args.threads)
    config = SimilarityConfig(codebook_size=args.codebook_size, alpha=args.alpha)
    train_options = TrainOptions(
        minutes=args.minutes, batch_size=args.batch, max_steps=args.steps,
        metric_weight=args.metric_weight, head_steps=args.head_steps, seed=args.seed, progress=not args.no_progress,
    )
    command = " ".join(["encore", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("encore") else None
    result = train_similarity(args.corpus, args.out, config, train_options, resume=args.resume,
                              command=command)
    u = result.usage
    print(  # noqa: T201
        f"trained {result.steps} VQ-VAE steps in {result.vqvae_seconds / 60:.1f} min "
        f"({result.total_seconds / 60:.1f} min in all); reconstruction MSE "
        f"{result.first_recon_loss:.4f} -> {result.recon_loss:.4f}; codebook {u.used}/{u.used + u.dead} "
        f"codes used ({u.dead} dead), perplexity {u.perplexity:.1f}; metric head SupCon "
        f"{result.head_loss_first:.3f} -> {result.head_loss_last:.3f}; model folder {result.out_dir}"
    )
    return 0
