"""Cheap structural checks on audio containers, done before (or instead of) decoding.

libsndfile is lenient with damaged files: a truncated WAV decodes silently to the bytes that
are left, a truncated Ogg file may report zero frames. These helpers read only headers and
page/chunk boundaries, so that :mod:`encore.audio.decode` can name the problem
(:class:`~encore.errors.CorruptAudio`, :class:`~encore.errors.UnsupportedAudio`,
:class:`~encore.errors.NotAudio`) instead of returning half a song.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from encore.errors import CorruptAudio, NotAudio, UnsupportedAudio

#: Magic prefixes of formats people upload by mistake or that libsndfile cannot read.
_UNSUPPORTED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "an MP4/M4A file (AAC or ALAC)"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "a WMA/ASF file"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (0, b"MThd", "a MIDI file (a score, not audio: render it first)"),
    (0, b"#!AMR", "an AMR file"),
    (0, b"MAC ", "a Monkey's Audio (APE) file"),
    (0, b"wvpk", "a WavPack file"),
    (0, b"DSD ", "a DSF (DSD audio) file"),
    (0, b"\x0b\x77", "an AC-3 stream"),
)

#: Magic prefixes of common non-audio files, for a helpful NotAudio message.
_NOT_AUDIO_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
    (b"<?xml", "an XML document"),
)

#: WAVE format tags libsndfile decodes (PCM, float, ADPCM, A-law/mu-law, GSM, extensible).
_WAV_TAGS_DECODED = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0xFFFE}
_WAV_TAG_NAMES = {
    0x0050: "MPEG-1 layer I/II",
    0x0055: "MPEG layer III (mp3 inside WAV)",
    0x0092: "Dolby AC-3",
    0x0161: "Windows Media Audio",
    0x0162: "Windows Media Audio Pro",
    0x00FF: "AAC",
    0x1610: "AAC (ADTS)",
    0xF1AC: "FLAC inside WAV",
}

#: Ogg codec signatures: the first packet of the first (BOS) page.
_OGG_CODECS: tuple[tuple[bytes, str, bool], ...] = (
    (b"\x01vorbis", "Vorbis", True),
    (b"OpusHead", "Opus", True),
    (b"\x7fFLAC", "FLAC", False),
    (b"Speex   ", "Speex", False),
    (b"\x80theora", "Theora video", False),
    (b"fishead\x00", "Ogg Skeleton", False),
)


def describe_head(head: bytes) -> str:
    """A short, printable description of the first bytes of a file, for error messages."""
    if not head:
        return "an empty file"
    for magic, name in _NOT_AUDIO_MAGIC:
        if head.startswith(magic):
            return name
    sample = head[:64]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"text ({text[:24]!r}...)"
    return "bytes " + sample[:8].hex(" ")


def sniff(head: bytes, name: str = "the file") -> str | None:
    """Classify a file from its first bytes.

    Parameters
    ----------
    head : bytes
        The first bytes of the file (64 are plenty).
    name : str
        How to call the file in messages.

    Returns
    -------
    str or None
        ``"wav"``, ``"rf64"``, ``"w64"``, ``"flac"``, ``"ogg"``, ``"mp3"`` (an ID3 tag),
        ``"mpeg-sync"`` (starts with an MPEG audio frame sync: weak evidence, 1 in 2048
        random files does), ``"aiff"`` or ``None`` when the prefix is not one we know
        (libsndfile may still recognise it).

    Raises
    ------
    UnsupportedAudio
        A recognised audio/media container that encore does not read (m4a, wma, …).
    NotAudio
        A recognised non-audio file (PNG, JPEG, PDF, ZIP, …) or an empty file.
    """
    if not head:
        raise NotAudio(f"{name} is empty (0 bytes), not audio")
    for offset, magic, desc in _UNSUPPORTED_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedAudio(
                f"{name} is {desc}, which encore does not accept; use wav, flac, ogg or mp3"
            )
    for magic, desc in _NOT_AUDIO_MAGIC:
        if head.startswith(magic):
            raise NotAudio(f"{name} is {desc}, not audio")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RF64":
        return "rf64"
    if head[:4] == b"riff":
        return "w64"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0x3
        if layer == 0:  # MPEG sync with layer bits 00 is an AAC ADTS stream
            raise UnsupportedAudio(
                f"{name} is an AAC (ADTS) stream, which encore does not accept; "
                "use wav, flac, ogg or mp3"
            )
        return "mpeg-sync"
    return None


def _file_size(f: BinaryIO) -> int:
    pos = f.tell()
    f.seek(0, 2)
    size = f.tell()
    f.seek(pos)
    return size


def check_wav(f: BinaryIO, name: str) -> int | None:
    """Walk the RIFF chunks of a WAV file; detect truncation and unsupported codecs.

    Parameters
    ----------
    f : binary file object (seekable), positioned anywhere; left at an undefined position.
    name : str
        How to call the file in messages.

    Returns
    -------
    int or None
        The WAVE format tag from the ``fmt `` chunk (``None`` if there is none).

    Raises
    ------
    CorruptAudio
        The ``data`` chunk declares more bytes than the file holds (a truncated file).
    UnsupportedAudio
        The ``fmt `` chunk names a codec libsndfile does not decode (mp3/WMA/AAC in WAV).
    """
    size = _file_size(f)
    f.seek(12)
    tag: int | None = None
    while True:
        header = f.read(8)
        if len(header) < 8:
            return tag  # no data chunk: libsndfile reports it
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        start = f.tell()
        if chunk_id == b"fmt " and chunk_size >= 2:
            tag = struct.unpack("<H", f.read(2))[0]
            if tag not in _WAV_TAGS_DECODED:
                codec = _WAV_TAG_NAMES.get(tag, "an unknown codec")
                raise UnsupportedAudio(
                    f"{name}: WAV with codec 0x{tag:04x} ({codec}) is not supported; "
                    "use PCM or float WAV, flac, ogg or mp3"
                )
        if chunk_id == b"data":
            available = size - start
            # 0 and 0xFFFFFFFF are placeholders written by streaming encoders.
            if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                raise CorruptAudio(
                    f"{name} is truncated: its WAV header declares {chunk_size} bytes of "
                    f"audio data but only {available} follow"
                )
            return tag
        f.seek(start + chunk_size + (chunk_size & 1))


def check_ogg(f: BinaryIO, name: str) -> str:
    """Check the first and the last page of an Ogg file.

    Returns
    -------
    str
        The codec of the first logical stream (``"Vorbis"`` or ``"Opus"``).

    Raises
    ------
    CorruptAudio
        The first page is not a valid beginning-of-stream page, or the last page is cut
        short (a truncated file).
    UnsupportedAudio
        The stream holds a codec other than Vorbis or Opus (Speex, FLAC-in-Ogg, video).
    """
    size = _file_size(f)
    f.seek(0)
    first = f.read(27 + 255)
    if len(first) < 28 or first[4] != 0 or not first[5] & 0x02:
        raise CorruptAudio(f"{name}: the Ogg file does not start with a valid stream header page")
    n_segments = first[26]
    packet = first[27 + n_segments :]
    if len(packet) < 8:
        f.seek(27 + n_segments)
        packet = f.read(16)
    codec = None
    for signature, codec_name, supported in _OGG_CODECS:
        if packet.startswith(signature):
            if not supported:
                raise UnsupportedAudio(
                    f"{name}: Ogg with {codec_name} is not supported; use Ogg Vorbis or Opus"
                )
            codec = codec_name
            break
    if codec is None:
        raise CorruptAudio(f"{name}: the Ogg stream header names no known codec")

    # Walk the page headers to the end: every page must be complete.
    pos = 0
    pages = 0
    while pos < size:
        f.seek(pos)
        header = f.read(27)
        if len(header) < 27:
            raise CorruptAudio(f"{name} is truncated: its last Ogg page header is cut short")
        if header[:4] != b"OggS":
            raise CorruptAudio(
                f"{name} is damaged: no Ogg page where one should start (byte {pos} of {size})"
            )
        lacing = f.read(header[26])
        if len(lacing) < header[26]:
            raise CorruptAudio(f"{name} is truncated: its last Ogg page header is cut short")
        end = pos + 27 + len(lacing) + sum(lacing)
        if end > size:
            raise CorruptAudio(
                f"{name} is truncated: Ogg page {pages} needs {end - pos} bytes, "
                f"only {size - pos} are left"
            )
        pos = end
        pages += 1
    return codec


def mp3_has_length_header(f: BinaryIO) -> bool:
    """Whether an mp3 file carries a Xing/Info/VBRI header (an exact sample count).

    Without one, libsndfile estimates the length from the file size and the bitrate, so
    a short decode is not proof of truncation.
    """
    f.seek(0)
    head = f.read(10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:
        size = (
            (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F
        )
        start = 10 + size + (10 if head[5] & 0x10 else 0)
    f.seek(start)
    first_frame = f.read(192)
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))
