"""Exact nearest-neighbour search, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from encore.errors import Conflict, InvalidInput, NotFound
from encore.similarity.bench import random_representations
from encore.similarity.index import SimilarityIndex
from encore.similarity.representation import similarity


def _brute_force(query, reps, ids, k, exclude=()):
    scored = [(similarity(query, r), i) for r, i in zip(reps, ids, strict=True) if i not in set(exclude)]
    scored.sort(key=lambda t: -t[0])
    return scored[:k]


@pytest.fixture(scope="module")
def reps():
    return random_representations(300, codebook_size=64, embedding_dim=16, feature_dim=4, alpha=0.8, seed=5)


def test_search_returns_the_exact_top_k(reps, rng: np.random.Generator) -> None:
    ids = [f"clip-{i}" for i in range(250)]
    index = SimilarityIndex.from_representations(ids, reps[:250])
    for query in reps[250:270]:
        got = index.search(query, k=7)
        want = _brute_force(query, reps[:250], ids, 7)
        assert [n.similarity for n in got] == pytest.approx([s for s, _ in want], abs=1e-5)
        # Exact ids too, unless two scores tie within float error.
        gaps = np.diff([s for s, _ in want])
        if np.all(np.abs(gaps) > 1e-5):
            assert [n.id for n in got] == [i for _, i in want]


def test_search_respects_exclusions(reps, rng: np.random.Generator) -> None:
    ids = list(range(250))
    index = SimilarityIndex.from_representations(ids, reps[:250])
    for query in reps[250:265]:
        plain = [n.id for n in index.search(query, k=10)]
        exclude = set(plain[:3]) | set(rng.choice(250, size=40, replace=False).tolist()) | {"unknown"}
        got = index.search(query, k=10, exclude=exclude)
        want = _brute_force(query, reps[:250], ids, 10, exclude)
        assert not exclude & {n.id for n in got}
        assert [n.similarity for n in got] == pytest.approx([s for s, _ in want], abs=1e-5)


def test_search_when_few_items_are_allowed(reps) -> None:
    index = SimilarityIndex.from_representations(["a", "b", "c"], reps[:3])
    assert [n.id for n in index.search(reps[0], k=10)][0] == "a"
    assert len(index.search(reps[0], k=10)) == 3
    assert [n.id for n in index.search(reps[0], k=10, exclude=["a", "b"])] == ["c"]
    assert index.search(reps[0], k=5, exclude=["a", "b", "c"]) == []
    assert index.search(reps[0], k=1)[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_add_remove_keep_the_index_consistent(reps) -> None:
    index = SimilarityIndex(alpha=0.8, dim=80)
    assert index.search(reps[0]) == []
    for i, r in enumerate(reps[:40]):
        index.add(i, r)
    for i in range(0, 40, 3):
        index.remove(i)
    kept = [i for i in range(40) if i % 3]
    assert sorted(index.ids) == kept and len(index) == len(kept)
    query = reps[100]
    want = _brute_force(query, [reps[i] for i in kept], kept, 5)
    assert [n.similarity for n in index.search(query, 5)] == pytest.approx([s for s, _ in want], abs=1e-5)
    sims = index.similarities(query)
    assert sims.shape == (len(kept),) and np.all((sims >= 0) & (sims <= 1))
    with pytest.raises(Conflict):
        index.add(1, reps[1])
    with pytest.raises(NotFound):
        index.remove(0)


def test_index_rejects_foreign_representations(reps) -> None:
    index = SimilarityIndex(alpha=0.8, dim=80)
    other = random_representations(1, codebook_size=32, embedding_dim=16, feature_dim=4, alpha=0.8)[0]
    with pytest.raises(InvalidInput, match="does not match"):
        index.add("x", other)
    with pytest.raises(InvalidInput, match="k="):
        index.search(reps[0], k=0)
