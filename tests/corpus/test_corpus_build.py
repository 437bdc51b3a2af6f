"""The builder on a small subset: manifest correctness, determinism, split, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encore.audio.mel import MelConfig
from encore.corpus.builder import BuildSummary, build_corpus
from encore.corpus.collections import COLLECTIONS, GENRES
from encore.corpus.features import ACTIVE_DB, FLOOR_DB, MIN_ACTIVE_SHARE, frame_level_db
from encore.corpus.manifest import load_build_summary, load_manifest
from encore.corpus.sources import WorkItem, collection_items
from encore.errors import Conflict

from .corpus_helpers import SMALL

SR = 22050
HOP = 512
WIDTH = 128


def test_manifest_lists_every_rendered_piece_with_its_files(small_build: BuildSummary) -> None:
    root = small_build.out_dir
    records = load_manifest(root)
    assert len(records) == small_build.pieces >= 8
    assert {r.collection for r in records} == {"bach", "oneills1850", "essenFolksong"}
    assert len({r.piece_id for r in records}) == len(records)
    # nothing but the manifest's pieces is on disk
    assert {p.stem for p in (root / "audio").iterdir()} == {r.piece_id for r in records}
    assert {p.stem for p in (root / "mel").iterdir()} == {r.piece_id for r in records}
    for r in records:
        assert r.genre == COLLECTIONS[r.collection].genre
        assert r.source.startswith(COLLECTIONS[r.collection].composers[0] + "/")
        genre = GENRES[r.genre]
        assert genre.tempo_range[0] <= r.tempo_scale <= genre.tempo_range[1]
        assert genre.transpose_range[0] <= r.transpose <= genre.transpose_range[1]
        assert r.programs and all(0 <= p <= 127 for p in r.programs)


def test_audio_and_mel_agree_with_the_manifest(small_build: BuildSummary) -> None:
    root = small_build.out_dir
    for r in load_manifest(root):
        info = sf.info(root / r.audio)
        assert (info.samplerate, info.channels, info.format) == (SR, 1, "FLAC")
        assert info.frames / SR == pytest.approx(r.seconds, abs=1e-3)
        assert r.seconds <= SMALL.max_piece_seconds + 1e-6
        mel = np.load(root / r.mel, mmap_mode="r")
        assert mel.dtype == np.float16 and mel.shape == (128, r.n_frames)
        assert r.n_frames == 1 + info.frames // HOP
        values = np.asarray(mel, dtype=np.float32)
        assert values.max() == 0.0 and values.min() >= FLOOR_DB


def test_slices_are_in_range_non_overlapping_and_not_silent(small_build: BuildSummary) -> None:
    root = small_build.out_dir
    total = 0
    for r in load_manifest(root):
        assert r.slices, r.piece_id
        assert list(r.slices) == sorted(set(r.slices))
        assert all(s % WIDTH == 0 and 0 <= s and s + WIDTH <= r.n_frames for s in r.slices)
        levels = frame_level_db(np.load(root / r.mel).astype(np.float32))
        for s in r.slices:
            assert np.mean(levels[s : s + WIDTH] >= ACTIVE_DB) >= MIN_ACTIVE_SHARE
        total += len(r.slices)
    assert total == small_build.slices


def test_mel_config_and_build_summary(small_build: BuildSummary) -> None:
    root = small_build.out_dir
    assert MelConfig.load(root) == MelConfig(x_res=128, y_res=128)
    build = load_build_summary(root)
    records = load_manifest(root)
    assert build["pieces"] == len(records)
    assert build["slices"] == sum(len(r.slices) for r in records)
    assert build["hours"] == pytest.approx(sum(r.seconds for r in records) / 3600, abs=1e-3)
    assert sum(g["pieces"] for g in build["per_genre"].values()) == len(records)
    assert build["seed"] == SMALL.seed and build["settings"]["collections"] == list(SMALL.collections)
    assert build["items_total"] == 12
    assert build["items_processed"] == len(records) + sum(build["failures"].values())


def test_split_is_by_source(small_build: BuildSummary) -> None:
    records = load_manifest(small_build.out_dir)
    split_of: dict[str, set[str]] = {}
    for r in records:
        split_of.setdefault(r.source, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {r.split for r in records} <= {"train", "heldout"}


def test_same_seed_gives_the_same_manifest_with_any_worker_count(
    small_build: BuildSummary, tmp_path: Path
) -> None:
    again = build_corpus(tmp_path / "again", dataclasses.replace(SMALL, workers=2))
    first = (small_build.out_dir / "manifest.jsonl").read_text()
    assert (again.out_dir / "manifest.jsonl").read_text() == first
    # the files too, byte for byte (workers render the pieces in another order)
    for record in load_manifest(again.out_dir):
        for rel in (record.audio, record.mel):
            assert (again.out_dir / rel).read_bytes() == (small_build.out_dir / rel).read_bytes()
    a = json.loads((small_build.out_dir / "build.json").read_text())
    b = json.loads((again.out_dir / "build.json").read_text())
    for key in ("pieces", "hours", "slices", "per_genre", "failures"):
        assert a[key] == b[key]


def test_a_broken_piece_is_skipped_and_counted(tmp_path: Path) -> None:
    good = collection_items(COLLECTIONS["bach"])[:2]
    broken = WorkItem(
        piece_id="folk-broken", collection="essenFolksong", genre="folk_song",
        source="essenFolksong/broken.abc", tune=0, path="essenFolksong/broken.abc",
        text="X:1\nT:broken\nM:4/4\nL:1/4\nK:C\n|: C D E F | [[[ G4 ::: ]]] (((\n",
    )
    no_notes = dataclasses.replace(broken, piece_id="folk-empty", tune=1,
                                   text="X:2\nT:empty\nM:4/4\nK:C\n")
    options = dataclasses.replace(SMALL, collections=None, max_items_per_collection=None)
    summary = build_corpus(tmp_path / "c", options, items=[broken, *good, no_notes])
    assert summary.pieces == 2
    assert sum(summary.failures.values()) == 2
    assert any(reason.startswith("parse:") for reason in summary.failures)
    assert "parse:empty" in summary.failures
    build = load_build_summary(tmp_path / "c")
    assert build["failures"] == summary.failures
    assert {r.piece_id for r in load_manifest(tmp_path / "c")} == {i.piece_id for i in good}
    assert not list((tmp_path / "c" / "audio").glob("folk-*"))


def test_the_hours_cap_is_balanced_across_genres(tmp_path: Path) -> None:
    options = dataclasses.replace(
        SMALL, hours=60 / 3600, max_piece_seconds=10.0, max_items_per_collection=6
    )
    summary = build_corpus(tmp_path / "capped", options)
    # stops once each genre has its third of one minute (each may overshoot by one piece)
    assert 60 <= summary.seconds <= 60 + 10 * 3
    hours = [g["hours"] * 3600 for g in summary.per_genre.values()]
    assert len(hours) == 3 and max(hours) - min(hours) <= 2 * 10 + 1


def test_refuses_to_overwrite_a_corpus_unless_asked(small_build: BuildSummary, tmp_path: Path) -> None:
    target = tmp_path / "c"
    options = dataclasses.replace(SMALL, collections=("bach",), max_items_per_collection=1)
    build_corpus(target, options)
    with pytest.raises(Conflict, match="already holds a corpus"):
        build_corpus(target, options)
    build_corpus(target, dataclasses.replace(options, overwrite=True))
    assert len(load_manifest(target)) == 1


def test_cli_builds_and_prints_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from encore.cli import main

    out = tmp_path / "cli"
    code = main(["corpus", "build", "--out", str(out), "--collections", "bach",
                 "--max-items-per-collection", "2", "--hours", "0", "--workers", "0",
                 "--max-piece-seconds", "10", "--seed", "3", "--no-progress", "--ready"])
    assert code == 0
    printed = capsys.readouterr().out
    pieces = len(load_manifest(out))
    assert f"{pieces} pieces" in printed and "bach_chorale" in printed and "slices" in printed
    assert (out / "READY").is_file()
    assert main(["corpus", "info", str(out)]) == 0
    assert f"{pieces} pieces" in capsys.readouterr().out
