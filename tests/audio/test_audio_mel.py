"""The mel codec: agreement with diffusers.Mel, shapes, dB crops, float conversions, round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from encore.audio.mel import (
    MelConfig,
    audio_slice_to_image,
    audio_to_images,
    image_to_audio,
    images_to_unit,
    mel_db,
    normalize_db_crop,
    unit_to_images,
)
from encore.audio.synth import demo_music
from encore.errors import InvalidInput

CONFIGS = [MelConfig(), MelConfig(y_res=128), MelConfig(y_res=128, x_res=64, hop_length=1024)]
IDS = ["256", "128-mels", "128x64-hop1024"]


def _reference_images(y: np.ndarray, config: MelConfig) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers import Mel

    mel = Mel(
        x_res=config.x_res,
        y_res=config.y_res,
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        top_db=config.top_db,
        n_iter=config.n_iter,
    )
    mel.load_audio(raw_audio=y)
    return np.stack(
        [np.asarray(mel.audio_slice_to_image(i)) for i in range(mel.get_number_of_slices())]
    )


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_images_agree_with_diffusers_mel(config):
    y = demo_music(14.0, config.sample_rate, seed=11)
    y[: config.sample_rate] *= 1e-3  # a quiet start: exercises the top_db clip
    ours = audio_to_images(y, config)
    reference = _reference_images(y, config)
    assert (
        ours.shape
        == reference.shape
        == (len(y) // config.slice_samples, config.y_res, config.x_res)
    )
    assert ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert diff.max() <= 1
    assert np.mean(diff > 0) < 0.001


def test_a_clip_shorter_than_a_slice_is_padded_like_the_reference():
    config = MelConfig()
    y = demo_music(2.0, config.sample_rate, seed=12)
    ours = audio_to_images(y, config)
    assert ours.shape == (1, 256, 256)
    assert np.abs(ours.astype(int) - _reference_images(y, config).astype(int)).max() <= 1
    # The padded part is silence: at or below -top_db, i.e. black, past the audio's end.
    assert ours[0, :, 100:].max() == 0


def test_slices_are_consecutive_and_the_remainder_is_dropped():
    config = MelConfig(x_res=32, y_res=64)
    y = demo_music(3.3, config.sample_rate, seed=13)
    images = audio_to_images(y, config)
    n = len(y) // config.slice_samples
    assert images.shape == (n, 64, 32)
    for i in (0, n - 1):
        piece = y[i * config.slice_samples : (i + 1) * config.slice_samples]
        np.testing.assert_array_equal(images[i], audio_slice_to_image(piece, config))


def test_image_orientation_row_zero_is_the_lowest_band():
    config = MelConfig()
    t = np.arange(config.slice_samples) / config.sample_rate
    low = audio_slice_to_image(np.sin(2 * np.pi * 110 * t), config)
    high = audio_slice_to_image(np.sin(2 * np.pi * 4000 * t), config)
    assert np.argmax(low[:, 128]) < np.argmax(high[:, 128])


@pytest.mark.parametrize("config", CONFIGS[:2], ids=IDS[:2])
def test_db_crops_match_the_slice_images(config):
    y = demo_music(8.0, config.sample_rate, seed=14)
    piece = y[: config.slice_samples]
    db = mel_db(piece, config)
    assert db.shape == (config.y_res, config.x_res) and db.dtype == np.float32
    assert db.max() == 0.0
    unit = normalize_db_crop(db, config)
    image = audio_slice_to_image(piece, config)
    assert unit.min() >= -1.0 and unit.max() == 1.0
    assert np.abs(unit - images_to_unit(image)).max() <= 0.5 / 127.5 + 1e-6
    np.testing.assert_array_equal(unit_to_images(unit), image)


def test_mel_db_of_a_long_piece_in_chunks():
    config = MelConfig(y_res=64)
    y = demo_music(110.0, config.sample_rate, seed=15)  # > 4096 frames: several chunks
    db = mel_db(y, config)
    assert db.shape == (64, 1 + len(y) // config.hop_length)
    # Interior crops normalised to their own maximum equal the slice images there (the
    # outermost 2 frames of a slice see zero padding in the reference, the song elsewhere).
    start_frame = 4200
    crop = normalize_db_crop(db[:, start_frame : start_frame + config.x_res], config)
    piece = y[
        start_frame * config.hop_length : start_frame * config.hop_length + config.slice_samples
    ]
    image = audio_slice_to_image(piece, config)
    inner = slice(3, config.x_res - 3)
    # Normalisations differ only if the crop's maximum lies in an edge frame.
    assert np.abs(unit_to_images(crop)[:, inner].astype(int) - image[:, inner]).max() <= 1


def test_float_conversions_numpy_and_torch():
    import torch

    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    unit = images_to_unit(pixels)
    assert unit.dtype == np.float32 and unit.min() == -1.0 and unit.max() == 1.0
    np.testing.assert_array_equal(unit_to_images(unit), pixels)
    np.testing.assert_array_equal(unit_to_images(np.array([-3.0, 3.0, 0.0])), [0, 255, 128])
    tensor = images_to_unit(torch.from_numpy(pixels))
    assert tensor.dtype == torch.float32
    back = unit_to_images(tensor)
    assert back.dtype == torch.uint8
    np.testing.assert_array_equal(back.numpy(), pixels)


def test_codec_round_trip_stays_close():
    """audio → image → audio (fast vocoder) → image stays within a few grey levels."""
    config = MelConfig()
    y = demo_music(6.0, config.sample_rate, seed=16)
    image = audio_slice_to_image(y[: config.slice_samples], config)
    audio = image_to_audio(image, config)
    assert audio.shape == ((config.x_res - 1) * config.hop_length,) and audio.dtype == np.float32
    again = audio_slice_to_image(audio, config)
    err = np.abs(again.astype(int) - image.astype(int))
    # Loud content (above half scale) must come back closely; silence stays dark.
    loud = image > 128
    assert np.mean(err[loud]) < 6.0
    assert np.mean(err) < 12.0


def test_bad_inputs():
    config = MelConfig()
    with pytest.raises(InvalidInput, match=r"at most 131071 samples, got 131072"):
        audio_slice_to_image(np.zeros(131072), config)
    with pytest.raises(InvalidInput, match=r"must be uint8, got dtype float32"):
        image_to_audio(np.zeros((256, 8), np.float32), config)
    with pytest.raises(InvalidInput, match=r"expected image shape"):
        image_to_audio(np.zeros((128, 8), np.uint8), config)
    with pytest.raises(InvalidInput, match=r"vocoder must be"):
        image_to_audio(np.zeros((256, 8), np.uint8), config, vocoder="wavenet")
    with pytest.raises(InvalidInput, match=r"mono"):
        audio_to_images(np.zeros((2, 1000)), config)
