"""Decoding: every format from a path and from bytes, down-mix, resampling, every error."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from encore.audio.decode import AudioInfo, load_audio, probe_audio
from encore.errors import (
    AudioTooLong,
    AudioTooShort,
    CorruptAudio,
    NotAudio,
    NotFound,
    SilentAudio,
    UnsupportedAudio,
)

SR = 22050
FORMATS = ["wav", "flac", "ogg", "mp3"]


def _spectral_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of magnitude spectra (robust to codec delay and phase)."""
    n = min(a.size, b.size)
    fa, fb = np.abs(np.fft.rfft(a[:n])), np.abs(np.fft.rfft(b[:n]))
    return float(fa @ fb / np.linalg.norm(fa) / np.linalg.norm(fb))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_decodes_from_path_and_bytes(music, write_audio, fmt):
    path = write_audio(music, SR, fmt)
    from_path = load_audio(path, sr=SR)
    from_bytes = load_audio(path.read_bytes(), sr=SR)
    np.testing.assert_array_equal(from_path, from_bytes)
    assert from_path.dtype == np.float32 and from_path.ndim == 1
    # Lossless formats give the samples back to 16-bit precision; lossy ones keep the
    # length (libsndfile trims encoder delay/padding) and the spectrum.
    assert from_path.size == music.size
    if fmt in ("wav", "flac"):
        np.testing.assert_allclose(from_path, music, atol=1.0 / 32768 + 1e-6)
    else:
        assert _spectral_similarity(from_path, music) > 0.95


@pytest.mark.parametrize("fmt", FORMATS)
def test_probe_reads_the_header(music, write_audio, fmt):
    stereo = np.stack([music, 0.5 * music], axis=1)
    info = probe_audio(write_audio(stereo, 44100, fmt))
    assert isinstance(info, AudioInfo)
    assert (info.format, info.sample_rate, info.channels) == (fmt, 44100, 2)
    assert info.seconds == pytest.approx(music.size / 44100, abs=0.01)


def test_stereo_is_down_mixed_to_the_channel_mean(music, write_audio):
    left, right = music, np.roll(music, 1000) * 0.5
    y = load_audio(write_audio(np.stack([left, right], axis=1), SR, "wav"), sr=SR)
    np.testing.assert_allclose(y, (left + right) / 2, atol=2.0 / 32768)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread's aifc/audioop imports
def test_resampling_matches_librosa_load(music, write_audio):
    import librosa

    path = write_audio(np.stack([music, music], axis=1), 44100, "flac")
    y = load_audio(path, sr=16000)
    reference, _ = librosa.load(path, sr=16000, mono=True)
    assert y.shape == reference.shape == (int(np.ceil(music.size * 16000 / 44100)),)
    np.testing.assert_allclose(y, reference, atol=1e-5)


def test_resampling_keeps_the_pitch(write_audio):
    t = np.arange(44100 * 2) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    y = load_audio(write_audio(tone, 44100, "wav"), sr=SR)
    assert y.size == SR * 2
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * SR / y.size
    assert peak_hz == pytest.approx(1000.0, abs=1.0)


def test_ogg_opus_is_read(music, sf_bytes):
    data = sf_bytes(music, 48000, "ogg", subtype="OPUS")
    assert probe_audio(data).subtype == "OPUS"
    assert load_audio(data, sr=SR).size == pytest.approx(music.size * SR / 48000, abs=2)


# --- not audio ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.random.default_rng(0).bytes(20000), r"not in an audio format .* starts with bytes"),
        (np.random.default_rng(1).bytes(20000), r"not in an audio format .* starts with bytes"),
        (b"", r"empty \(0 bytes\)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(2000), r"is a PNG image, not audio"),
        (b"%PDF-1.7\n" + bytes(100), r"is a PDF document"),
    ],
    ids=["random-0", "random-1", "empty", "png", "pdf"],
)
def test_not_audio(data, match):
    with pytest.raises(NotAudio, match=match):
        load_audio(data, sr=SR)
    with pytest.raises(NotAudio, match=match):
        probe_audio(data)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.mp3"  # the suffix does not matter
    path.write_text("these are my favourite songs\n" * 20)
    with pytest.raises(NotAudio, match=r"'notes.mp3' is not in an audio format .* text"):
        load_audio(path, sr=SR)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound, match=r"missing.wav"):
        load_audio(tmp_path / "missing.wav", sr=SR)


# --- corrupt -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_files_are_corrupt(music, sf_bytes, fmt, keep):
    data = sf_bytes(np.stack([music, music], axis=1), SR, fmt)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(CorruptAudio, match=r"truncated|damaged"):
        load_audio(cut, sr=SR)


def test_truncated_wav_names_the_sizes(music, sf_bytes):
    data = sf_bytes(music, SR, "wav")
    with pytest.raises(CorruptAudio, match=rf"declares {music.size * 2} bytes .* only \d+ follow"):
        probe_audio(data[:1000])


def test_corrupted_flac_frames(music, sf_bytes):
    data = bytearray(sf_bytes(music, SR, "flac"))
    rng = np.random.default_rng(3)
    middle = len(data) // 2
    data[middle : middle + 4000] = rng.bytes(4000)
    with pytest.raises(CorruptAudio, match=r"damaged flac data"):
        load_audio(bytes(data), sr=SR)


