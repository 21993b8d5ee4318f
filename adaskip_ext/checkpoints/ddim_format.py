"""DDIM / pytorch_diffusion ``.ckpt`` files, read only.

Such a file is a plain state dict in our parameter names, or the DDIM training list
``[model_state, optimizer_state, epoch, step, ema_shadow]``. The model config is inferred from
the tensor shapes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .readers import DEFAULT_RESOLUTION, ForeignCheckpoint, StoredWeights, tensor_dict, torch_load
from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError
from ..model import UNetConfig

DDIM_NUM_GROUPS = 32         # GroupNorm groups of every DDIM / pytorch_diffusion model


def ddim_weights(content: Any, path: Path) -> tuple[dict[str, torch.Tensor], bool | None, str]:
    """(state dict without ``module.`` prefixes, whether EMA (None: unknown), description).

    ``content``: what ``torch.load`` returned, a state dict or the DDIM training list
    ``[model_state, optimizer_state, epoch, step(, ema_shadow)]``, whose EMA copy wins.
    """
    if isinstance(content, (list, tuple)):
        if len(content) < 4:
            raise UserFacingError(
                f"{path}: a list of {len(content)} items is not a DDIM training checkpoint "
                "([model, optimizer, epoch, step, ema])"
            )
        if len(content) > 4 and content[4]:
            state = tensor_dict(content[4], path, "the EMA entry (item 5)")
            ema, description = True, "DDIM training checkpoint (EMA weights)"
        else:
            state = tensor_dict(content[0], path, "the model entry (item 1)")
            ema, description = False, "DDIM training checkpoint (training weights, no EMA copy)"
    elif isinstance(content, dict):
        state = tensor_dict(content, path, "the file")
        ema, description = None, "DDIM / pytorch_diffusion state dict"
    else:
        raise UserFacingError(
            f"{path}: holds a {type(content).__name__}, not a state dict or a DDIM training list"
        )
    return {name.removeprefix("module."): value for name, value in state.items()}, ema, description


def infer_ddim_config(state: dict[str, torch.Tensor], resolution: int | None,
                      path: Path) -> UNetConfig:
    """The UNetConfig that DDIM-named weights imply.

    Neither the resolution (default 32), the GroupNorm groups (32) nor the dropout (DDPM's 0.1)
    is in the weights.
    """
    def count(pattern: str) -> int:  # 1 + the largest index matched, 0 when none
        return 1 + max([int(m.group(1)) for name in state if (m := re.match(pattern, name))] or [-1])

    try:
        conv_in, conv_out = state["conv_in.weight"], state["conv_out.weight"]
        if conv_in.dim() != 4 or conv_out.dim() != 4:
            raise ValueError("conv_in / conv_out are not 4-d conv weights")
        levels = count(r"down\.(\d+)\.")
        num_res_blocks = count(r"down\.0\.block\.(\d+)\.")
        if not levels or not num_res_blocks:
            raise ValueError("no down.{i}.block.{j} weights")
        ch = conv_in.shape[0]
        if not ch:
            raise ValueError("conv_in has no output channels")
        level_weights = [state[f"down.{i}.block.0.conv1.weight"] for i in range(levels)]
        if any(weight.dim() != 4 for weight in level_weights):
            raise ValueError("a down.{i}.block.0.conv1 weight is not a 4-d conv weight")
        level_channels = [weight.shape[0] for weight in level_weights]
        bad = [c for c in level_channels if c % ch]
        if bad:
            raise ValueError(f"level channels {bad[0]} are not a multiple of ch = {ch}")
        resolution = resolution or DEFAULT_RESOLUTION
        return UNetConfig(
            in_channels=conv_in.shape[1],
            out_channels=conv_out.shape[0],
            ch=ch,
            ch_mult=tuple(c // ch for c in level_channels),
            num_res_blocks=num_res_blocks,
            attn_resolutions=tuple(resolution // 2 ** i for i in range(levels)
                                   if f"down.{i}.attn.0.q.weight" in state),
            dropout=UNetConfig.dropout,
            resolution=resolution,
            num_groups=DDIM_NUM_GROUPS,
        )
    except KeyError as error:
        raise UserFacingError(f"{path}: not a DDIM U-Net state dict (no weight {error})") from None
    except ValueError as error:
        raise UserFacingError(f"{path}: cannot infer the model configuration ({error})") from None


def read_ddim(path: Path, resolution: int | None) -> ForeignCheckpoint:
    """The weights and inferred config of a ``.ckpt``; diffusion settings are DDPM's defaults."""
    state, ema, description = ddim_weights(torch_load(path), path)
    config = infer_ddim_config(state, resolution, path)
    weights = StoredWeights({name: tuple(value.shape) for name, value in state.items()}, lambda: state, path)
    return ForeignCheckpoint(weights, config, DiffusionConfig(), ema, description)
