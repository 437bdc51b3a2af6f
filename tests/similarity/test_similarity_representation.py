"""Representations of songs and sets, and the similarity S(a, b)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.similarity.bench import random_representations
from encore.similarity.representation import Representation, bhattacharyya, similarity

from .similarity_helpers import random_songs


def test_set_representation_is_invariant_to_song_order(tiny_model, rng: np.random.Generator) -> None:
    songs = random_songs(rng, 4)
    reps = [tiny_model.represent(s) for s in songs]
    reference = tiny_model.represent_set(reps).to_vector()
    for perm in itertools.permutations(range(4)):
        got = tiny_model.represent_set([reps[i] for i in perm]).to_vector()
        np.testing.assert_array_equal(got, reference)
    # Songs given as slices in another order give the same set too.
    np.testing.assert_array_equal(tiny_model.represent_songs(songs[::-1]).to_vector(), reference)


def test_set_histogram_pools_code_counts(tiny_model, rng: np.random.Generator) -> None:
    songs = random_songs(rng, 3)
    set_rep = tiny_model.represent_set([tiny_model.represent(s) for s in songs])
    # Eq. 3: the set's histogram is the histogram of all slices of all songs together.
    all_slices = tiny_model.represent(np.concatenate(songs))
    np.testing.assert_allclose(set_rep.histogram, all_slices.histogram, atol=1e-6)
    np.testing.assert_allclose(set_rep.features, all_slices.features, atol=1e-5)
    assert set_rep.weight == sum(s.shape[0] for s in songs) * tiny_model.config.tokens_per_slice
    assert set_rep.histogram.shape == (tiny_model.config.codebook_size,)


def test_similarity_is_symmetric_bounded_and_one_on_itself() -> None:
    reps = random_representations(12, codebook_size=32, embedding_dim=8, feature_dim=4, alpha=0.6, seed=1)
    for a, b in itertools.product(reps, reps):
        s_ab, s_ba = similarity(a, b), similarity(b, a)
        assert s_ab == pytest.approx(s_ba, abs=1e-12)
        assert 0.0 <= s_ab <= 1.0
    for a in reps:
        assert similarity(a, a) == pytest.approx(1.0, abs=1e-6)


def test_similarity_extremes_reach_zero_and_one() -> None:
    h1, h2 = np.zeros(4), np.zeros(4)
    h1[:2], h2[2:] = 0.5, 0.5  # disjoint code usage
    e = np.array([1.0, 0.0])
    a = Representation(h1, np.zeros(2), e, 10.0, 0.5)
    b = Representation(h2, np.zeros(2), -e, 10.0, 0.5)
    assert similarity(a, b) == pytest.approx(0.0, abs=1e-7)
    assert bhattacharyya(h1, h2) == 0.0
    c = Representation(h1, np.ones(2), e, 99.0, 0.5)  # same histogram and embedding
    assert similarity(a, c) == pytest.approx(1.0)


def test_search_vector_gives_s_as_a_dot_product() -> None:
    reps = random_representations(6, codebook_size=16, embedding_dim=4, feature_dim=2, alpha=0.8, seed=2)
    for a, b in itertools.product(reps, reps):
        dot = 0.8 / 2 + float(a.search_vector() @ b.search_vector())
        assert dot == pytest.approx(similarity(a, b), abs=1e-5)
    assert np.linalg.norm(reps[0].search_vector()) == pytest.approx(np.sqrt(1 - 0.8 / 2), abs=1e-6)


def test_vector_and_bytes_round_trip(tiny_model, rng: np.random.Generator) -> None:
    rep = tiny_model.represent(random_songs(rng, 1)[0])
    again = Representation.from_vector(rep.to_vector())
    np.testing.assert_array_equal(again.to_vector(), rep.to_vector())
    assert Representation.from_bytes(rep.to_bytes()).weight == rep.weight
    assert similarity(rep, again) == pytest.approx(1.0)
    k, e, f = tiny_model.config.codebook_size, tiny_model.config.embedding_dim, tiny_model.config.feature_dim
    assert rep.to_vector().shape == (6 + k + f + e,)
    assert rep.to_vector().dtype == np.float32


@pytest.mark.parametrize(
    "vector",
    [np.zeros(3), np.array([2.0, 1, 1, 1, 0.5, 1, 1, 0, 1]), np.array([1.0, 2, 1, 1, 0.5, 1, 1, 0, 1])],
)
def test_bad_vectors_are_rejected(vector: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        Representation.from_vector(vector)


def test_invalid_representations_and_mismatched_models_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="sum to 1"):
        Representation(np.array([0.2, 0.2]), np.zeros(1), np.ones(2), 1.0, 0.5)
    with pytest.raises(InvalidInput, match="weight"):
        Representation(np.array([0.5, 0.5]), np.zeros(1), np.ones(2), 0.0, 0.5)
    a = Representation(np.array([0.5, 0.5]), np.zeros(1), np.ones(2), 1.0, 0.5)
    b = Representation(np.array([0.5, 0.25, 0.25]), np.zeros(1), np.ones(2), 1.0, 0.5)
    c = Representation(np.array([0.5, 0.5]), np.zeros(1), np.ones(2), 1.0, 0.7)
    with pytest.raises(InvalidInput, match="different models"):
        similarity(a, b)
    with pytest.raises(InvalidInput, match="alpha"):
        similarity(a, c)


def test_slices_are_validated(tiny_model) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        tiny_model.represent(np.zeros((2, 16, 32), dtype=np.uint8))
    with pytest.raises(InvalidInput, match=r"\[-1, 1\]"):
        tiny_model.represent(np.full((1, 32, 32), 3.0, dtype=np.float32))
    with pytest.raises(InvalidInput, match="no slices"):
        tiny_model.represent(np.zeros((0, 32, 32), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="at least one"):
        tiny_model.represent_set([])


def test_uint8_and_float_slices_agree(tiny_model, rng: np.random.Generator) -> None:
    song = random_songs(rng, 1)[0]
    as_float = song.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(tiny_model.represent(song).to_vector(),
                               tiny_model.represent(as_float).to_vector(), atol=1e-6)
