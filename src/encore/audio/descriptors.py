"""Audio descriptors: a dozen standard, interpretable measurements of a clip's sound.

The taste model (:mod:`encore.taste`) reads them next to the similarity model's embedding:
the embedding says *what kind of music* a clip is, the descriptors say how it *sounds* —
bright or dark, busy or sparse, clean or noisy, loud or soft — on scales where a difference
means the same everywhere (octaves, decibels, decades). All come from one STFT
(2048-point frames, hop 512), computed on the frames that carry sound; silence gives finite
floor values, never NaN.

=================  ==========================================================  ============
name               definition                                                  unit
=================  ==========================================================  ============
``centroid``       mean spectral centroid                                      log2 Hz
``bandwidth``      mean spectral bandwidth (2nd moment around the centroid)    log2 Hz
``rolloff``        mean frequency below which 85 % of the energy lies          log2 Hz
``flatness``       mean spectral flatness (geometric / arithmetic mean)        log10
``high_energy``    share of energy above 4 kHz                                 log10
``low_energy``     share of energy below 250 Hz                                log10
``onset_rate``     detected onsets per second                                  log2 /s
``onset_strength`` mean onset-strength envelope                                log2
``loudness``       RMS level                                                   dBFS
``dynamics``       90th minus 10th percentile of frame RMS level               dB
``zcr``            mean zero-crossing rate                                     log10
``chroma_focus``   1 − normalised entropy of the mean chroma vector            [0, 1]
=================  ==========================================================  ============
"""

from __future__ import annotations

import functools

import numpy as np

DESCRIPTOR_NAMES: tuple[str, ...] = (
    "centroid", "bandwidth", "rolloff", "flatness", "high_energy", "low_energy",
    "onset_rate", "onset_strength", "loudness", "dynamics", "zcr", "chroma_focus",
)

_N_FFT, _HOP = 2048, 512
_SILENCE = {
    "centroid": float(np.log2(20.0)), "bandwidth": float(np.log2(20.0)),
    "rolloff": float(np.log2(20.0)), "flatness": 0.0, "high_energy": -6.0, "low_energy": -6.0,
    "onset_rate": float(np.log2(0.05)), "onset_strength": -10.0, "loudness": -120.0,
    "dynamics": 0.0, "zcr": -6.0, "chroma_focus": 0.0,
}


@functools.lru_cache(maxsize=8)
def _chroma_filters(sr: int) -> np.ndarray:
    import librosa

    return librosa.filters.chroma(sr=sr, n_fft=_N_FFT)


def _log2(x: float, floor: float) -> float:
    return float(np.log2(max(float(x), floor)))


def _log10(x: float, floor: float) -> float:
    return float(np.log10(max(float(x), floor)))


def audio_descriptors(y: np.ndarray, sr: int) -> dict[str, float]:
    """The descriptors of mono audio ``y`` at ``sr`` Hz (see the module docstring).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono samples, nominally in [-1, 1].
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    dict of str to float
        One finite value per name of :data:`DESCRIPTOR_NAMES`, in that order.
    """
    import librosa

    if sr <= 0:
        raise ValueError(f"sr={sr!r} must be > 0")
    y = np.nan_to_num(np.asarray(y, dtype=np.float32).reshape(-1))
    if y.size < _N_FFT:
        y = np.pad(y, (0, _N_FFT - y.size))
    mag = np.abs(librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP))
    power = mag**2
    energy = power.sum(axis=0)
    if energy.max() <= 0:
        return dict(_SILENCE)
    voiced = energy > energy.max() * 1e-4
    freqs = librosa.fft_frequencies(sr=sr, n_fft=_N_FFT)
    total = float(power[:, voiced].sum())
    weight = mag / np.maximum(mag.sum(axis=0, keepdims=True), 1e-12)
    centroid = freqs @ weight
    bandwidth = np.sqrt(np.sum(weight * (freqs[:, None] - centroid[None, :]) ** 2, axis=0))
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr, roll_percent=0.85)[0]
    flatness = librosa.feature.spectral_flatness(S=mag)[0]
    onset_env = librosa.onset.onset_strength(S=librosa.power_to_db(power), sr=sr)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=_HOP)
    frame_rms = librosa.feature.rms(S=mag, frame_length=_N_FFT)[0]
    level = 20 * np.log10(np.maximum(frame_rms[voiced], 1e-6))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=_N_FFT, hop_length=_HOP)[0]
    frames = _chroma_filters(sr) @ power[:, voiced]
    chroma = (frames / np.maximum(frames.max(axis=0, keepdims=True), 1e-12)).mean(axis=1)
    p = chroma / max(float(chroma.sum()), 1e-12)
    entropy = -float(np.sum(p * np.log(np.maximum(p, 1e-12)))) / np.log(len(p))
    seconds = max(y.size / sr, 1e-3)
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    return {
        "centroid": _log2(np.mean(centroid[voiced]), 20.0),
        "bandwidth": _log2(np.mean(bandwidth[voiced]), 20.0),
        "rolloff": _log2(np.mean(rolloff[voiced]), 20.0),
        "flatness": _log10(np.mean(flatness[voiced]), 1e-6),
        "high_energy": _log10(power[freqs >= 4000][:, voiced].sum() / total, 1e-6),
        "low_energy": _log10(power[freqs < 250][:, voiced].sum() / total, 1e-6),
        "onset_rate": _log2(len(onsets) / seconds, 0.05),
        "onset_strength": _log2(np.mean(onset_env), 2.0**-10),
        "loudness": float(20 * np.log10(max(rms, 1e-6))),
        "dynamics": float(np.percentile(level, 90) - np.percentile(level, 10)),
        "zcr": _log10(np.mean(zcr[voiced[: zcr.size]]) if zcr.size else 0.0, 1e-6),
        "chroma_focus": float(np.clip(1.0 - entropy, 0.0, 1.0)),
    }


def descriptor_vector(descriptors: dict[str, float] | None) -> np.ndarray:
    """``descriptors`` as a float64 vector in :data:`DESCRIPTOR_NAMES` order (NaN if None
    or a name is missing)."""
    if descriptors is None:
        return np.full(len(DESCRIPTOR_NAMES), np.nan)
    return np.array([float(descriptors.get(n, np.nan)) for n in DESCRIPTOR_NAMES])
