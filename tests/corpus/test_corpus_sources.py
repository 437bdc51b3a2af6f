"""Song-book splitting, collection enumeration, variations and the split by source."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from encore.corpus.collections import (
    COLLECTIONS,
    GENRES,
    SCORE_EXTENSIONS,
    collection_paths,
    resolve_collections,
)
from encore.corpus.sources import items_for_file, piece_id_for, split_abc_book
from encore.corpus.variation import HELDOUT, TRAIN, assign_splits, choose_variation
from encore.errors import InvalidInput

BOOK = """% a song book
% comment lines are not copied
M:6/8
L:1/8

X:1
T:First
K:G
GAB c2d|

X: 2
T:Second
M:2/4
K:D
DEF A2|

X:3
T:Third
K:Am
ABc e2|
"""


def test_split_abc_book_gives_one_text_per_tune_with_the_file_header() -> None:
    tunes = split_abc_book(BOOK)
    assert [t.splitlines()[0].replace(" ", "") for t in tunes] == ["X:1", "X:2", "X:3"]
    assert all(t.count("X:") == 1 for t in tunes)
    # the file header's fields are repeated in every tune, comments are not
    assert all("M:6/8" in t and "L:1/8" in t for t in tunes)
    assert all("comment" not in t for t in tunes)
    # a tune's own field comes after the header's, so it wins when parsed
    second = tunes[1]
    assert second.index("M:6/8") < second.index("M:2/4")
    assert "GAB c2d" in tunes[0] and "DEF A2" in tunes[1] and "ABc e2" in tunes[2]


def test_split_abc_book_without_tunes_is_empty() -> None:
    assert split_abc_book("% nothing here\nT:no X line\n") == []


def test_split_tunes_parse_separately() -> None:
    from music21 import converter

    for tune in split_abc_book(BOOK):
        score = converter.parseData(tune, format="abc")
        assert len(score.recurse().notes) >= 4


def test_book_items_share_their_source(tmp_path: Path) -> None:
    path = tmp_path / "book.abc"
    path.write_text(BOOK)
    items = items_for_file(COLLECTIONS["essenFolksong"], path, source="essenFolksong/book.abc")
    assert [i.tune for i in items] == [0, 1, 2]
    assert {i.source for i in items} == {"essenFolksong/book.abc"}
    assert len({i.piece_id for i in items}) == 3
    assert all(i.text and i.text.lstrip().startswith("X:") for i in items)


def test_piece_ids_are_file_name_safe() -> None:
    pid = piece_id_for("classical", "mozart/k155/movement1.mxl", None)
    assert pid == "classical-mozart_k155_movement1"
    assert piece_id_for("bach", "bach/bwv1.6.mxl", None) == "bach-bwv1.6"
    assert piece_id_for("oneills1850", "oneills1850/0001-0050.abc", 3).endswith("-t0003")
    assert "/" not in pid and " " not in piece_id_for("trecento", "trecento/a b (c).xml", None)


@pytest.mark.parametrize("name", ["bach", "oneills1850", "trecento"])
def test_collection_paths_are_scores_of_the_music21_corpus(name: str) -> None:
    paths = collection_paths(COLLECTIONS[name])
    assert len(paths) > 30
    assert all(p.is_file() and p.suffix.lower() in SCORE_EXTENSIONS for p in paths)


def test_resolve_collections_rejects_unknown_names() -> None:
    assert [c.name for c in resolve_collections(["bach", "essenFolksong"])] == ["bach", "essenFolksong"]
    with pytest.raises(InvalidInput, match="nope"):
        resolve_collections(["bach", "nope"])


def test_default_collections_cover_at_least_six_genres() -> None:
    genres = {c.genre for c in COLLECTIONS.values()}
    assert len(genres) >= 6 and genres <= set(GENRES)


def test_variation_is_a_function_of_seed_and_piece() -> None:
    genre = GENRES["classical"]
    a = choose_variation(genre, 4, 3, "piece-a")
    assert choose_variation(genre, 4, 3, "piece-a") == a
    assert len({choose_variation(genre, 4, seed, "piece-a") for seed in range(10)}) > 5
    drawn = [choose_variation(genre, 4, s, f"p{s}") for s in range(200)]
    allowed = set(genre.palette) | {p for e in genre.ensembles for p in e}
    for v in drawn:
        assert len(v.programs) == 4 and set(v.programs) <= allowed
        assert genre.tempo_range[0] <= v.tempo_scale <= genre.tempo_range[1]
        assert genre.transpose_range[0] <= v.transpose <= genre.transpose_range[1]
    # there is variation in each dimension
    assert len({v.programs for v in drawn}) > 20
    assert len({v.transpose for v in drawn}) == genre.transpose_range[1] - genre.transpose_range[0] + 1
    assert Counter(v.mode for v in drawn).keys() == {"unison", "ensemble", "mixed"}


def test_assign_splits_is_by_source_and_weighted_by_pieces() -> None:
    rng = np.random.default_rng(0)
    counts = {
        "books": {f"books/b{i}.abc": int(rng.integers(5, 400)) for i in range(30)},
        "files": {f"files/f{i}.mxl": 1 for i in range(200)},
        "single": {"single/only.xml": 1},
    }
    splits = assign_splits(counts, seed=5, fraction=0.1)
    assert splits == assign_splits(counts, seed=5, fraction=0.1)
    assert splits != assign_splits(counts, seed=6, fraction=0.1)
    assert set(splits) == {s for c in counts.values() for s in c}
    for name in ("books", "files"):
        held = [s for s in counts[name] if splits[s] == HELDOUT]
        pieces_held = sum(counts[name][s] for s in held)
        total = sum(counts[name].values())
        assert 1 <= len(held) < len(counts[name])
        # at least the fraction of pieces, overshooting by at most one source
        assert 0.1 * total <= pieces_held <= 0.1 * total + max(counts[name].values())
    assert splits["single/only.xml"] == TRAIN
