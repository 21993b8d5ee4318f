"""What the checkpoint readers share: one-line error reports, the resolution rule, pickle-based
files, and the shape of weights read from another format.

Pickle-based files (DDIM ``.ckpt``, diffusers ``.bin``) are read only with
``torch.load(weights_only=True)``: loading never runs code from a file.
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError
from ..model import UNetConfig

DEFAULT_RESOLUTION = 32      # assumed where a checkpoint does not record it


@dataclass
class ForeignCheckpoint:
    """Weights read from another format, in our parameter names, with what the file says of them."""

    state: dict[str, torch.Tensor]
    config: UNetConfig
    diffusion: DiffusionConfig
    ema: bool | None             # None: not known
    description: str             # the source format, recorded as ``converted_from``
    source: Path                 # the file the weights came from, for error messages


def brief(error: BaseException) -> str:
    """The first sentence of an error message, for one-line reports."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0].split('. ')[0] if lines else repr(error)}"


def check_resolution(stored: int, requested: int | None, source: Path) -> None:
    """Refuse a ``--resolution`` that contradicts the one the checkpoint records."""
    if requested is not None and requested != stored:
        raise UserFacingError(
            f"{source}: the checkpoint records resolution {stored}; --resolution {requested} "
            "applies only to checkpoints that do not record it (DDIM .ckpt)"
        )


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a one-line user error."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, not news
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        _, refused, reason = str(error).partition("WeightsUnpickler error:")
        if not refused:
            raise UserFacingError(f"{path}: damaged or unknown checkpoint ({brief(error)})") from None
        lines = [line.strip() for line in reason.splitlines() if line.strip()]
        detail = lines[0].split(". ")[0] if lines else "an object torch does not allow"
        raise UserFacingError(
            f"{path}: refused to unpickle it ({detail}); only tensors and plain containers "
            "are loaded, never code"
        ) from None
    except Exception as error:  # zip, pickle and storage errors of any kind: name the file, stop
        raise UserFacingError(
            f"{path}: unknown or damaged checkpoint (neither safetensors nor a readable torch "
            f"file: {brief(error)})"
        ) from None


def tensor_dict(value: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    """``value`` if it is a non-empty dict of named tensors, else a user error about ``what``."""
    if not (isinstance(value, dict) and value
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())):
        raise UserFacingError(f"{path}: {what} is not a state dict of named tensors")
    return value
