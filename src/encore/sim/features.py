"""What a simulated listener perceives of a clip: a few audio features computed on the
audio it hears (the decoded OGG it downloaded), never on anything the server says.

Features (all on log scales, so that a taste's widths mean the same everywhere):

- ``brightness``: log2 of the mean spectral centroid in Hz (octaves; one unit = an octave);
- ``density``: log2 of the onset rate in onsets per second (rhythmic density);
- ``noisiness``: log10 of the mean spectral flatness (−5 very tonal … 0 white noise);
- ``loudness``: RMS level in dBFS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURE_NAMES = ("brightness", "density", "noisiness", "loudness")


@dataclass(frozen=True)
class AudioFeatures:
    """Perceived features of one clip (see the module docstring for units)."""

    brightness: float
    density: float
    noisiness: float
    loudness: float

    def get(self, name: str) -> float:
        """The feature called ``name`` (one of :data:`FEATURE_NAMES`)."""
        if name not in FEATURE_NAMES:
            raise KeyError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}")
        return float(getattr(self, name))

    @staticmethod
    def mean(items: list[AudioFeatures]) -> AudioFeatures:
        """Feature-wise mean of several clips (a listener's own songs)."""
        if not items:
            raise ValueError("no features to average")
        return AudioFeatures(
            **{n: float(np.mean([getattr(f, n) for f in items])) for n in FEATURE_NAMES}
        )


def audio_features(y: np.ndarray, sr: int) -> AudioFeatures:
    """Compute :class:`AudioFeatures` of mono audio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono samples in [-1, 1].
    sr : int
        Sample rate in Hz.

    Returns
    -------
    AudioFeatures
        Silence gives the darkest, sparsest, quietest values instead of NaN.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size < 2048:
        y = np.pad(y, (0, 2048 - y.size))
    n_fft, hop = 2048, 512
    spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    energy = spec.sum(axis=0)
    voiced = energy > energy.max() * 1e-4 if energy.max() > 0 else np.zeros_like(energy, bool)
    if not voiced.any():
        return AudioFeatures(brightness=float(np.log2(20.0)), density=float(np.log2(0.05)),
                             noisiness=0.0, loudness=-120.0)
    centroid = librosa.feature.spectral_centroid(S=np.sqrt(spec), sr=sr)[0]
    flatness = librosa.feature.spectral_flatness(S=np.sqrt(spec))[0]
    onset_env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=hop)
    seconds = max(len(y) / sr, 1e-3)
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    return AudioFeatures(
        brightness=float(np.log2(max(float(np.mean(centroid[voiced])), 20.0))),
        density=float(np.log2(max(len(onsets) / seconds, 0.05))),
        noisiness=float(np.log10(max(float(np.mean(flatness[voiced])), 1e-6))),
        loudness=float(20 * np.log10(max(rms, 1e-6))),
    )


def decode_features(data: bytes, sr: int = 22050) -> tuple[AudioFeatures, float]:
    """Decode audio bytes (OGG, FLAC, WAV …) and compute their features.

    Returns
    -------
    (AudioFeatures, float)
        The features and the duration in seconds.
    """
    from encore.audio.decode import load_audio

    y = load_audio(data, sr=sr, max_seconds=None, silence_db=-200.0)
    return audio_features(y, sr), len(y) / sr
