"""What a simulated listener perceives of a clip: audio features computed on the audio it
hears (the decoded OGG it downloaded), never on anything the server says.

Features (on log scales, so that a taste's widths mean the same everywhere in the range):

- ``brightness``: log2 of the mean spectral centroid in Hz (octaves; one unit = an octave);
- ``density``: log2 of the onset rate in onsets per second (rhythmic density);
- ``noisiness``: log10 of the mean spectral flatness (−5 very tonal … 0 white noise);
- ``loudness``: RMS level in dBFS;
- ``pitch``: pitch register, log2 of the median fundamental frequency in Hz (octaves:
  220 Hz → 7.78, 440 Hz → 8.78). The fundamental is :func:`librosa.yin`'s (60–2000 Hz,
  46 ms frames), the median taken over the voiced frames that are periodic
  (autocorrelation peak ≥ 0.5, see ``harmonicity``), or over all voiced frames if none is;
  in polyphonic music it follows the dominant period, often the bass;
- ``tempo``: log2 of librosa's global tempo estimate in BPM (:func:`librosa.feature.tempo`
  on the onset envelope, its default prior around 120 BPM), clipped to 30..320 BPM
  (one unit = double or half the tempo);
- ``dynamic_range``: dB between the 95th and the 10th percentile of the frame energy over
  voiced frames (0 for a steady sound; at most 40, as frames more than 40 dB under the
  loudest frame count as silent);
- ``harmonicity``: harmonics-to-noise ratio in dB (Boersma's, energy-weighted): per voiced
  frame (93 ms), ``r`` = the highest normalised autocorrelation (Hann window, divided by the
  window's own autocorrelation) at a lag of one period of 60–2000 Hz, the share of the
  frame's energy that repeats with that period; then ``10·log10(Σ r·E / Σ (1 − r)·E)`` over
  the frames' energies ``E``, clipped to −20..30 dB (a steady harmonic tone ≈ 30, white
  noise ≈ −10).

"Voiced" frames (2048 samples, hop 512) are those within 40 dB of the loudest frame;
``pitch`` and ``harmonicity`` use every other one (hop 1024), which halves their cost.
Silence gives finite values (:data:`SILENCE`: the darkest, sparsest, quietest, lowest,
slowest, steadiest and least harmonic ones; its flatness is white noise's).

The first four features are computed exactly as before the last four were added, so a taste
that uses only them gives the same appeal as it did.

Cost (``python -m encore.sim.features``; one thread, 2026-12-04, on this 2-core VM with
other work running): 6 s clip at 22,050 Hz, median CPU time ~27 ms with the first four only,
~51 ms with all eight (pitch ~5, periodicity ~8, tempo ~6 ms); the wall time, measured while
other jobs held the cores, was 2–3 times the CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: The features a taste can use, in the order of :class:`AudioFeatures`' fields.
FEATURE_NAMES = (
    "brightness", "density", "noisiness", "loudness",
    "pitch", "tempo", "dynamic_range", "harmonicity",
)

#: Pitch search range of ``pitch`` and ``harmonicity`` (Hz).
F0_MIN, F0_MAX = 60.0, 2000.0
#: Tempo clip range (BPM).
TEMPO_MIN, TEMPO_MAX = 30.0, 320.0
#: Harmonicity clip range (dB), and the per-frame periodicity cap that gives its top.
HNR_MIN, HNR_MAX = -20.0, 30.0
#: Frames whose autocorrelation peak reaches this are periodic (count for ``pitch``).
PERIODIC_R = 0.5

_N_FFT, _HOP = 2048, 512
_PITCH_STRIDE = 2  # pitch and periodicity: every other STFT frame

# Values of silence (no voiced frame).
SILENCE = {
    "brightness": float(np.log2(20.0)), "density": float(np.log2(0.05)), "noisiness": 0.0,
    "loudness": -120.0, "pitch": float(np.log2(F0_MIN)), "tempo": float(np.log2(TEMPO_MIN)),
    "dynamic_range": 0.0, "harmonicity": HNR_MIN,
}


@dataclass(frozen=True)
class AudioFeatures:
    """Perceived features of one clip (see the module docstring for units).

    The last four may be left out (``None``) where a clip's features are written by hand;
    asking for a missing one is an error, never a default value.
    """

    brightness: float
    density: float
    noisiness: float
    loudness: float
    pitch: float | None = None
    tempo: float | None = None
    dynamic_range: float | None = None
    harmonicity: float | None = None

    def get(self, name: str) -> float:
        """The feature called ``name`` (one of :data:`FEATURE_NAMES`).

        Raises
        ------
        KeyError
            An unknown name.
        ValueError
            The feature was not computed for this clip (``None``).
        """
        if name not in FEATURE_NAMES:
            raise KeyError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"feature {name!r} was not computed for this clip")
        return float(value)

    @staticmethod
    def mean(items: list[AudioFeatures]) -> AudioFeatures:
        """Feature-wise mean of several clips (a listener's own songs); a feature missing
        from any of them is missing from the mean."""
        if not items:
            raise ValueError("no features to average")
        out: dict[str, float | None] = {}
        for f in fields(AudioFeatures):
            values = [getattr(x, f.name) for x in items]
            out[f.name] = None if any(v is None for v in values) else float(np.mean(values))
        return AudioFeatures(**out)  # type: ignore[arg-type]


def _periodicity(y: np.ndarray, sr: int, frames_at: np.ndarray) -> np.ndarray:
    """For the STFT's frames ``frames_at`` (indices), the highest normalised autocorrelation at a lag of one
    period of ``F0_MIN``..``F0_MAX`` Hz, clipped to 0..1 (Boersma 1993: the frame's
    autocorrelation divided by its window's, both normalised to lag 0)."""
    import librosa
    import scipy.fft

    pad = np.pad(y, (_N_FFT // 2, _N_FFT // 2))
    frames = librosa.util.frame(pad, frame_length=_N_FFT, hop_length=_HOP, axis=0)[frames_at]
    window = np.hanning(_N_FFT).astype(np.float32)
    lo, hi = int(np.ceil(sr / F0_MAX)), int(np.floor(sr / F0_MIN))
    n = scipy.fft.next_fast_len(_N_FFT + hi + 1, real=True)  # no wrap-around up to lag hi
    ac = scipy.fft.irfft(np.abs(scipy.fft.rfft(frames * window, n=n, axis=-1)) ** 2, n=n,
                         axis=-1)[:, : hi + 1]
    acw = scipy.fft.irfft(np.abs(scipy.fft.rfft(window.astype(np.float64), n=n)) ** 2, n=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (ac[:, lo:] / ac[:, :1]) / (acw[lo: hi + 1] / acw[0])
    r = np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(r.max(axis=1), 0.0, 1.0)


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
        Silence gives the values of :data:`SILENCE` instead of NaN.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size < 2048:
        y = np.pad(y, (0, 2048 - y.size))
    n_fft, hop = _N_FFT, _HOP
    spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    energy = spec.sum(axis=0)
    voiced = energy > energy.max() * 1e-4 if energy.max() > 0 else np.zeros_like(energy, bool)
    if not voiced.any():
        return AudioFeatures(**SILENCE)
    # -- the first four: unchanged (tastes written before the others must not move) --------
    centroid = librosa.feature.spectral_centroid(S=np.sqrt(spec), sr=sr)[0]
    flatness = librosa.feature.spectral_flatness(S=np.sqrt(spec))[0]
    onset_env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=hop)
    seconds = max(len(y) / sr, 1e-3)
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    # -- pitch register, tempo, dynamic range, harmonicity ----------------------------------
    # periodicity and pitch on every other frame (hop 1024): global statistics of a clip
    # need no more, and it halves their cost
    at = np.flatnonzero(voiced[::_PITCH_STRIDE]) * _PITCH_STRIDE
    r = _periodicity(y, sr, at)
    e_at = energy[at].astype(np.float64)
    periodic = float(np.sum(r * e_at))
    aperiodic = float(np.sum((1.0 - r) * e_at))
    hnr_ratio = periodic / max(aperiodic, periodic * 10 ** (-HNR_MAX / 10), 1e-30)
    harmonicity = float(np.clip(10 * np.log10(max(hnr_ratio, 1e-30)), HNR_MIN, HNR_MAX))
    f0 = librosa.yin(y, fmin=F0_MIN, fmax=F0_MAX, sr=sr, frame_length=1024,
                     hop_length=hop * _PITCH_STRIDE)[at // _PITCH_STRIDE]  # centred as `at`
    periodic_f0 = f0[r >= PERIODIC_R]
    pitch = float(np.log2(np.clip(np.median(periodic_f0 if periodic_f0.size else f0),
                                  F0_MIN, F0_MAX)))
    bpm = float(librosa.feature.tempo(onset_envelope=onset_env, sr=sr, hop_length=hop)[0])
    tempo = float(np.log2(np.clip(bpm if np.isfinite(bpm) else TEMPO_MIN, TEMPO_MIN, TEMPO_MAX)))
    p_hi, p_lo = np.percentile(energy[voiced].astype(np.float64), [95, 10])
    dynamic_range = float(10 * np.log10(p_hi / p_lo)) if p_lo > 0 else 40.0
    return AudioFeatures(
        brightness=float(np.log2(max(float(np.mean(centroid[voiced])), 20.0))),
        density=float(np.log2(max(len(onsets) / seconds, 0.05))),
        noisiness=float(np.log10(max(float(np.mean(flatness[voiced])), 1e-6))),
        loudness=float(20 * np.log10(max(rms, 1e-6))),
        pitch=pitch,
        tempo=tempo,
        dynamic_range=dynamic_range,
        harmonicity=harmonicity,
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


def _bench(reps: int = 5, seconds: float = 6.0, sr: int = 22050) -> str:
    """Cost of :func:`audio_features` per clip: wall and CPU time over synthetic clips."""
    import time

    from encore.audio.synth import demo_music

    clips = [demo_music(seconds, sr, seed=s, tempo_bpm=60 + 20 * s, tonic_hz=110 * (1 + s),
                        percussion=s % 2 == 0) for s in range(5)]
    audio_features(clips[0], sr)  # imports, caches
    wall, cpu = [], []
    for _ in range(reps):
        for y in clips:
            t, c = time.perf_counter(), time.process_time()
            audio_features(y, sr)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return (f"audio_features of a {seconds:g} s clip at {sr} Hz ({len(wall)} runs): "
            f"wall median {1000 * np.median(wall):.1f} ms (min {1000 * min(wall):.1f}), "
            f"CPU median {1000 * np.median(cpu):.1f} ms (min {1000 * min(cpu):.1f})")


if __name__ == "__main__":
    print(_bench())  # noqa: T201
