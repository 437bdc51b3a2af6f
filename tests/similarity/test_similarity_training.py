"""Training a tiny similarity model: losses fall, the folder reloads identically, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encore.errors import Conflict, NotFound
from encore.similarity.model import SimilarityModel
from encore.similarity.training import TrainOptions, train_similarity
from encore.similarity.vqvae import supcon_loss

from .similarity_helpers import TINY, random_songs

OPTIONS = TrainOptions(minutes=5.0, batch_size=8, lr=3e-3, max_steps=40, head_steps=60,
                       head_batch=32, log_every=5, progress=False, checkpoint_seconds=1e9)


@pytest.fixture(scope="module")
def trained(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("similarity_model")
    result = train_similarity(tiny_corpus, out, TINY, OPTIONS)
    return out, result


def test_tiny_model_trains_and_its_losses_fall(trained) -> None:
    out, result = trained
    assert result.steps == OPTIONS.max_steps
    assert result.recon_loss < 0.8 * result.first_recon_loss
    assert result.head_loss_last < result.head_loss_first
    assert result.usage.used + result.usage.dead == TINY.codebook_size
    assert result.usage.used >= 2 and 1.0 < result.usage.perplexity <= TINY.codebook_size
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[-1]["step"] == OPTIONS.max_steps
    assert {"recon", "perplexity", "dead"} <= rows[-1].keys()
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == OPTIONS.max_steps and summary["config"]["genres"] == ["flute_high", "pluck_low"]


def test_saved_model_reloads_with_identical_outputs(trained, rng: np.random.Generator) -> None:
    out, _ = trained
    a, b = SimilarityModel.load(out), SimilarityModel.load(out)
    songs = random_songs(rng, 3)
    for song in songs:
        np.testing.assert_array_equal(a.represent(song).to_vector(), b.represent(song).to_vector())
    resaved = a.save(out.parent / "resaved")
    c = SimilarityModel.load(resaved)
    np.testing.assert_array_equal(c.represent(songs[0]).to_vector(), a.represent(songs[0]).to_vector())
    assert c.config == a.config and c.mel_config == a.mel_config


def test_trained_tiny_model_prefers_same_genre(trained, tiny_corpus: Path) -> None:
    from encore.similarity.data import load_corpus, piece_images

    model = SimilarityModel.load(trained[0])
    corpus = load_corpus(tiny_corpus)
    reps = {p.piece_id: model.represent(piece_images(corpus, p, 32)) for p in corpus.pieces}
    genre = {p.piece_id: p.genre for p in corpus.pieces}
    same, other = [], []
    for i in reps:
        for j in reps:
            if i < j:
                (same if genre[i] == genre[j] else other).append(model.similarity(reps[i], reps[j]))
    assert np.mean(same) > np.mean(other)


def test_training_resumes_from_its_checkpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    opts = TrainOptions(**{**OPTIONS.__dict__, "max_steps": 6, "head_steps": 5})
    first = train_similarity(tiny_corpus, tmp_path, TINY, opts)
    assert first.steps == 6
    with pytest.raises(Conflict, match="--resume"):
        train_similarity(tiny_corpus, tmp_path, TINY, opts)
    more = TrainOptions(**{**opts.__dict__, "max_steps": 10})
    # Phase 1 was finished; resuming re-runs only the head phase, from the same VQ-VAE.
    again = train_similarity(tiny_corpus, tmp_path, None, more, resume=True)
    assert again.steps == 6
    with pytest.raises(NotFound):
        train_similarity(tiny_corpus, tmp_path / "empty", TINY, opts, resume=True)


def test_interrupted_run_continues_where_it_stopped(tiny_corpus: Path, tmp_path: Path) -> None:
    """A checkpoint written mid-phase-1 resumes at its step (the budget here is steps)."""
    import encore.similarity.training as training

    torch.set_num_threads(1)
    opts = TrainOptions(**{**OPTIONS.__dict__, "max_steps": 4, "head_steps": 5, "checkpoint_seconds": 0.0})
    calls = {"n": 0}
    original = training._train_head

    def crash(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt

    training._train_head = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train_similarity(tiny_corpus, tmp_path, TINY, opts)
    finally:
        training._train_head = original
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4 and calls["n"] == 1
    result = train_similarity(tiny_corpus, tmp_path, None, opts, resume=True)
    assert result.steps == 4 and (tmp_path / "model.safetensors").is_file()


def test_supcon_loss_is_lower_for_clustered_embeddings() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(8)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=gen), dim=1)
    clustered = torch.nn.functional.normalize(centres[labels] + 0.05 * torch.randn(32, 16, generator=gen), dim=1)
    scattered = torch.nn.functional.normalize(torch.randn(32, 16, generator=gen), dim=1)
    assert supcon_loss(clustered, labels, 0.1) < supcon_loss(scattered, labels, 0.1)
    assert float(supcon_loss(clustered, torch.arange(32), 0.1)) == 0.0  # no positives at all
