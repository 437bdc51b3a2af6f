from __future__ import annotations

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.feedback import Candidate, DatasetClip, curate


def _dataset() -> list[DatasetClip]:
    return [DatasetClip("d1", 0.50), DatasetClip("d2", 0.80), DatasetClip("d3", 0.40)]


def test_joins_only_when_it_beats_its_nearest_dataset_clip() -> None:
    cands = [Candidate("g1", 0.70, 0.6, 3),   # nearest d2 (0.80): rejected though > d1, d3
             Candidate("g2", 0.70, 0.6, 4),   # nearest d1 (0.50): admitted
             Candidate("g3", 0.50, 0.6, 5)]   # nearest d1 (0.50): a tie is not a win
    sim = np.array([[0.3, 0.9, 0.1],
                    [0.8, 0.2, 0.7],
                    [0.9, 0.1, 0.2]])
    d1, d2, d3 = curate(cands, _dataset(), sim)
    assert (d1.action, d1.baseline_id, d1.baseline_score, d1.similarity) == ("reject", "d2", 0.8,
                                                                            0.9)
    assert "does not beat" in d1.reason and "'d2'" in d1.reason
    assert (d2.action, d2.baseline_id, d2.confidence) == ("admit", "d1", 0.6)
    assert "beats its nearest dataset clip 'd1'" in d2.reason
    assert (d3.action, d3.baseline_id) == ("reject", "d1")


def test_needs_m_ratings_first() -> None:
    (d,) = curate([Candidate("g", 0.99, 0.9, 2)], _dataset(), np.ones((1, 3)), min_ratings=3)
    assert (d.action, d.reason) == ("pending", "needs 3 ratings, has 2")
    (d,) = curate([Candidate("g", 0.99, 0.9, 5)], _dataset(), np.ones((1, 3)), min_ratings=5)
    assert d.action == "admit"


def test_margin_demands_a_clear_win() -> None:
    c = [Candidate("g", 0.55, 0.5, 3)]
    sim = np.array([[1.0, 0.0, 0.0]])
    assert curate(c, _dataset(), sim)[0].action == "admit"
    assert curate(c, _dataset(), sim, margin=0.1)[0].action == "reject"


def test_similarity_ties_compare_with_the_smallest_dataset_id() -> None:
    ds = [DatasetClip("b", 0.9), DatasetClip("a", 0.1)]
    (d,) = curate([Candidate("g", 0.5, 0.5, 3)], ds, np.array([[0.7, 0.7]]))
    assert (d.baseline_id, d.action) == ("a", "admit")


def test_cold_start_takes_the_top_n_with_enough_ratings() -> None:
    cands = [Candidate(f"g{i}", score, 0.5, n) for i, (score, n) in
             enumerate([(0.9, 1), (0.8, 3), (0.7, 3), (0.6, 4), (0.5, 3), (0.95, 2)])]
    decisions = {d.clip_id: d for d in curate(cands, [], None, min_ratings=3, cold_start_top_n=2)}
    assert {k for k, d in decisions.items() if d.action == "admit"} == {"g1", "g2"}
    assert {k for k, d in decisions.items() if d.action == "pending"} == {"g0", "g5"}
    assert {k for k, d in decisions.items() if d.action == "reject"} == {"g3", "g4"}
    assert "rank 1 of 4" in decisions["g1"].reason
    assert "outside the top 2" in decisions["g4"].reason


def test_cold_start_with_few_rated_clips_admits_only_the_better_half() -> None:
    # the full pilot's case: N = 100 but only a few rated clips -> not all of them join
    scores = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6]
    cands = [Candidate(f"g{i}", s, 0.5, 3) for i, s in enumerate(scores)]
    decisions = {d.clip_id: d for d in curate(cands, [], cold_start_top_n=100)}
    admitted = {k for k, d in decisions.items() if d.action == "admit"}
    assert admitted == {"g0", "g2", "g4", "g6"}  # ceil(7 / 2) = 4 best by R
    assert all(decisions[k].action == "reject" for k in ("g1", "g3", "g5"))
    assert "at most 50% of 7 rated" in decisions["g5"].reason
    # with many rated clips the top N binds, not the share
    many = [Candidate(i, i / 1000, 0.5, 3) for i in range(300)]
    top = [d.clip_id for d in curate(many, [], cold_start_top_n=100) if d.action == "admit"]
    assert sorted(top) == list(range(200, 300))


