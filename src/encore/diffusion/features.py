"""Per-clip audio features for the quality metrics (no downloaded weights).

A clip's feature vector concatenates, over its frames (n_fft 2048, hop 512):

- mean and std of ``n_mels`` log-mel bands (dB relative to the clip's maximum, floor -80 dB,
  so that the arbitrary level of Griffin-Lim output does not matter);
- mean and std of 13 MFCCs (from the same log-mel);
- mean and std of the 7 spectral-contrast bands;
- mean and std of the 12 chroma bins;
- mean and std of the onset-strength envelope.

All from librosa. The metrics (:mod:`encore.diffusion.evaluate`) compare sets of these vectors,
standardised with the statistics of a real set.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

N_FFT = 2048
HOP = 512
N_MFCC = 13
N_CONTRAST = 7  # librosa's default n_bands=6 gives 7 rows
N_CHROMA = 12


def feature_names(n_mels: int = 20) -> list[str]:
    """Names of the entries of :func:`clip_features`, in order."""
    names: list[str] = []
    for group, n in (("logmel", n_mels), ("mfcc", N_MFCC), ("contrast", N_CONTRAST),
                     ("chroma", N_CHROMA), ("onset", 1)):
        names += [f"{group}{i}_mean" for i in range(n)]
        names += [f"{group}{i}_std" for i in range(n)]
    return names


def clip_features(audio: np.ndarray, sample_rate: int, *, n_mels: int = 20) -> np.ndarray:
    """The feature vector of one mono clip.

    Parameters
    ----------
    audio : np.ndarray
        Mono samples, shape ``(n,)``, any level (peak-normalised here).
    sample_rate : int
        Hz.
    n_mels : int
        Log-mel bands summarised (coarser than the model's 128 on purpose).

    Returns
    -------
    np.ndarray
        float64, shape ``(2 * (n_mels + 13 + 7 + 12 + 1),)`` (106 for ``n_mels=20``); finite.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    y = np.nan_to_num(y)
    peak = float(np.max(np.abs(y)))
    if peak > 0:
        y = y / peak  # Griffin-Lim output has an arbitrary level
    stft = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel = librosa.feature.melspectrogram(S=stft, sr=sample_rate, n_mels=n_mels)
    logmel = librosa.power_to_db(mel, ref=np.max, top_db=80.0) if mel.max() > 0 else np.full_like(mel, -80.0)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=N_MFCC)
    contrast = librosa.feature.spectral_contrast(S=np.sqrt(stft), sr=sample_rate, n_fft=N_FFT, hop_length=HOP)
    chroma = librosa.feature.chroma_stft(S=stft, sr=sample_rate, n_fft=N_FFT, hop_length=HOP, tuning=0.0)
    onset = librosa.onset.onset_strength(S=logmel, sr=sample_rate)[None, :]
    parts = []
    for m in (logmel, mfcc, contrast, chroma, onset):
        m = np.nan_to_num(np.asarray(m, dtype=np.float64))
        parts.append(m.mean(axis=1))
        parts.append(m.std(axis=1))
    return np.concatenate(parts)


def features_for_clips(
    clips: list[np.ndarray] | np.ndarray, sample_rate: int, *, n_mels: int = 20
) -> np.ndarray:
    """Stack :func:`clip_features` of many clips: shape ``(n_clips, n_features)``."""
    return np.stack([clip_features(c, sample_rate, n_mels=n_mels) for c in clips])
