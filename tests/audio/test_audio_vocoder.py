"""The torch Griffin-Lim vocoder: quality against librosa, shapes, batching, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encore.audio.mel import (
    MelConfig,
    audio_slice_to_image,
    image_to_audio,
    image_to_mel_power,
    mel_filterbank,
)
from encore.audio.synth import demo_music
from encore.audio.vocoder import DEFAULT_N_ITER, GriffinLim, spectral_convergence
from encore.errors import InvalidInput


@pytest.fixture(scope="module")
def clip() -> tuple[MelConfig, np.ndarray, np.ndarray]:
    """A 5.9 s musical clip: config, uint8 image (256×256) and its float64 power mel."""
    config = MelConfig()
    y = demo_music(config.slice_seconds, config.sample_rate, seed=21)[: config.slice_samples]
    image = audio_slice_to_image(y, config)
    return config, image, image_to_mel_power(image, config)


@pytest.fixture(scope="module")
def librosa_convergence(clip) -> float:
    """Spectral convergence of the reference (librosa mel_to_audio, 32 iterations)."""
    import librosa

    config, _, power = clip
    audio = librosa.feature.inverse.mel_to_audio(
        power, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_iter=32
    )
    return float(spectral_convergence(audio, power, config)[0])


def test_same_iterations_converge_better_than_librosa(clip, librosa_convergence):
    config, _, power = clip
    audio = GriffinLim(config, n_iter=32)(power)
    ours = float(spectral_convergence(audio.numpy(), power, config)[0])
    assert ours <= librosa_convergence
    assert ours < 0.8 * librosa_convergence  # by a clear margin, not by luck of the phase


def test_default_iterations_still_converge_better_than_librosa_at_32(clip, librosa_convergence):
    config, _, power = clip
    assert DEFAULT_N_ITER < 32
    audio = GriffinLim(config)(power)
    assert float(spectral_convergence(audio.numpy(), power, config)[0]) <= librosa_convergence


def test_more_iterations_converge_further(clip):
    config, _, power = clip
    scores = [
        float(spectral_convergence(GriffinLim(config, n_iter=n)(power).numpy(), power, config)[0])
        for n in (4, 12, 32)
    ]
    assert scores[0] > scores[1] > scores[2]


def test_nnls_beats_the_clipped_pseudo_inverse(clip):
    config, _, power = clip
    pinv_only = GriffinLim(config, nnls_iter=0).mel_to_linear(power)
    solved = GriffinLim(config).mel_to_linear(power)
    basis = torch.from_numpy(mel_filterbank(config))
    target = torch.from_numpy(power).float()

    def residual(p):
        return torch.linalg.vector_norm(basis @ p[0] - target).item()

    assert solved.min() >= 0.0 and solved.shape == (1, config.n_fft // 2 + 1, config.x_res)
    assert residual(solved) < 0.5 * residual(pinv_only)


def test_shapes_dtype_and_any_width(clip):
    config, image, power = clip
    gl = GriffinLim(config, n_iter=2, device="cpu")
    out = gl(power[:, :40])
    assert out.shape == (1, 39 * config.hop_length) and out.dtype == torch.float32
    assert out.device.type == "cpu"
    audio = gl.images_to_audio(image)
    assert audio.shape == ((config.x_res - 1) * config.hop_length,) and audio.dtype == np.float32
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0


def test_batch_equals_items_one_by_one(clip):
    config, image, _ = clip
    images = np.stack([image, np.roll(image, 17, axis=1), image // 2])
    gl = GriffinLim(config, n_iter=6)
    batch = gl.images_to_audio(images)
    assert batch.shape == (3, (config.x_res - 1) * config.hop_length)
    for i in range(3):
        np.testing.assert_allclose(batch[i], gl.images_to_audio(images[i]), atol=1e-5, rtol=0)


def test_deterministic_for_a_seed(clip):
    config, image, _ = clip
    a = GriffinLim(config, n_iter=3, seed=5).images_to_audio(image)
    b = GriffinLim(config, n_iter=3, seed=5).images_to_audio(image)
    c = GriffinLim(config, n_iter=3, seed=6).images_to_audio(image)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_a_preview_resumed_is_the_full_run_bit_for_bit(clip):
    config, _, power = clip
    gl = GriffinLim(config, n_iter=6)
    full = gl(power).numpy()
    for k in (0, 1, 4):
        state = gl.start(power, k)
        assert state.done == k
        preview = gl.audio(state).numpy()
        finished = gl.audio(gl.resume(state, 6 - k)).numpy()
        np.testing.assert_array_equal(finished, full)
        assert not np.array_equal(preview, full)  # a preview is not the final audio
        # and resuming leaves the preview's state as it was: it can be resumed again
        np.testing.assert_array_equal(gl.audio(state).numpy(), preview)
    # the preview is already close: its spectral convergence is within 2x of the full run's
    sc_preview = float(spectral_convergence(gl.audio(gl.start(power, 2)).numpy(), power, config)[0])
    sc_full = float(spectral_convergence(full, power, config)[0])
    assert sc_full < sc_preview < 2 * sc_full


def test_a_preview_cannot_run_past_n_iter(clip):
    config, _, power = clip
    gl = GriffinLim(config, n_iter=3)
    with pytest.raises(InvalidInput, match=r"iterations=4 must be in \[0, n_iter=3\]"):
        gl.start(power, 4)
    with pytest.raises(InvalidInput, match=r"2 of n_iter=3 are done already"):
        gl.resume(gl.start(power, 2), 2)


def test_image_to_audio_vocoder_choices(clip):
    config, image, _ = clip
    small = image[:, :24]
    fast = image_to_audio(small, config)
    reference = image_to_audio(small, config, vocoder="librosa")
    custom = image_to_audio(small, config, vocoder=GriffinLim(config.replace(x_res=24), n_iter=1))
    assert fast.shape == reference.shape == custom.shape == (23 * config.hop_length,)
    with pytest.raises(InvalidInput, match=r"vocoder was built for"):
        image_to_audio(small, config, vocoder=GriffinLim(config.replace(n_fft=1024)))


def test_a_128_mel_config(clip):
    config = MelConfig(y_res=128)
    y = demo_music(3.0, config.sample_rate, seed=22)
    image = audio_slice_to_image(y, config)
    power = image_to_mel_power(image, config)
    audio = GriffinLim(config)(power)
    assert float(spectral_convergence(audio.numpy(), power, config)[0]) < 0.3


def test_bad_arguments(clip):
    config, _, power = clip
    with pytest.raises(InvalidInput, match=r"momentum=1.0"):
        GriffinLim(config, momentum=1.0)
    with pytest.raises(InvalidInput, match=r"init='noise'"):
        GriffinLim(config, init="noise")
    with pytest.raises(InvalidInput, match=r"expected mel shape \(256, frames\)"):
        GriffinLim(config)(power[:100])
    with pytest.raises(InvalidInput, match=r"at least 2 frames"):
        GriffinLim(config)(power[:, :1])


def test_cpu_threads_are_set_for_the_call_and_restored(clip, monkeypatch):
    config, _, power = clip
    seen: list[int] = []
    original = GriffinLim._mel_to_linear

    def spy(self, mel):
        seen.append(torch.get_num_threads())
        return original(self, mel)

    monkeypatch.setattr(GriffinLim, "_mel_to_linear", spy)
    torch.set_num_threads(2)
    GriffinLim(config, n_iter=1, threads=1)(power[:, :8])
    assert seen == [1] and torch.get_num_threads() == 2
    GriffinLim(config, n_iter=1, threads=None)(power[:, :8])
    assert seen == [1, 2] and torch.get_num_threads() == 2
    with pytest.raises(InvalidInput, match=r"threads=0"):
        GriffinLim(config, threads=0)
