"""Training the similarity model: the VQ-VAE, then the metric head.

Phase 1 trains the VQ-VAE on random slice crops of the corpus's training pieces
(reconstruction MSE + commitment loss; the codebook follows the encoder by EMA, with
k-means initialisation and dead-code replacement), for a wall-clock budget, with a
resumable checkpoint. Phase 2 encodes every training piece once (codes and pooled
encoder statistics per slice) and trains the metric head with the supervised contrastive
loss on genre labels, on pooled statistics of random runs of slices, so it sees songs and
excerpts of every length, exactly as :meth:`SimilarityModel.represent` pools them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from encore.errors import Conflict, InvalidInput, NotFound
from encore.similarity.config import SimilarityConfig
from encore.similarity.data import Corpus, CropSampler, load_corpus, piece_images
from encore.similarity.model import SimilarityModel
from encore.similarity.vqvae import VQVAE, MetricHead, SliceHead, supcon_loss

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "training.json"


@dataclass(frozen=True)
class TrainOptions:
    """How to train (not saved with the model; the summary records it).

    ``minutes`` is the wall-clock budget of the whole run (both phases); ``max_steps``
    (if set) stops phase 1 earlier, for tests. ``metric_weight`` weighs the auxiliary
    slice-level supervised contrastive loss on genres in phase 1 (0 trains a plain VQ-VAE).
    """

    minutes: float = 18.0
    batch_size: int = 32
    lr: float = 1e-3
    metric_weight: float = 0.1
    max_steps: int | None = None
    head_steps: int = 1500
    head_batch: int = 192
    head_lr: float = 2e-3
    max_slices_per_piece: int = 48
    checkpoint_seconds: float = 60.0
    log_every: int = 25
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class CodebookUsage:
    """How the codebook is used over a set of tokens."""

    used: int
    dead: int
    perplexity: float
    tokens: int

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> CodebookUsage:
        counts = np.asarray(counts, dtype=np.float64)
        total = counts.sum()
        p = counts[counts > 0] / max(total, 1.0)
        return cls(
            used=int((counts > 0).sum()),
            dead=int((counts == 0).sum()),
            perplexity=float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0,
            tokens=int(total),
        )


@dataclass(frozen=True)
class TrainResult:
    """Summary of a training run (also written to ``training.json``)."""

    out_dir: str
    steps: int
    vqvae_seconds: float
    total_seconds: float
    recon_loss: float
    first_recon_loss: float
    usage: CodebookUsage
    head_loss_first: float
    head_loss_last: float
    train_pieces: int
    genres: tuple[str, ...]


def _lr_factor(step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / 100)
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _config_and_checkpoint(
    corpus: Corpus, train_pieces: list, ckpt_path: Path, config: SimilarityConfig | None,
    resume: bool,
) -> tuple[SimilarityConfig, dict | None]:
    """The run's architecture and, when resuming, its checkpoint (whose config wins); a new
    run takes the corpus's genres and mel height. Checked against the corpus either way."""
    checkpoint = None
    if resume:
        if not ckpt_path.is_file():
            raise NotFound(f"nothing to resume: no {ckpt_path}")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        config = SimilarityConfig.from_dict(checkpoint["config"])
        logger.info("resuming from %s at step %d (%.0f s done)", ckpt_path, checkpoint["step"],
                    checkpoint["elapsed"])
    else:
        if ckpt_path.is_file():
            raise Conflict(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
        base = config or SimilarityConfig()
        config = base.replace(
            genres=corpus.genres,
            image_height=corpus.mel_config.y_res if corpus.mel_config.y_res else base.image_height,
        )
    n_mels = corpus.mel(train_pieces[0]).shape[0]
    if n_mels != config.image_height:
        raise InvalidInput(f"corpus mels have {n_mels} bands, the config expects {config.image_height}")
    if tuple(config.genres) != corpus.genres:
        raise InvalidInput(f"corpus genres {corpus.genres} differ from the model's {config.genres}")
    return config, checkpoint


def train_similarity(
    corpus_dir: str | Path,
    out_dir: str | Path,
    config: SimilarityConfig | None = None,
    options: TrainOptions | None = None,
    *,
    resume: bool = False,
    command: str | None = None,
) -> TrainResult:
    """Train a similarity model on a corpus and save it in ``out_dir``.

    Parameters
    ----------
    corpus_dir : path
        Corpus folder (manifest, mel arrays); only ``split == "train"`` pieces are used.
    out_dir : path
        Output folder: the model (see :class:`SimilarityModel`), ``checkpoint.pt``,
        ``train_log.jsonl`` and ``training.json``.
    config : SimilarityConfig, optional
        Architecture; its ``genres``, ``image_height`` and ``image_width`` are taken from the
        corpus. Ignored when resuming (the checkpoint's config wins).
    options : TrainOptions, optional
    resume : bool
        Continue from ``out_dir/checkpoint.pt``.
    command : str, optional
        The command line, recorded in ``training.json`` for the model card.

    Returns
    -------
    TrainResult
    """
    options = options or TrainOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_FILE
    corpus = load_corpus(corpus_dir)
    train_pieces = corpus.split("train")
    if not train_pieces:
        raise InvalidInput(f"corpus {corpus_dir} has no pieces with split 'train'")

    config, checkpoint = _config_and_checkpoint(corpus, train_pieces, ckpt_path, config, resume)
    torch.manual_seed(options.seed)
    vqvae = VQVAE(config)
    slice_head = SliceHead(config)
    optimizer = torch.optim.Adam([*vqvae.parameters(), *slice_head.parameters()], lr=options.lr)
    sampler = CropSampler(corpus, train_pieces, config.image_width, seed=options.seed)
    state = {"step": 0, "elapsed": 0.0, "phase1_done": False, "first_recon": None,
             "last_recon": None}
    if checkpoint is not None:
        vqvae.load_state_dict(checkpoint["vqvae"])
        slice_head.load_state_dict(checkpoint["slice_head"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sampler.rng.bit_generator.state = checkpoint["sampler_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        state.update({k: checkpoint[k] for k in state})

    budget = options.minutes * 60.0
    phase2_estimate = _estimate_phase2_seconds(vqvae, corpus, train_pieces, config, options)
    phase1_budget = max(budget - phase2_estimate, 0.0)
    logger.info("budget %.0f s: VQ-VAE %.0f s, head phase ~%.0f s; %d train pieces, %d genres",
                budget, phase1_budget, phase2_estimate, len(train_pieces), len(corpus.genres))

    def checkpoint_now() -> None:
        _save_checkpoint(ckpt_path, {
            "config": config.to_dict(), "vqvae": vqvae.state_dict(), "slice_head": slice_head.state_dict(),
            "optimizer": optimizer.state_dict(), "sampler_rng": sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), **state,
        })

    if not state["phase1_done"]:
        _train_vqvae(vqvae, slice_head, optimizer, sampler, config, options, state, phase1_budget,
                     out / LOG_FILE, checkpoint_now)
        state["phase1_done"] = True
        checkpoint_now()
    vqvae_seconds = state["elapsed"]
    phase2_started = time.monotonic()

    # Phase 2: the metric head on pooled statistics of the training pieces.
    model = SimilarityModel(config, vqvae.eval(), MetricHead(config), corpus.mel_config.replace(
        x_res=config.image_width, y_res=config.image_height))
    encoded = _encode_pieces(model, corpus, train_pieces, options)
    usage = CodebookUsage.from_counts(encoded.code_counts)
    logger.info("codebook usage over %d training tokens: %d/%d codes used, %d dead, perplexity %.1f",
                usage.tokens, usage.used, config.codebook_size, usage.dead, usage.perplexity)
    head_first, head_last = _train_head(model, encoded, options)

    total = vqvae_seconds + (time.monotonic() - phase2_started)
    result = TrainResult(
        out_dir=str(out), steps=int(state["step"]), vqvae_seconds=float(vqvae_seconds),
        total_seconds=float(total), recon_loss=float(state["last_recon"] or float("nan")),
        first_recon_loss=float(state["first_recon"] or float("nan")), usage=usage,
        head_loss_first=head_first, head_loss_last=head_last,
        train_pieces=len(train_pieces), genres=config.genres,
    )
    summary = asdict(result)
    summary["options"] = asdict(options)
    summary["config"] = config.to_dict()
    summary["corpus"] = str(corpus_dir)
    summary["threads"] = torch.get_num_threads()
    summary["command"] = command
    model.save(out, extra_files={SUMMARY_FILE: summary})
    logger.info("saved similarity model to %s (%d steps, %.0f s)", out, result.steps, total)
    return result


def _estimate_phase2_seconds(vqvae: VQVAE, corpus: Corpus, pieces: list, config: SimilarityConfig,
                             options: TrainOptions) -> float:
    """Time to encode the training slices and train the head (encoder speed measured on a
    warmed-up batch; head steps at ~10 ms per 192 pieces), with a 25 % margin."""
    n_slices = sum(min(max(len(p.slices), 1), options.max_slices_per_piece) for p in pieces)
    x = torch.zeros(32, 1, config.image_height, config.image_width)
    was_training = vqvae.training
    vqvae.eval()
    with torch.no_grad():
        vqvae.encoder(vqvae.prepare(x))
        t0 = time.monotonic()
        vqvae.encoder(vqvae.prepare(x))
    per_slice = (time.monotonic() - t0) / 32
    vqvae.train(was_training)
    head_seconds = options.head_steps * 0.010 * options.head_batch / 192
    return 1.25 * (n_slices * per_slice * 1.2 + head_seconds) + 5.0


def _train_vqvae(vqvae: VQVAE, slice_head: SliceHead, optimizer: torch.optim.Optimizer, sampler: CropSampler,
                 config: SimilarityConfig, options: TrainOptions, state: dict, budget: float,
                 log_path: Path, checkpoint_now) -> None:
    vqvae.train()
    slice_head.train()
    window = np.zeros(config.codebook_size, dtype=np.int64)
    recon_acc, commit_acc, metric_acc, n_acc = 0.0, 0.0, 0.0, 0
    last_ckpt = time.monotonic()
    bar = tqdm(total=int(budget), initial=min(int(state["elapsed"]), int(budget)), unit="s",
               desc="vq-vae", disable=not options.progress, leave=False)
    with log_path.open("a") as log:
        while state["elapsed"] < budget and (options.max_steps is None or state["step"] < options.max_steps):
            t0 = time.monotonic()
            for group in optimizer.param_groups:
                group["lr"] = options.lr * _lr_factor(state["step"], state["elapsed"] / max(budget, 1e-9))
            images, labels = sampler.sample(options.batch_size)
            recon, target, z, indices, vq_loss = vqvae(torch.from_numpy(images)[:, None])
            recon_loss = F.mse_loss(recon, target)
            loss = recon_loss + vq_loss
            if options.metric_weight > 0:
                metric_loss = supcon_loss(slice_head(z), torch.from_numpy(labels), config.temperature)
                loss = loss + options.metric_weight * metric_loss
                metric_acc += float(metric_loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*vqvae.parameters(), *slice_head.parameters()], 1.0)
            optimizer.step()
            window += np.bincount(indices.reshape(-1).numpy(), minlength=config.codebook_size)
            recon_acc += float(recon_loss.detach())
            commit_acc += float(vq_loss.detach())
            n_acc += 1
            state["step"] += 1
            if state["step"] % options.log_every == 0 or state["step"] == 1:
                usage = CodebookUsage.from_counts(window)
                row = {"step": state["step"], "elapsed": round(state["elapsed"], 1),
                       "recon": recon_acc / n_acc, "commit": commit_acc / n_acc,
                       "slice_supcon": metric_acc / n_acc,
                       "perplexity": usage.perplexity, "dead": usage.dead, "used": usage.used}
                if state["first_recon"] is None:
                    state["first_recon"] = row["recon"]
                state["last_recon"] = row["recon"]
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix(recon=f"{row['recon']:.4f}", ppl=f"{usage.perplexity:.0f}",
                                dead=usage.dead)
                logger.info("step %d (%.0f s): recon %.4f commit %.4f slice supcon %.3f perplexity %.1f "
                            "dead %d/%d", state["step"], state["elapsed"], row["recon"], row["commit"],
                            row["slice_supcon"], usage.perplexity, usage.dead, config.codebook_size)
                window[:] = 0
                recon_acc, commit_acc, metric_acc, n_acc = 0.0, 0.0, 0.0, 0
            if time.monotonic() - last_ckpt >= options.checkpoint_seconds:
                checkpoint_now()
                last_ckpt = time.monotonic()
            state["elapsed"] += time.monotonic() - t0
            bar.update(min(int(state["elapsed"]), int(budget)) - bar.n)
    if n_acc:
        state["last_recon"] = recon_acc / n_acc
        if state["first_recon"] is None:
            state["first_recon"] = state["last_recon"]
    bar.close()


@dataclass
class EncodedPieces:
    """Per-slice statistics of many pieces, concatenated (piece ``i`` owns rows
    ``offsets[i]:offsets[i+1]``), with running sums for pooling runs of slices."""

    histograms: np.ndarray  # (n_slices, K)
    features: np.ndarray  # (n_slices, 2D)
    offsets: np.ndarray  # (n_pieces + 1,)
    labels: np.ndarray  # (n_pieces,)
    code_counts: np.ndarray  # (K,)
    csum_h: np.ndarray = field(init=False, repr=False)
    csum_f: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def running(a: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(a, 0, dtype=np.float64)])

        self.csum_h = running(self.histograms)
        self.csum_f = running(self.features)


def _encode_pieces(model: SimilarityModel, corpus: Corpus, pieces: list,
                   options: TrainOptions) -> EncodedPieces:
    hists, feats, offsets, labels = [], [], [0], []
    counts = np.zeros(model.config.codebook_size, dtype=np.int64)
    for piece in tqdm(pieces, desc="encode", unit="piece", disable=not options.progress, leave=False):
        images = piece_images(corpus, piece, model.config.image_width, options.max_slices_per_piece)
        codes = model.embed_images(images)
        counts += np.bincount(codes.indices.reshape(-1), minlength=model.config.codebook_size)
        hists.append(codes.histograms(model.config.codebook_size))
        feats.append(codes.features)
        offsets.append(offsets[-1] + images.shape[0])
        labels.append(corpus.genre_index(piece.genre))
    return EncodedPieces(np.concatenate(hists), np.concatenate(feats), np.asarray(offsets),
                         np.asarray(labels), counts)


def sample_runs(encoded: EncodedPieces, piece_ids: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pooled statistics of a random run of consecutive slices of each given piece.

    Run lengths are log-uniform between 1 and the piece's slice count, so short excerpts
    and whole songs are both seen.
    """
    csum_h, csum_f = encoded.csum_h, encoded.csum_f
    lo, hi = encoded.offsets[piece_ids], encoded.offsets[piece_ids + 1]
    n = hi - lo
    length = np.minimum(n, np.exp(rng.uniform(0, np.log(n + 1))).astype(np.int64)).clip(1)
    start = lo + (rng.random(n.size) * (n - length + 1)).astype(np.int64)
    end = start + length
    h = (csum_h[end] - csum_h[start]) / length[:, None]
    f = (csum_f[end] - csum_f[start]) / length[:, None]
    return h.astype(np.float32), f.astype(np.float32)


def _train_head(model: SimilarityModel, encoded: EncodedPieces, options: TrainOptions) -> tuple[float, float]:
    rng = np.random.default_rng(options.seed + 1)
    torch.manual_seed(options.seed + 1)
    head = model.head.train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=options.head_lr, weight_decay=1e-4)
    labels = encoded.labels
    genres = np.unique(labels)
    by_genre = [np.flatnonzero(labels == g) for g in genres]
    half = max(options.head_batch // 2, 2)
    losses = []
    for step in tqdm(range(options.head_steps), desc="metric head", disable=not options.progress, leave=False):
        for group in optimizer.param_groups:
            group["lr"] = options.head_lr * 0.5 * (1 + math.cos(math.pi * step / options.head_steps))
        g = rng.integers(0, len(genres), size=half)
        pieces = np.array([by_genre[i][rng.integers(0, len(by_genre[i]))] for i in g])
        pieces = np.concatenate([pieces, pieces])  # two views of each piece
        h, f = sample_runs(encoded, pieces, rng)
        emb = head(torch.from_numpy(h), torch.from_numpy(f))
        loss = supcon_loss(emb, torch.from_numpy(labels[pieces]), model.config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 250 == 0:
            logger.info("metric head step %d: supcon %.4f", step + 1, np.mean(losses[-250:]))
    head.eval()
    k = max(1, min(50, len(losses) // 5))
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
