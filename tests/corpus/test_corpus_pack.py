"""``encore corpus pack`` / ``unpack``: round trip within the quantisation step, a checksum that
catches corruption before anything is written, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encore.cli import main
from encore.corpus.crops import CropTensor
from encore.corpus.dataset import SpectrogramDataset
from encore.corpus.manifest import load_manifest
from encore.corpus.pack import FLOOR_DB, dequantise, pack_corpus, quantise, unpack_corpus
from encore.errors import Conflict, InvalidInput, NotFound

from .synthetic import write_synthetic_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_synthetic_corpus(tmp_path / "corpus")


def test_quantisation_is_within_half_a_step() -> None:
    db = np.linspace(FLOOR_DB, 0.0, 10_001)
    for levels in (47, 255):
        back = dequantise(quantise(db, levels), levels)
        step = -FLOOR_DB / levels
        assert np.abs(back - db).max() <= step / 2 + 1e-4
        assert quantise(db, levels).max() == levels and quantise(db, levels).min() == 0


def test_round_trip_keeps_metadata_and_spectrograms_within_the_step(corpus: Path, tmp_path: Path) -> None:
    packed = pack_corpus(corpus, tmp_path / "c.pack")
    assert packed.pieces == 8 and packed.packed_bytes == (tmp_path / "c.pack").stat().st_size
    assert packed.packed_bytes < packed.quantised_bytes  # it compresses
    out = unpack_corpus(tmp_path / "c.pack", tmp_path / "unpacked")
    assert out.sha256 == packed.sha256 and out.frames == packed.frames
    for name in ("manifest.jsonl", "mel_config.json", "build.json"):
        assert (out.path / name).read_text() == (corpus / name).read_text()
    assert (out.path / "READY").is_file()
    info = json.loads((out.path / "pack.json").read_text())
    assert info["sha256"] == packed.sha256 and info["audio"] is False
    step = info["quantisation"]["step_db"]
    for record in load_manifest(corpus):
        a = np.load(corpus / record.mel).astype(np.float32)
        b = np.load(out.path / record.mel)
        assert b.dtype == np.float16 and b.shape == a.shape
        assert np.abs(b.astype(np.float32) - a).max() <= step / 2 + 0.05  # + float16 rounding


def test_training_crops_of_the_unpacked_corpus_match_within_the_step(corpus: Path, tmp_path: Path) -> None:
    pack_corpus(corpus, tmp_path / "c.pack", levels=255)
    unpacked = unpack_corpus(tmp_path / "c.pack", tmp_path / "u").path
    for split in ("train", "heldout"):
        a = SpectrogramDataset(corpus, split=split, width=16, random_offset=False)
        b = SpectrogramDataset(unpacked, split=split, width=16, random_offset=False)
        assert len(a) == len(b) > 0
        diff = max(float((a[i][0] - b[i][0]).abs().max()) for i in range(len(a)))
        # two half-steps (the value and the crop's maximum) in units of 2/top_db, + float16
        assert diff <= (100 / 255) * 2 / 80 + 2e-3


def test_a_corrupted_pack_is_refused_before_anything_is_written(corpus: Path, tmp_path: Path) -> None:
    pack = pack_corpus(corpus, tmp_path / "c.pack").path
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.pack"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="checksum"):
        unpack_corpus(bad, tmp_path / "u")
    assert not (tmp_path / "u").exists()
    truncated = tmp_path / "short.pack"
    truncated.write_bytes(pack.read_bytes()[:-100])
    with pytest.raises(InvalidInput, match="corrupted or truncated"):
        unpack_corpus(truncated, tmp_path / "u")
    other = tmp_path / "other.bin"
    other.write_bytes(b"PK\x03\x04 not a pack at all, just some bytes")
    with pytest.raises(InvalidInput, match="not an encore corpus pack"):
        unpack_corpus(other, tmp_path / "u")
    with pytest.raises(NotFound):
        unpack_corpus(tmp_path / "missing.pack", tmp_path / "u")
    assert not (tmp_path / "u").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".u.tmp")]


def test_pack_and_unpack_refuse_to_overwrite_and_name_bad_input(corpus: Path, tmp_path: Path) -> None:
    pack = pack_corpus(corpus, tmp_path / "c.pack").path
    with pytest.raises(Conflict, match="already exists"):
        pack_corpus(corpus, pack)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(Conflict, match="not empty"):
        unpack_corpus(pack, tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert unpack_corpus(pack, tmp_path / "empty").pieces == 8  # an empty folder is fine
    with pytest.raises(InvalidInput, match="levels"):
        pack_corpus(corpus, tmp_path / "x.pack", levels=300)
    np.save(corpus / "mel" / "p001.npy", np.full((16, 80), 3.0, dtype=np.float16))
    with pytest.raises(InvalidInput, match="p001"):
        pack_corpus(corpus, tmp_path / "y.pack")
    (corpus / "mel" / "p001.npy").unlink()
    with pytest.raises(NotFound, match="p001"):
        pack_corpus(corpus, tmp_path / "y.pack")
    assert not (tmp_path / "y.pack").exists()


def test_cli_packs_unpacks_and_reports_a_corrupted_file_in_one_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "c.pack"
    assert main(["corpus", "pack", "--corpus", str(corpus), "--out", str(pack)]) == 0
    out = capsys.readouterr().out
    assert "packed 8 pieces" in out and "sha256" in out
    assert main(["corpus", "unpack", str(pack), "--out", str(tmp_path / "u")]) == 0
    assert "verified" in capsys.readouterr().out
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    assert main(["corpus", "unpack", str(pack), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "checksum" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_crop_tensor_cuts_the_datasets_crops(corpus: Path) -> None:
    """The batch path cuts exactly the dataset's crops: slices as they are, offsets clipped."""
    import torch

    held = SpectrogramDataset(corpus, split="heldout", width=16)
    crops = held.crop_tensor("cpu")
    assert isinstance(crops, CropTensor) and len(crops) == len(held) and not crops.random_offset
    batch = crops.crops(torch.arange(len(held)))
    assert batch.shape == (len(held), 1, 16, 16) and batch.dtype == torch.float32
    for i in range(len(held)):
        torch.testing.assert_close(batch[i], held[i][0], rtol=0, atol=1e-6)
    train = SpectrogramDataset(corpus, split="train", width=16, random_offset=False)
    tc = SpectrogramDataset(corpus, split="train", width=16).crop_tensor("cpu")
    assert tc.random_offset
    index = torch.tensor([0, 1, len(train) - 1, 2])
    shifts = torch.tensor([-8, 8, 8, -100])  # the last two leave the piece and are clipped
    got = tc.crops(index, shifts)
    for row, (i, s) in enumerate(zip(index.tolist(), shifts.tolist(), strict=True)):
        piece_id, start = train.slice_start(i)
        mel = np.load(corpus / "mel" / f"{piece_id}.npy").astype(np.float32)
        begin = min(max(0, start + s), mel.shape[1] - 16)
        crop = mel[:, begin : begin + 16]
        crop = np.maximum(crop - crop.max(), -80.0)
        expected = torch.from_numpy((crop + 80.0) * (2.0 / 80.0) - 1.0)
        torch.testing.assert_close(got[row, 0], expected, rtol=0, atol=1e-5)
