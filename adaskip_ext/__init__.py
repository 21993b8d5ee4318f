"""adaskip: faster diffusion sampling by skipping the U-Net's deepest levels at high noise.

The names below load on first use, so importing one part of the package (the trainer, say) does
not import the others (the CUDA-graph runners).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AdaptiveUNet": "model", "UNetConfig": "model", "DiffusionConfig": "diffusion",
    "SkipSchedule": "schedule", "load_model": "checkpoints", "save_model": "checkpoints",
    "sample_images": "sampling", "TrainConfig": "training", "Trainer": "training",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .checkpoints import load_model, save_model
    from .diffusion import DiffusionConfig
    from .model import AdaptiveUNet, UNetConfig
    from .sampling import sample_images
    from .schedule import SkipSchedule
    from .training import TrainConfig, Trainer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'adaskip_ext' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
