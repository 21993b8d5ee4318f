"""Checkpoints: our own ``.safetensors`` format (weights + JSON metadata under key ``adaskip``).

The metadata holds a format version, the model config, skip type, diffusion config, the skip
schedule (c and the normalisation of t), the training scheme and whether the weights are EMA.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open

from .diffusion import DiffusionConfig
from .io_utils import UserFacingError, atomic_path
from .model import SKIP_TYPES, AdaptiveUNet, UNetConfig

FORMAT_VERSION = 1
METADATA_KEY = "adaskip"
T_NORMALISATION = "(timestep + 1) / T"


def build_metadata(
    model: AdaptiveUNet,
    diffusion: DiffusionConfig,
    c: float,
    scheme: str,
    ema: bool,
) -> dict[str, Any]:
    """The metadata dictionary stored with the weights."""
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


def _read_own(path: Path, skip_type: str | None, fresh_bridges: bool) -> AdaptiveUNet:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserFacingError(f"{path}: not a readable safetensors file ({error})") from None
    if METADATA_KEY not in header:
        raise UserFacingError(f"{path}: safetensors file without adaskip metadata (unknown format)")
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
    except (KeyError, TypeError, ValueError) as error:
        raise UserFacingError(f"{path}: bad adaskip metadata ({error})") from None
    model = model_from_state_dict(state, config, skip_type or stored_skip_type, fresh_bridges, path)
    metadata["skip_type"] = model.skip_type
    model.metadata = metadata
    return model


def model_from_state_dict(
    state: dict[str, torch.Tensor],
    config: UNetConfig,
    skip_type: str,
    fresh_bridges: bool,
    source: Path,
) -> AdaptiveUNet:
    """Build a model and load ``state`` strictly; bridges may be missing only if ``fresh_bridges``."""
    if skip_type not in SKIP_TYPES:
        raise UserFacingError(f"skip type must be one of {SKIP_TYPES}, got {skip_type!r}")
    model = AdaptiveUNet(config, skip_type)
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
    return model


def load_model(path: str | os.PathLike[str], skip_type: str | None = None,
               fresh_bridges: bool = False) -> AdaptiveUNet:
    """Load an adaskip ``.safetensors`` checkpoint; ``skip_type`` overrides the stored one."""
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"{path}: no such file or directory")
    return _read_own(path, skip_type, fresh_bridges)
