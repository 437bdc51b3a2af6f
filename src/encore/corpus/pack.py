"""``encore corpus pack`` / ``unpack``: the training corpus in one small, checked file.

A GPU host may have no internet and no music21, so it cannot build the corpus; it needs the
spectrograms. A pack holds what training and evaluation read — every piece's mel
spectrogram, the manifest (pieces, genres, splits, slices), ``mel_config.json`` and
``build.json`` — and leaves out the FLAC audio (nothing in training or ``encore eval`` reads
it).

Format (version 1), one file::

    MAGIC (24 bytes) | header length (8 bytes, little-endian) | header (UTF-8 JSON)
    | body: one xz stream | SHA-256 of everything before it (32 bytes)

The body is every piece's mel in manifest order, quantised uniformly to ``levels + 1`` values
(uint8) over the corpus's dB range [``floor_db``, 0], row-major ``(n_mels, frames)``, compressed
by xz with a delta filter (each byte stored as its difference to the previous frame of the same
band) and LZMA2 (preset 6 with the hash-chain match finder: on this data as small as the
binary tree's, within 2 %, at less than half its CPU time). The default, 47 levels (a step of 2.13 dB, at most 1.06 dB off), is what
brings the 10-hour corpus under 60 MB: the finer structure of a spectrogram is noise-like, so
every halving of the step costs about one bit per value (docs/training.md has the figures;
``--levels 255``, a step of 0.39 dB, makes the pack about twice as large).
Unpacking checks the magic and the checksum *before* it writes anything, writes into a
temporary sibling folder and renames it into place, so a corrupted or truncated file gives a
clear error and leaves no half corpus behind. The unpacked folder is a corpus folder
(``mel/*.npy`` float16, the dequantised values; ``manifest.jsonl``; ``mel_config.json``;
``build.json``) plus ``pack.json`` (where it came from), without ``audio/``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from encore.audio.mel import MelConfig
from encore.corpus.manifest import BUILD_FILE, MANIFEST_FILE, READY_FILE, load_manifest
from encore.errors import Conflict, InvalidInput, NotFound

MAGIC = b"ENCORE-CORPUS-PACK\x00v01\n"  # 24 bytes
FORMAT_VERSION = 1
PACK_INFO_FILE = "pack.json"
MEL_CONFIG_FILE = "mel_config.json"
FLOOR_DB = -100.0  # mel_db's floor (dB below the piece's maximum)
LEVELS = 47  # quantisation steps over [FLOOR_DB, 0]; at most 255 (uint8)
CHUNK = 1 << 20
_DIGEST = 32
_TOLERANCE_DB = 0.01


@dataclass(frozen=True)
class PackSummary:
    """What ``pack_corpus`` wrote or ``unpack_corpus`` read."""

    path: Path
    pieces: int
    frames: int
    raw_bytes: int  # the float16 mel files
    quantised_bytes: int  # uint8, before compression
    packed_bytes: int  # the pack file
    sha256: str
    seconds: float


def quantise(db: np.ndarray, levels: int = LEVELS, floor_db: float = FLOOR_DB) -> np.ndarray:
    """dB in [floor_db, 0] → uint8 values 0..levels (nearest)."""
    x = (np.asarray(db, dtype=np.float32) - floor_db) * np.float32(levels / -floor_db)
    return np.clip(np.rint(x), 0, levels).astype(np.uint8)


def dequantise(values: np.ndarray, levels: int = LEVELS, floor_db: float = FLOOR_DB) -> np.ndarray:
    """uint8 values → dB (float32); the inverse of :func:`quantise` up to half a step."""
    step = np.float32(-floor_db / levels)
    return (np.asarray(values, dtype=np.float32) * step + np.float32(floor_db)).astype(np.float32)


def _filters() -> list[dict[str, Any]]:
    return [{"id": lzma.FILTER_DELTA, "dist": 1},
            {"id": lzma.FILTER_LZMA2, "preset": 6, "mf": lzma.MF_HC4}]


def pack_corpus(corpus_dir: str | Path, out_file: str | Path, *, levels: int = LEVELS,
                overwrite: bool = False) -> PackSummary:
    """Write the pack of ``corpus_dir`` to ``out_file`` (atomically: a temporary sibling, then
    a rename); ``levels`` quantisation steps over [``floor_db``, 0] dB (2..255).

    Raises
    ------
    NotFound
        No corpus folder, manifest, ``mel_config.json`` or a piece's mel file.
    InvalidInput
        A mel file that is not a ``(n_mels, n_frames)`` array of the manifest's size, or holds
        values outside [``floor_db``, 0] dB.
    Conflict
        ``out_file`` exists and ``overwrite`` is False.
    """
    t0 = time.monotonic()
    corpus = Path(corpus_dir)
    out = Path(out_file)
    if not 2 <= int(levels) <= 255:
        raise InvalidInput(f"levels={levels!r} must be between 2 and 255 (uint8)")
    if not corpus.is_dir():
        raise NotFound(f"corpus folder {corpus} does not exist")
    if out.exists() and not overwrite:
        raise Conflict(f"{out} already exists (pass --overwrite to replace it)")
    records = load_manifest(corpus)
    if not records:
        raise InvalidInput(f"corpus {corpus} has no pieces")
    mel_config_path = corpus / MEL_CONFIG_FILE
    if not mel_config_path.is_file():
        raise NotFound(f"no {MEL_CONFIG_FILE} in corpus folder {corpus}")
    mel_config = MelConfig.load(corpus)
    build = corpus / BUILD_FILE
    pieces = []
    for r in records:
        path = corpus / r.mel
        if not path.is_file():
            raise NotFound(f"mel file {path} of piece {r.piece_id} is missing")
        pieces.append({"piece_id": r.piece_id, "mel": r.mel, "n_frames": r.n_frames})
    header = {
        "format": FORMAT_VERSION,
        "n_mels": mel_config.y_res,
        "quantisation": {"dtype": "uint8", "floor_db": FLOOR_DB, "top_db": 0.0, "levels": int(levels),
                         "step_db": -FLOOR_DB / int(levels)},
        "compression": {"container": "xz", "filters": ["delta(dist=1, along time)", "lzma2(preset 6, hc4)"]},
        "pieces": pieces,
        "files": {
            MANIFEST_FILE: (corpus / MANIFEST_FILE).read_text(),
            MEL_CONFIG_FILE: mel_config_path.read_text(),
            BUILD_FILE: build.read_text() if build.is_file() else None,
        },
        "source": {"corpus": str(corpus), "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    head = json.dumps(header, sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    digest = hashlib.sha256()
    raw = quantised = frames = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            def write(data: bytes) -> None:
                digest.update(data)
                fh.write(data)

            write(MAGIC)
            write(struct.pack("<Q", len(head)))
            write(head)
            compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ, filters=_filters())
            for r in records:
                path = corpus / r.mel
                mel = _load_mel(path, mel_config.y_res, r.n_frames)
                raw += path.stat().st_size
                frames += mel.shape[1]
                values = quantise(mel, int(levels))
                quantised += values.nbytes
                write(compressor.compress(np.ascontiguousarray(values).tobytes()))
            write(compressor.flush())
            fh.write(digest.digest())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a pack is meant to be copied
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return PackSummary(out, len(records), frames, raw, quantised, out.stat().st_size,
                       digest.hexdigest(), time.monotonic() - t0)


def _load_mel(path: Path, n_mels: int, n_frames: int) -> np.ndarray:
    try:
        mel = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read mel file {path}: {exc}") from exc
    if mel.ndim != 2 or mel.shape != (n_mels, n_frames):
        raise InvalidInput(f"mel file {path} has shape {mel.shape}; the manifest says ({n_mels}, {n_frames})")
    lo, hi = float(np.min(mel)), float(np.max(mel))
    if lo < FLOOR_DB - _TOLERANCE_DB or hi > _TOLERANCE_DB or not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidInput(f"mel file {path} holds values in [{lo:.2f}, {hi:.2f}] dB, outside the "
                           f"packable range [{FLOOR_DB:g}, 0]")
    return np.asarray(mel)


def verify_pack(pack_file: str | Path) -> tuple[dict[str, Any], int, str]:
    """Check the magic and the checksum of a pack; returns ``(header, body offset, sha256)``.

    Raises
    ------
    NotFound
        No such file.
    InvalidInput
        Not a corpus pack, truncated, or its checksum does not match (corrupted).
    """
    path = Path(pack_file)
    if not path.is_file():
        raise NotFound(f"pack file {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(len(MAGIC))
        if magic != MAGIC:
            raise InvalidInput(f"{path} is not an encore corpus pack (bad magic {magic[:24]!r})")
        if size < len(MAGIC) + 8 + _DIGEST:
            raise InvalidInput(f"{path} is truncated ({size} bytes)")
        digest = hashlib.sha256(magic)
        remaining = size - len(MAGIC) - _DIGEST
        while remaining > 0:
            block = fh.read(min(CHUNK, remaining))
            if not block:
                raise InvalidInput(f"{path} is truncated")
            digest.update(block)
            remaining -= len(block)
        stored = fh.read(_DIGEST)
        if stored != digest.digest():
            raise InvalidInput(
                f"{path} is corrupted or truncated: its SHA-256 checksum does not match "
                f"(computed {digest.hexdigest()[:16]}…, stored {stored.hex()[:16] or 'nothing'}…); "
                "copy the pack again")
        fh.seek(len(MAGIC))
        (head_len,) = struct.unpack("<Q", fh.read(8))
        if head_len > size:
            raise InvalidInput(f"{path}: bad header length {head_len}")
        try:
            header = json.loads(fh.read(head_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: unreadable header: {exc}") from exc
    if header.get("format") != FORMAT_VERSION:
        raise InvalidInput(f"{path}: pack format {header.get('format')!r}; this encore reads {FORMAT_VERSION}")
    return header, len(MAGIC) + 8 + head_len, digest.hexdigest()


def unpack_corpus(pack_file: str | Path, out_dir: str | Path) -> PackSummary:
    """Check ``pack_file`` and write its corpus folder to ``out_dir`` (which must not exist or
    be empty).

    Raises
    ------
    NotFound, InvalidInput
        As :func:`verify_pack`; also a body that does not decompress to the pieces' sizes.
    Conflict
        ``out_dir`` exists and is not empty.
    """
    t0 = time.monotonic()
    path, out = Path(pack_file), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} already exists and is not empty; unpack into a new folder")
    header, offset, sha = verify_pack(path)
    q = header["quantisation"]
    floor_db, n_levels, n_mels = float(q["floor_db"]), int(q["levels"]), int(header["n_mels"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    frames = raw = 0
    try:
        for name, text in header["files"].items():
            if text is not None:
                (tmp / name).write_text(text)
        reader = _BodyReader(path, offset, path.stat().st_size - _DIGEST)
        for piece in header["pieces"]:
            n_frames = int(piece["n_frames"])
            values = np.frombuffer(reader.read(n_mels * n_frames), dtype=np.uint8)
            target = tmp / piece["mel"]
            if tmp.resolve() not in target.resolve().parents:
                raise InvalidInput(f"{path}: piece path {piece['mel']!r} escapes the corpus folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, dequantise(values.reshape(n_mels, n_frames), n_levels, floor_db).astype(np.float16))
            frames += n_frames
            raw += target.stat().st_size
        reader.expect_end()
        info = {"pack": str(path), "sha256": sha, "format": header["format"], "quantisation": q,
                "source": header.get("source"), "pieces": len(header["pieces"]), "audio": False}
        (tmp / PACK_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / READY_FILE).write_text(f"unpacked from {path.name} (sha256 {sha})\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackSummary(out, len(header["pieces"]), frames, raw, frames * n_mels, path.stat().st_size,
                       sha, time.monotonic() - t0)


class _BodyReader:
    """Exact-size reads from the xz body of a pack (decompressed as it goes)."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.path = path
        self.fh: BinaryIO = path.open("rb")
        self.fh.seek(start)
        self.left = end - start
        self.decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self.buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.decompressor.eof:
                raise InvalidInput(f"{self.path}: the body ends before the last piece")
            block = b""
            if self.decompressor.needs_input:
                block = self.fh.read(min(CHUNK, self.left)) if self.left > 0 else b""
                self.left -= len(block)
                if not block:
                    raise InvalidInput(f"{self.path}: the body ends before the last piece")
            try:
                self.buffer += self.decompressor.decompress(block, max_length=max(CHUNK, n))
            except lzma.LZMAError as exc:
                raise InvalidInput(f"{self.path}: the body does not decompress: {exc}") from exc
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def expect_end(self) -> None:
        extra = len(self.buffer)
        if not self.decompressor.eof:
            try:
                extra += len(self.decompressor.decompress(self.fh.read(max(self.left, 0))))
            except lzma.LZMAError as exc:
                raise InvalidInput(f"{self.path}: the body does not decompress: {exc}") from exc
        self.fh.close()
        if extra:
            raise InvalidInput(f"{self.path}: {extra} bytes after the last piece")
