"""The embedded default model: trained with this package's CLI on the shipped digits data."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DIGITS_CHECKPOINT = "digits.safetensors"


def default_checkpoint() -> Path:
    """Path of the shipped digits model (package data)."""
    return Path(str(resources.files("adaskip_ext") / "weights" / DIGITS_CHECKPOINT))