@pytest.mark.parametrize(("share", "n_admitted"), [(1.0, 7), (0.3, 3), (0.01, 1)])
def test_cold_start_share_is_a_setting(share: float, n_admitted: int) -> None:
    cands = [Candidate(f"g{i}", i / 10, 0.5, 3) for i in range(7)]
    admitted = [d.clip_id for d in curate(cands, [], cold_start_top_n=100,
                                          cold_start_max_share=share) if d.action == "admit"]
    assert sorted(admitted) == [f"g{i}" for i in range(7 - n_admitted, 7)]


def test_cold_start_ties_are_broken_deterministically() -> None:
    cands = [Candidate("c", 0.7, 0.5, 3), Candidate("b", 0.7, 0.6, 3), Candidate("a", 0.7, 0.5, 3),
             Candidate("d", 0.7, 0.5, 4)]
    admitted = [d.clip_id for d in curate(cands, [], cold_start_top_n=3, cold_start_max_share=1.0)
                if d.action == "admit"]
    assert set(admitted) == {"b", "d", "a"}  # confidence, then ratings, then id


def test_decisions_do_not_depend_on_candidate_order(rng: np.random.Generator) -> None:
    cands = [Candidate(i, float(s), 0.5, 3) for i, s in enumerate(rng.uniform(0, 1, 20))]
    ds = [DatasetClip(f"d{j}", float(s)) for j, s in enumerate(rng.uniform(0, 1, 6))]
    sim = rng.uniform(0, 1, (20, 6))
    forward = {d.clip_id: d for d in curate(cands, ds, sim)}
    perm = rng.permutation(20)
    backward = {d.clip_id: d for d in curate([cands[k] for k in perm], ds, sim[perm])}
    assert forward == backward


def test_clip_already_in_the_dataset_is_rejected() -> None:
    (d,) = curate([Candidate("d1", 0.9, 0.5, 3)], _dataset(), np.ones((1, 3)))
    assert (d.action, d.reason) == ("reject", "already in the dataset")


def test_bad_inputs_raise() -> None:
    with pytest.raises(InvalidInput, match="similarity has shape"):
        curate([Candidate("g", 0.5, 0.5, 3)], _dataset(), np.ones((1, 2)))
    with pytest.raises(InvalidInput, match="is required"):
        curate([Candidate("g", 0.5, 0.5, 3)], _dataset(), None)
    with pytest.raises(InvalidInput, match=r"similarity\[0, 1\]=1.2"):
        curate([Candidate("g", 0.5, 0.5, 3)], _dataset(), np.array([[0.1, 1.2, 0.3]]))
    with pytest.raises(InvalidInput, match="score of clip 'g'=1.5"):
        Candidate("g", 1.5, 0.5, 3)
    with pytest.raises(InvalidInput, match="appears more than once"):
        curate([Candidate("g", 0.5, 0.5, 3)] * 2, [], None)
    with pytest.raises(InvalidInput, match="cold_start_max_share=0"):
        curate([Candidate("g", 0.5, 0.5, 3)], [], None, cold_start_max_share=0)


def test_centred_scores_remove_rater_bias_and_song_level():
    from encore.feedback import centred_scores, curate_centred

    # song A's clips usually get 4, song B's 2; rater "harsh" gives 1 star less than it means
    ratings = [("kind", "a1", 4.0), ("kind", "a2", 4.0), ("kind", "a3", 5.0),
               ("kind", "b1", 2.0), ("kind", "b2", 2.0), ("harsh", "b3", 2.0),
               ("harsh", "a1", 3.0)]
    songs = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "b3": "B"}
    scores = centred_scores(ratings, songs, {"harsh": -1.0}, {}, pseudo_count=0.001)
    # a3 beats song A's usual; b3 from the harsh rater is above song B's usual once its bias
    # is removed; a 4-star clip of song A is just usual
    assert scores["a3"].score > 0.5 and scores["b3"].score > 0.5
    assert abs(scores["a2"].score) < 0.3
    # a flagged rater (weight 0) is left out
    assert centred_scores(ratings, songs, {}, {"kind": 0.0, "harsh": 0.0}) == {}
    decisions = {d.clip_id: d.action for d in curate_centred(
        list(scores.values()), {"a1"}, min_ratings=1, margin=0.25)}
    assert decisions["a3"] == "admit" and decisions["a2"] == "reject"
    assert decisions["a1"] == "reject"  # already in the dataset
    with pytest.raises(InvalidInput):
        centred_scores(ratings, songs, {}, {}, pseudo_count=0)
