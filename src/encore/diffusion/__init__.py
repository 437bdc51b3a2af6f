"""The diffusion engine: model folders, the denoiser, DDIM generate / vary / invert / merge.

Submodules are imported lazily so that ``import encore.diffusion`` stays cheap; the names
below resolve on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpectrogramDenoiser": "encore.diffusion.model",
    "DenoiserConfig": "encore.diffusion.model",
    "default_base_config": "encore.diffusion.model",
    "tiny_config": "encore.diffusion.model",
    "LoadedModel": "encore.diffusion.folder",
    "load_model_folder": "encore.diffusion.folder",
    "save_model_folder": "encore.diffusion.folder",
    "default_scheduler": "encore.diffusion.folder",
    "default_scheduler_config": "encore.diffusion.folder",
    "slerp": "encore.diffusion.slerp",
    "slerp_n": "encore.diffusion.slerp",
    "generate": "encore.diffusion.sampling",
    "vary": "encore.diffusion.sampling",
    "invert": "encore.diffusion.sampling",
    "merge": "encore.diffusion.sampling",
    "SampleResult": "encore.diffusion.sampling",
    "Engine": "encore.diffusion.engine",
    "Clip": "encore.diffusion.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'encore.diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
