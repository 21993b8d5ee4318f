"""Our own checkpoint format: one ``.safetensors`` file whose metadata key ``adaskip`` holds JSON.

The JSON records a format version, the model config, skip type, diffusion config, the skip
schedule (c and the normalisation of t), the training scheme and whether the weights are EMA.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from .diffusers_format import DIFFUSERS_CONFIG
from .readers import StoredWeights, brief, read_safetensors, safetensors_header
from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError, atomic_path
from ..model import AdaptiveUNet, UNetConfig

FORMAT_VERSION = 1
METADATA_KEY = "adaskip"
T_NORMALISATION = "(timestep + 1) / T"


def recorded_metadata(config: UNetConfig, skip_type: str, diffusion: DiffusionConfig = DiffusionConfig(),
                      c: float = 0.0) -> dict[str, Any]:
    """What every checkpoint records; the defaults (DDPM's diffusion, no skipping: c = 0) are
    what a checkpoint saved without them gets."""
    return {
        "format_version": FORMAT_VERSION,
        "model": config.to_dict(),
        "skip_type": skip_type,
        "diffusion": diffusion.to_dict(),
        "schedule": {"c": c, "normalisation": T_NORMALISATION},
    }


def build_metadata(
    model: AdaptiveUNet,
    diffusion: DiffusionConfig,
    c: float,
    scheme: str,
    ema: bool | None,
) -> dict[str, Any]:
    """The metadata dictionary stored with the weights (``ema`` None: not known)."""
    return {**recorded_metadata(model.config, model.skip_type, diffusion, c),
            "training_scheme": scheme, "ema": ema}


def converted_metadata(config: UNetConfig, skip_type: str, diffusion: DiffusionConfig,
                       ema: bool | None, source_format: str) -> dict[str, Any]:
    """Metadata for weights trained elsewhere: full network only (c = 0)."""
    return {**recorded_metadata(config, skip_type, diffusion), "training_scheme": "full",
            "ema": ema, "converted_from": source_format}


def save_model(model: AdaptiveUNet, path: str | os.PathLike[str],
               metadata: dict[str, Any] | None = None) -> None:
    """Write weights and metadata (default: ``model.metadata``) atomically to ``path``; the
    model's config and skip type replace any in ``metadata``, ``recorded_metadata``'s defaults
    fill in what it lacks."""
    recorded = recorded_metadata(model.config, model.skip_type)
    metadata = {**recorded, **(metadata if metadata is not None else model.metadata),
                "model": recorded["model"], "skip_type": recorded["skip_type"]}
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})


def read_adaskip(path: Path) -> tuple[dict[str, Any], UNetConfig, StoredWeights]:
    """(metadata, model config, weights) of one of our files, from its header alone."""
    header, shapes = safetensors_header(path)
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
        if "skip_type" not in metadata:  # required even where the caller overrides it
            raise KeyError("skip_type")
    except UserFacingError:
        raise
    # ArithmeticError: e.g. num_groups = 0, which the config's divisibility check divides by
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as error:
        raise UserFacingError(f"{path}: bad adaskip metadata ({brief(error)})") from None
    return metadata, config, StoredWeights(shapes, lambda: read_safetensors(path), path)
