"""What the checkpoint readers share: one-line error reports, the resolution rule, safetensors
headers, pickle-based files, the model a file declares and what a file holds.

Every reader describes a file (its weights' names and shapes come from the header where the
format has one) before any model is built; the declared model is compared with them on the meta
device, so memory stays proportional to the file, whatever it declares. Pickle-based files
(DDIM ``.ckpt``, diffusers ``.bin``) are read only with ``torch.load(weights_only=True)``:
loading never runs code from a file.
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError
from ..model import AdaptiveUNet, UNetConfig

DEFAULT_RESOLUTION = 32      # assumed where a checkpoint does not record it

Shapes = dict[str, tuple[int, ...]]


@dataclass
class StoredWeights:
    """The weights a file holds: their shapes (from the header, or from unpickled tensors) and
    a way to read them, both in our parameter names and shapes."""

    shapes: Shapes
    read: Callable[[], dict[str, torch.Tensor]]
    source: Path                 # the file they are in, for error messages


@dataclass
class ForeignCheckpoint:
    """A checkpoint of another format: its weights and what the file says of them."""

    weights: StoredWeights
    config: UNetConfig
    diffusion: DiffusionConfig
    ema: bool | None             # None: not known
    description: str             # the source format, recorded as ``converted_from``


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


def declared_shapes(config: UNetConfig, skip_type: str, stored: int, source: Path) -> Shapes:
    """Weight name -> shape of the model ``config`` declares, built on the meta device.

    ``stored``: how many weights the file holds. Even on the meta device every block costs
    time and memory, so a model with more res blocks than that (each has weights) is refused
    unbuilt.
    """
    try:
        blocks = config.num_levels * (2 * config.num_res_blocks + 1) + 2
        fits = blocks <= stored  # False for NaN too
        if fits:
            # zero-size layers warn that initialising them is a no-op: noise in a size check
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = AdaptiveUNet(config, skip_type)
    # On the meta device a RuntimeError is a bad size (e.g. negative), never a failed allocation.
    except (TypeError, ValueError, RuntimeError) as error:
        raise UserFacingError(f"{source}: cannot build the model it describes ({brief(error)})") from None
    if not fits:
        raise UserFacingError(f"{source}: weights do not fit the model (it has {blocks} res "
                              f"blocks; weights stored: {stored})")
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


def safetensors_header(path: Path) -> tuple[dict[str, str], Shapes]:
    """(the string metadata, weight name -> shape) of a ``.safetensors`` file; reads no tensor."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserFacingError(f"{path}: not a readable safetensors file ({brief(error)})") from None
    return metadata, shapes


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file whose header ``safetensors_header`` accepted."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserFacingError(f"{path}: not a readable safetensors file ({brief(error)})") from None


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a one-line user error."""
    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, not news
        warnings.simplefilter("ignore")
        try:
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
    """``value`` if it is a non-empty dict of named dense tensors, else a user error about ``what``.

    The tensors may not claim more elements than the bytes they are stored in: a pickle can
    make a tensor of any shape a broadcast view of one stored number, and a model of that size
    would then be built and filled.
    """
    if not (isinstance(value, dict) and value
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided
                    and not v.is_nested for k, v in value.items())):
        raise UserFacingError(f"{path}: {what} is not a state dict of named tensors")
    storages = {v.untyped_storage().data_ptr(): v.untyped_storage().nbytes() for v in value.values()}
    if sum(v.numel() for v in value.values()) > sum(storages.values()):
        raise UserFacingError(f"{path}: {what} holds tensors with more elements than it stores "
                              "(broadcast or overlapping views)")
    return value
