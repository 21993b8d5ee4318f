"""``load_model`` for every format we read: our ``.safetensors`` (``adaskip_format``), diffusers
``UNet2DModel`` folders (``diffusers_format``) and DDIM ``.ckpt`` files (``ddim_format``).

A file is described first (its metadata and its weights' names and shapes, from the header
where the format has one) and compared with the model it declares on the meta device; only
then are the weights read and the model built, so memory stays proportional to the file
whatever it declares. Every problem with an input file is a one-line ``UserFacingError`` naming it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .adaskip_format import converted_metadata, read_adaskip
from .ddim_format import read_ddim
from .diffusers_format import (DIFFUSERS_CONFIG, DIFFUSERS_PICKLED_WEIGHTS, DIFFUSERS_WEIGHTS,
                               read_diffusers)
from .readers import StoredWeights, brief, check_resolution, declared_shapes
from ..io_utils import MissingFileError, UserFacingError
from ..model import SKIP_TYPES, AdaptiveUNet, UNetConfig


@dataclass
class Checkpoint:
    """A checkpoint whose stored weights fit the model it declares; nothing built, and the
    weights read only where the format has no header to describe them."""

    format: str                  # ``checkpoint_format``'s answer
    config: UNetConfig
    metadata: dict[str, Any]     # ours, or made for a converted format; the skip type resolved
    weights: StoredWeights       # those the model takes: bridges only for ``interpolate``

    @property
    def skip_type(self) -> str:
        return self.metadata["skip_type"]


def checked_weights(weights: StoredWeights, config: UNetConfig, skip_type: str,
                    fresh_bridges: bool) -> StoredWeights:
    """The stored weights a ``skip_type`` model of ``config`` takes, checked name by name and
    shape by shape against that model built on the meta device (no memory allocated).

    Bridges are dropped unless ``skip_type`` is ``interpolate``, which needs them or
    ``fresh_bridges`` (then the model's zero-initialised ones stay).
    """
    source = weights.source
    if skip_type not in SKIP_TYPES:
        raise UserFacingError(f"{source}: skip type must be one of {SKIP_TYPES}, got {skip_type!r}")
    expected = declared_shapes(config, skip_type, len(weights.shapes), source)
    shapes = weights.shapes
    if skip_type != "interpolate":
        shapes = {name: shape for name, shape in shapes.items() if not name.startswith("bridges.")}
    elif not any(name.startswith("bridges.") for name in shapes):
        if not fresh_bridges:
            raise UserFacingError(
                f"{source}: skip type 'interpolate' needs bridge weights, which this checkpoint "
                "lacks; ask for fresh zero-initialised bridges (--fresh-bridges) to start from "
                "the 'zero' behaviour"
            )
        expected = {name: shape for name, shape in expected.items() if not name.startswith("bridges.")}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserFacingError(f"{source}: weights do not fit the model ({detail})")
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise UserFacingError(
                f"{source}: weight {name} has shape {shape}, the model needs {expected[name]}"
            )

    def read() -> dict[str, torch.Tensor]:
        return {name: value for name, value in weights.read().items() if name in shapes}

    return StoredWeights(shapes, read, source)


def model_from_state_dict(state: dict[str, torch.Tensor], config: UNetConfig,
                          skip_type: str) -> AdaptiveUNet:
    """Build the model (in eval mode) and load ``state``, weights ``checked_weights`` accepted:
    all of the model's, or all but the bridges, which keep their fresh initialisation."""
    model = AdaptiveUNet(config, skip_type)
    fresh = {name: value for name, value in model.state_dict().items()
             if name.startswith("bridges.") and name not in state}
    model.load_state_dict({**state, **fresh})
    return model.eval()


def checkpoint_format(path: str | os.PathLike[str]) -> str:
    """``adaskip``, ``diffusers`` or ``torch`` (a pickle-based file), judged from the content.

    A weights file inside a diffusers folder counts as the folder.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or directory")
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


def inspect_checkpoint(
    path: str | os.PathLike[str],
    skip_type: str | None = None,
    fresh_bridges: bool = False,
    resolution: int | None = None,
) -> Checkpoint:
    """What ``load_model`` would load, checked as it checks it, without building the model;
    the arguments are ``load_model``'s."""
    path = Path(path)
    kind = checkpoint_format(path)
    if resolution is not None and resolution < 1:
        raise UserFacingError(f"resolution must be positive, got {resolution}")
    if kind == "adaskip":
        metadata, config, weights = read_adaskip(path)
        check_resolution(config.resolution, resolution, path)
        metadata["skip_type"] = skip_type or metadata["skip_type"]
    else:
        foreign = (read_diffusers(path if path.is_dir() else path.parent, resolution)
                   if kind == "diffusers" else read_ddim(path, resolution))
        config, weights = foreign.config, foreign.weights
        metadata = converted_metadata(config, skip_type or "zero", foreign.diffusion, foreign.ema,
                                      foreign.description)
    return Checkpoint(kind, config, metadata,
                      checked_weights(weights, config, metadata["skip_type"], fresh_bridges))


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
    The metadata is on ``model.metadata``. A missing ``path`` raises ``MissingFileError``
    (a ``FileNotFoundError``); every other problem with it a ``UserFacingError``.
    """
    checkpoint = inspect_checkpoint(path, skip_type, fresh_bridges, resolution)
    model = model_from_state_dict(checkpoint.weights.read(), checkpoint.config, checkpoint.skip_type)
    model.metadata = checkpoint.metadata
    return model
