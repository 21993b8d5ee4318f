"""The shipped weights (package data under ``weights/``): the default digits model, trained with
this package's CLI on the embedded digits, and the digits metric's classifier."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DIGITS_CHECKPOINT = "digits.safetensors"
DIGITS_CLASSIFIER = "digits_classifier.safetensors"


def _shipped(name: str) -> Path:
    return Path(str(resources.files("adaskip_ext") / "weights" / name))


def default_checkpoint() -> Path:
    """Path of the shipped digits model."""
    return _shipped(DIGITS_CHECKPOINT)


def classifier_weights() -> Path:
    """Path of the digits metric's classifier (``digits_metric --train`` rewrites it)."""
    return _shipped(DIGITS_CLASSIFIER)
