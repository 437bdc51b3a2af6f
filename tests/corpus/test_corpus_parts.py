"""Pure parts of the pipeline: slice selection, the balanced cap, ordering, synthesis."""

from __future__ import annotations

import numpy as np
import pytest

from encore.audio.mel import MelConfig
from encore.corpus.builder import HourBalancer, ordered_items
from encore.corpus.features import piece_mel_db, select_slices
from encore.corpus.render import Part, PieceFailed, synthesize
from encore.corpus.sources import WorkItem

CFG = MelConfig(x_res=128, y_res=128)


def _item(genre: str, i: int) -> WorkItem:
    return WorkItem(f"{genre}-{i}", genre, genre, f"{genre}/{i}.abc", None, f"/x/{genre}/{i}.abc")


def _tone(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * CFG.sample_rate)) / CFG.sample_rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_select_slices_skips_silent_windows(rng: np.random.Generator) -> None:
    # 3 windows of tone, 2 of silence, 2 of tone, then a partial window
    w = CFG.slice_samples + 1
    audio = np.concatenate([_tone(3 * w / CFG.sample_rate, rng), np.zeros(2 * w, np.float32),
                            _tone(2.5 * w / CFG.sample_rate, rng)])
    db = piece_mel_db(audio, CFG)
    assert db.dtype == np.float16 and db.shape == (128, 1 + audio.size // CFG.hop_length)
    assert select_slices(db, 128) == [0, 128, 256, 640, 768]


def test_select_slices_of_a_short_piece_is_empty(rng: np.random.Generator) -> None:
    assert select_slices(piece_mel_db(_tone(1.0, rng), CFG), 128) == []


def test_synthesize_renders_notes_at_their_times() -> None:
    notes = np.array([[1.0, 1.5, 69, 100], [2.0, 2.5, 72, 100]], dtype=np.float64)
    audio, programs = synthesize([Part(notes)], (40,), sample_rate=22050, tempo_scale=2.0)
    assert programs == (40,)
    # the first note moves to 0; at double speed the second starts at 0.5 s and ends at 0.75 s
    assert audio.dtype == np.float32 and np.abs(audio).max() == pytest.approx(0.891, abs=1e-3)
    assert len(audio) == pytest.approx((0.75 + 1.0) * 22050, abs=2)
    rms = [float(np.sqrt(np.mean(audio[int(a * 22050) : int(b * 22050)] ** 2)))
           for a, b in ((0.05, 0.2), (0.55, 0.7), (1.6, 1.75))]
    assert rms[0] > 0.05 and rms[1] > 0.05 and rms[2] < rms[0] / 10


def test_synthesize_does_not_depend_on_what_was_rendered_before() -> None:
    a = Part(np.array([[0.0, 1.0, 60, 100], [0.5, 2.0, 64, 90]], dtype=np.float64))
    loud = Part(np.array([[0.0, 3.0, 48, 127], [0.1, 3.0, 55, 127]], dtype=np.float64))
    first, _ = synthesize([a], (0,), sample_rate=22050)
    synthesize([loud], (48,), sample_rate=22050, max_seconds=1.0)  # cut while sounding
    again, _ = synthesize([a], (0,), sample_rate=22050)
    np.testing.assert_array_equal(first, again)


def test_synthesize_caps_the_length_and_drops_unplayable_notes() -> None:
    notes = np.array([[0.0, 50.0, 60, 90], [10.0, 11.0, 126, 90]], dtype=np.float64)
    audio, _ = synthesize([Part(notes)], (0,), sample_rate=22050, transpose=5, max_seconds=3.0)
    assert len(audio) == 3 * 22050
    with pytest.raises(PieceFailed) as info:
        synthesize([Part(notes[1:])], (0,), sample_rate=22050, transpose=5)
    assert info.value.reason == "render:no_notes"


def test_ordered_items_interleave_genres_and_depend_on_the_seed() -> None:
    items = [_item(g, i) for g in ("b", "a") for i in range(5)] + [_item("c", 0)]
    order = ordered_items(items, seed=0)
    assert [i.genre for i in order[:3]] == ["a", "b", "c"]
    assert [i.genre for i in order[3:5]] == ["a", "b"]
    assert sorted(i.piece_id for i in order) == sorted(i.piece_id for i in items)
    assert ordered_items(items, seed=0) == order
    assert ordered_items(items, seed=1) != order
    subset = ordered_items(items, seed=0, max_items_per_collection=2)
    assert len(subset) == 5 and {i.piece_id for i in subset} <= {i.piece_id for i in items}


def test_ordered_items_spread_heldout_pieces_through_each_genre() -> None:
    items = [_item("a", i) for i in range(100)]
    splits = {i.source: ("heldout" if n % 10 == 0 else "train") for n, i in enumerate(items)}
    order = ordered_items(items, seed=3, splits=splits)
    assert sorted(i.piece_id for i in order) == sorted(i.piece_id for i in items)
    flags = np.array([splits[i.source] == "heldout" for i in order])
    for k in (10, 20, 35, 50, 100):
        assert abs(flags[:k].sum() - 0.1 * k) <= 1


def test_hour_balancer_shares_the_budget_and_passes_on_what_a_genre_leaves() -> None:
    # genre "a" has only one item; "b" and "c" have plenty
    order = ordered_items([_item("a", 0)] + [_item(g, i) for g in "bc" for i in range(50)], seed=0)
    balancer = HourBalancer(order, budget_seconds=300.0)
    assert balancer.quota("b") == pytest.approx(100.0)
    accepted = {"a": 0.0, "b": 0.0, "c": 0.0}
    for index, item in enumerate(order):
        if balancer.done():
            break
        if not balancer.full(item.genre):
            balancer.add(item.genre, 10.0)
            accepted[item.genre] += 10.0
        balancer.passed(index, item.genre)
    # "a" leaves 90 s: "b" and "c" get (300 - 10) / 2 = 145 s each, overshooting by < 1 piece
    assert accepted == {"a": 10.0, "b": 150.0, "c": 150.0}
    assert balancer.done() and balancer.exhausted == {"a"}


def test_hour_balancer_without_budget_accepts_everything() -> None:
    balancer = HourBalancer([_item("a", 0)], None)
    balancer.add("a", 1e9)
    assert not balancer.full("a") and not balancer.done()


def test_tunes_whose_measures_share_a_time_signature_convert_to_midi() -> None:
    # music21's ABC reader puts one TimeSignature object into several measures of this
    # Essen tune; the MIDI conductor track used to refuse it (StreamException).
    from encore.corpus.collections import COLLECTIONS
    from encore.corpus.render import midi_parts, parse_item, score_to_midi
    from encore.corpus.sources import collection_items

    item = next(i for i in collection_items(COLLECTIONS["essenFolksong"])
                if i.piece_id == "essenFolksong-han2-t0367")
    score = parse_item(item)
    tied_notes = len(list(parse_item(item).stripTies().recurse().notes))
    parts = midi_parts(score_to_midi(score))
    assert len(parts) == 1 and len(parts[0].notes) == tied_notes
