"""Checkpoints in our own ``.safetensors`` format, and ``load_model`` for every format we read.

One ``.safetensors`` file whose metadata key ``adaskip`` holds JSON with a format version, the
model config, skip type, diffusion config, the skip schedule (c and the normalisation of t), the
training scheme and whether the weights are EMA. diffusers folders (``diffusers_format``) and DDIM
``.ckpt`` files (``ddim_format``) are read there and turned into models here. Every problem with
an input file is a one-line ``UserFacingError`` naming it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .readers import brief, check_resolution
from .ddim_format import read_ddim
from .diffusers_format import (DIFFUSERS_CONFIG, DIFFUSERS_PICKLED_WEIGHTS, DIFFUSERS_WEIGHTS,
                               read_diffusers)
from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError, atomic_path
from ..model import SKIP_TYPES, AdaptiveUNet, UNetConfig

FORMAT_VERSION = 1
METADATA_KEY = "adaskip"
T_NORMALISATION = "(timestep + 1) / T"


def build_metadata(
    model: AdaptiveUNet,
    diffusion: DiffusionConfig,
    c: float,
    scheme: str,
    ema: bool | None,
) -> dict[str, Any]:
    """The metadata dictionary stored with the weights (``ema`` None: not known)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "skip_type": model.skip_type,
        "diffusion": diffusion.to_dict(),
        "schedule": {"c": c, "normalisation": T_NORMALISATION},
        "training_scheme": scheme,
        "ema": ema,
    }


def save_model(model: AdaptiveUNet, path: str | os.PathLike[str],
               metadata: dict[str, Any] | None = None) -> None:
    """Write weights and metadata (default: ``model.metadata``) atomically to ``path``."""
    metadata = dict(metadata if metadata is not None else model.metadata)
    metadata.setdefault("format_version", FORMAT_VERSION)
    metadata["model"] = model.config.to_dict()
    metadata["skip_type"] = model.skip_type
    metadata.setdefault("diffusion", DiffusionConfig().to_dict())
    metadata.setdefault("schedule", {"c": 0.0, "normalisation": T_NORMALISATION})
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})


def model_from_state_dict(
    state: dict[str, torch.Tensor],
    config: UNetConfig,
    skip_type: str,
    fresh_bridges: bool,
    source: Path,
) -> AdaptiveUNet:
    """Build a model (in eval mode) and load ``state`` strictly; bridges may be missing only if
    ``fresh_bridges``."""
    if skip_type not in SKIP_TYPES:
        raise UserFacingError(f"{source}: skip type must be one of {SKIP_TYPES}, got {skip_type!r}")
    try:
        model = AdaptiveUNet(config, skip_type)
    except (TypeError, ValueError) as error:
        raise UserFacingError(f"{source}: cannot build the model it describes ({brief(error)})") from None
    expected = model.state_dict()
    has_bridges = any(name.startswith("bridges.") for name in state)
    if skip_type != "interpolate":
        state = {name: value for name, value in state.items() if not name.startswith("bridges.")}
    elif not has_bridges:
        if not fresh_bridges:
            raise UserFacingError(
                f"{source}: skip type 'interpolate' needs bridge weights, which this checkpoint "
                "lacks; ask for fresh zero-initialised bridges (--fresh-bridges) to start from "
                "the 'zero' behaviour"
            )
        state = {**state, **{n: v for n, v in expected.items() if n.startswith("bridges.")}}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserFacingError(f"{source}: weights do not fit the model ({detail})")
    for name, value in state.items():
        if value.shape != expected[name].shape:
            raise UserFacingError(
                f"{source}: weight {name} has shape {tuple(value.shape)}, the model needs "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)
    return model.eval()


def _converted_metadata(model: AdaptiveUNet, diffusion: DiffusionConfig, ema: bool | None,
                        source_format: str) -> dict[str, Any]:
    """Metadata for weights trained elsewhere: full network only (c = 0)."""
    metadata = build_metadata(model, diffusion, 0.0, "full", ema)
    metadata["converted_from"] = source_format
    return metadata


def _read_own(path: Path, skip_type: str | None, fresh_bridges: bool,
              resolution: int | None) -> AdaptiveUNet:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserFacingError(f"{path}: not a readable safetensors file ({brief(error)})") from None
    if METADATA_KEY not in header:
        raise UserFacingError(
            f"{path}: safetensors file without adaskip metadata (unknown format; a diffusers "
            f"model is read from its folder, with {DIFFUSERS_CONFIG})"
        )
    try:
        metadata = json.loads(header[METADATA_KEY])
        if metadata.get("format_version") != FORMAT_VERSION:
            raise UserFacingError(
                f"{path}: checkpoint format version {metadata.get('format_version')!r} is not "
                f"supported (this adaskip reads version {FORMAT_VERSION})"
            )
        config = UNetConfig.from_dict(metadata["model"])
        DiffusionConfig.from_dict(metadata["diffusion"])
        stored_skip_type = metadata["skip_type"]
    except UserFacingError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserFacingError(f"{path}: bad adaskip metadata ({brief(error)})") from None
    check_resolution(config.resolution, resolution, path)
    model = model_from_state_dict(state, config, skip_type or stored_skip_type, fresh_bridges, path)
    metadata["skip_type"] = model.skip_type
    model.metadata = metadata
    return model


def checkpoint_format(path: str | os.PathLike[str]) -> str:
    """``adaskip``, ``diffusers`` or ``torch`` (a pickle-based file), judged from the content.

    A weights file inside a diffusers folder counts as the folder.
    """
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"{path}: no such file or directory")
    if path.is_dir():
        return "diffusers"
    if (path.name in (DIFFUSERS_WEIGHTS, DIFFUSERS_PICKLED_WEIGHTS)
            and (path.parent / DIFFUSERS_CONFIG).is_file()):
        return "diffusers"
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise UserFacingError(f"{path}: cannot read it ({brief(error)})") from None
    # safetensors: an 8-byte little-endian header length, then the JSON header
    return "adaskip" if len(head) == 9 and head[8:9] == b"{" else "torch"


def load_model(
    path: str | os.PathLike[str],
    skip_type: str | None = None,
    fresh_bridges: bool = False,
    resolution: int | None = None,
) -> AdaptiveUNet:
    """Load an adaskip ``.safetensors``, a diffusers ``UNet2DModel`` folder or a DDIM ``.ckpt``.

    ``skip_type`` overrides the stored one (converted models default to ``zero``);
    ``interpolate`` on weights without bridges needs ``fresh_bridges`` (zero-initialised ones).
    ``resolution`` is for checkpoints that do not record it (DDIM; default 32).
    The metadata is on ``model.metadata``.
    """
    path = Path(path)
    kind = checkpoint_format(path)
    if resolution is not None and resolution < 1:
        raise UserFacingError(f"resolution must be positive, got {resolution}")
    if kind == "adaskip":
        return _read_own(path, skip_type, fresh_bridges, resolution)
    if kind == "diffusers":
        foreign = read_diffusers(path if path.is_dir() else path.parent, resolution)
    else:
        foreign = read_ddim(path, resolution)
    model = model_from_state_dict(foreign.state, foreign.config, skip_type or "zero", fresh_bridges,
                                  foreign.source)
    model.metadata = _converted_metadata(model, foreign.diffusion, foreign.ema, foreign.description)
    return model