def test_non_finite_samples_are_corrupt(music, sf_bytes):
    y = music.copy()
    y[100:110] = np.nan
    data = sf_bytes(y, SR, "wav", subtype="FLOAT")
    with pytest.raises(CorruptAudio, match=r"10 non-finite"):
        load_audio(data, sr=SR)


def test_riff_header_with_garbage_is_corrupt():
    data = b"RIFF" + struct.pack("<I", 1000) + b"WAVE" + np.random.default_rng(4).bytes(300)
    with pytest.raises(CorruptAudio, match=r"damaged wav data"):
        load_audio(data, sr=SR)


# --- silence and duration ----------------------------------------------------------------


def _wav(tag: int, data: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, 1, SR, SR * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_zero_samples_is_silent():
    with pytest.raises(SilentAudio, match=r"contains no samples"):
        load_audio(_wav(1, b""), sr=SR)


def test_digital_silence_and_near_silence(sf_bytes, music):
    with pytest.raises(SilentAudio, match=r"peak level is -inf dBFS"):
        load_audio(sf_bytes(np.zeros(SR * 2, np.float32), SR, "wav"), sr=SR)
    quiet = music / np.abs(music).max() * 10 ** (-70 / 20)  # peak at -70 dBFS
    with pytest.raises(SilentAudio, match=r"peak level is -70.0 dBFS, below .* -60.0 dBFS"):
        load_audio(sf_bytes(quiet, SR, "wav", subtype="FLOAT"), sr=SR)
    assert load_audio(sf_bytes(quiet, SR, "wav", subtype="FLOAT"), sr=SR, silence_db=-80).size


def test_too_short(music, write_audio):
    path = write_audio(music[: SR * 2], SR, "flac")
    with pytest.raises(AudioTooShort, match=r"lasts 2.0 s, shorter than the minimum of 3.0 s"):
        load_audio(path, sr=SR, min_seconds=3.0)
    assert load_audio(path, sr=SR, min_seconds=1.5).size == SR * 2


def test_too_long_is_refused_from_the_header_without_decoding(music, write_audio, monkeypatch):
    path = write_audio(music, SR, "ogg")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header was enough")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioTooLong, match=r"lasts 8.0 s, longer than the limit of 5.0 s"):
        load_audio(path, sr=SR, max_seconds=5.0)


def test_the_default_limit_is_fifteen_minutes(sf_bytes):
    # 15 min 1 s of 8 kHz mono: small to write, refused before decoding.
    y = np.full(8000 * 901, 0.1, dtype=np.float32)
    with pytest.raises(AudioTooLong, match=r"the audio lasts 15:01, longer than the limit of 15:00"):
        load_audio(sf_bytes(y, 8000, "flac"), sr=SR)
    # the name a listener gave the file, and a value just over the limit that does not
    # read as equal to it
    y = np.full(int(8000 * 900.4), 0.1, dtype=np.float32)
    with pytest.raises(AudioTooLong, match=r"'My song.flac' lasts 15:00.4, longer than the limit of 15:00.0"):
        load_audio(sf_bytes(y, 8000, "flac"), sr=SR, name="My song.flac")


def test_a_lying_header_is_caught_while_decoding(music, sf_bytes):
    # A WAV whose data chunk size is the streaming placeholder: the header cannot tell
    # the length, so the limit is enforced on the decoded samples.
    data = bytearray(sf_bytes(music, SR, "wav"))
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(AudioTooLong, match=r"longer than|more than"):
        load_audio(bytes(data), sr=SR, max_seconds=5.0)


# --- unsupported ------------------------------------------------------------------------


def test_unsupported_containers(music, sf_bytes):
    with pytest.raises(UnsupportedAudio, match=r"AIFF files are not supported"):
        load_audio(sf_bytes(music, SR, "AIFF", subtype="PCM_16"), sr=SR)
    with pytest.raises(UnsupportedAudio, match=r"AU \(Sun/NeXT\) files are not supported"):
        probe_audio(sf_bytes(music, SR, "AU", subtype="PCM_16"))
    m4a = b"\x00\x00\x00\x20ftypM4A " + bytes(500)
    with pytest.raises(UnsupportedAudio, match=r"MP4/M4A .* use wav, flac, ogg or mp3"):
        load_audio(m4a, sr=SR)
    with pytest.raises(UnsupportedAudio, match=r"MIDI file"):
        load_audio(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0", sr=SR)


def test_unsupported_codec_inside_wav():
    with pytest.raises(UnsupportedAudio, match=r"codec 0x0055 \(MPEG layer III"):
        load_audio(_wav(0x0055, bytes(4000)), sr=SR)


def test_unsupported_codec_inside_ogg(music, sf_bytes):
    data = bytearray(sf_bytes(music, SR, "ogg"))
    first_packet = data.index(b"\x01vorbis")
    data[first_packet : first_packet + 8] = b"Speex   "
    with pytest.raises(UnsupportedAudio, match=r"Ogg with Speex"):
        probe_audio(bytes(data))


def test_mp3_with_an_id3_tag(music, sf_bytes):
    frame = b"\x00" + b"my song"
    body = b"TIT2" + len(frame).to_bytes(4, "big") + b"\x00\x00" + frame
    tagged = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body)]) + body + sf_bytes(music, SR, "mp3")
    assert probe_audio(tagged).format == "mp3"
    assert load_audio(tagged, sr=SR).size == music.size
    with pytest.raises(CorruptAudio, match=rf"announces {music.size} samples, only \d+"):
        load_audio(tagged[: int(len(tagged) * 0.9)], sr=SR)
