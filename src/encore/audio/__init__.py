"""Audio in and out: decoding and validation, encoding, slice choice, the mel codec and
the Griffin-Lim vocoder.

Modules: :mod:`~encore.audio.decode` (``load_audio``, ``probe_audio``),
:mod:`~encore.audio.encode` (``encode_audio``), :mod:`~encore.audio.slices`
(``choose_slices``), :mod:`~encore.audio.mel` (``MelConfig`` and the codec),
:mod:`~encore.audio.vocoder` (``GriffinLim``), :mod:`~encore.audio.synth` (test music).
Importing this package loads numpy only; librosa, soundfile and torch load on first use.
"""

from __future__ import annotations

from encore.audio.decode import AudioInfo, load_audio, probe_audio
from encore.audio.encode import encode_audio
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
from encore.audio.slices import choose_slices

__all__ = [
    "AudioInfo",
    "MelConfig",
    "audio_slice_to_image",
    "audio_to_images",
    "choose_slices",
    "encode_audio",
    "image_to_audio",
    "images_to_unit",
    "load_audio",
    "mel_db",
    "normalize_db_crop",
    "probe_audio",
    "unit_to_images",
]
