"""diffusers ``UNet2DModel`` folders, read and written.

A folder holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or the pickled
``.bin``), optionally ``scheduler_config.json`` beside them: the ``google/ddpm-cifar10-32``
layout. Up blocks run deepest first there: our ``up.{i}`` is diffusers' ``up_blocks.{N-1-i}``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Collection

import torch
from safetensors.torch import save_file

from .readers import (DEFAULT_RESOLUTION, ForeignCheckpoint, Shapes, StoredWeights, brief,
                      check_resolution, declared_shapes, read_safetensors, safetensors_header,
                      tensor_dict, torch_load)
from ..diffusion import DiffusionConfig
from ..io_utils import UserFacingError, atomic_directory
from ..model import AdaptiveUNet, UNetConfig

DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_PICKLED_WEIGHTS = "diffusion_pytorch_model.bin"
SCHEDULER_CONFIG = "scheduler_config.json"
NORM_EPS = 1e-6              # GroupNorm eps of blocks.normalize

_RESNET_NAMES = {"temb_proj": "time_emb_proj", "nin_shortcut": "conv_shortcut"}
_ATTENTION_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_SAMPLERS = {"downsample": "downsamplers.0", "upsample": "upsamplers.0"}
# Our attention projections are 1×1 convs (C, C, 1, 1); diffusers' are Linear (C, C).
_ATTENTION_PROJECTION = re.compile(r"(^|\.)attn(_1|\.\d+)\.(q|k|v|proj_out)\.weight$")

# UNet2DModel settings we require: name -> (diffusers' default when absent, accepted values).
_DIFFUSERS_FIXED: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "center_input_sample": (False, (False,)),
    "time_embedding_type": ("positional", ("positional",)),
    "freq_shift": (0, (1,)),
    "flip_sin_to_cos": (True, (False,)),
    "mid_block_type": ("UNetMidBlock2D", ("UNetMidBlock2D",)),
    "mid_block_scale_factor": (1, (1,)),
    "downsample_padding": (1, (0,)),
    "downsample_type": ("conv", ("conv",)),
    "upsample_type": ("conv", ("conv",)),
    "act_fn": ("silu", ("silu", "swish")),
    "resnet_time_scale_shift": ("default", ("default",)),
    "add_attention": (True, (True,)),
    "class_embed_type": (None, (None,)),
    "num_class_embeds": (None, (None,)),
}
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "dropout": 0.0,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "time_embedding_dim": None,
    "sample_size": None,
}


def diffusers_name(name: str, num_levels: int) -> str | None:
    """Our parameter name -> its diffusers ``UNet2DModel`` name; None for bridges (no such thing)."""
    parts = name.split(".")
    head = parts[0]
    if head == "bridges":
        return None
    if head in ("conv_in", "conv_out"):
        return name
    if head == "norm_out":
        return f"conv_norm_out.{parts[1]}"
    if head == "temb":  # temb.dense.{0,1}.X
        return f"time_embedding.linear_{int(parts[2]) + 1}.{parts[3]}"
    if head == "mid":  # mid.{block_1, attn_1, block_2}.X
        if parts[1] == "attn_1":
            return f"mid_block.attentions.0.{_ATTENTION_NAMES[parts[2]]}.{parts[3]}"
        resnet = int(parts[1].removeprefix("block_")) - 1
        return f"mid_block.resnets.{resnet}.{_RESNET_NAMES.get(parts[2], parts[2])}.{parts[3]}"
    level = int(parts[1])  # down.{i}.X or up.{i}.X
    block = f"down_blocks.{level}" if head == "down" else f"up_blocks.{num_levels - 1 - level}"
    if parts[2] == "block":
        return f"{block}.resnets.{parts[3]}.{_RESNET_NAMES.get(parts[4], parts[4])}.{parts[5]}"
    if parts[2] == "attn":
        return f"{block}.attentions.{parts[3]}.{_ATTENTION_NAMES[parts[4]]}.{parts[5]}"
    return f"{block}.{_SAMPLERS[parts[2]]}.{'.'.join(parts[3:])}"


def _modern_attention_name(name: str) -> str:
    """Rename legacy attention weights (``query``, ``key``, ``value``, ``proj_attn``) to the new ones."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in _LEGACY_ATTENTION_NAMES and "attentions" in parts:
        return ".".join(parts[:-2] + [_LEGACY_ATTENTION_NAMES[parts[-2]], parts[-1]])
    return name


def to_diffusers_state_dict(model: AdaptiveUNet) -> dict[str, torch.Tensor]:
    """The model's weights in diffusers' names and shapes (bridges dropped)."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        target = diffusers_name(name, model.num_levels)
        if target is None:
            continue
        if _ATTENTION_PROJECTION.search(name):
            tensor = tensor[:, :, 0, 0]
        tensors[target] = tensor.detach().to("cpu").contiguous()
    return tensors


def diffusers_sources(stored: Collection[str], config: UNetConfig, path: Path) -> dict[str, str]:
    """Our parameter name -> the stored diffusers name (new or legacy attention names) it is read
    from, for the model ``config``; every stored name must be used."""
    modern = {_modern_attention_name(name): name for name in stored}
    sources = {}
    for name in declared_shapes(config, "zero", len(stored), path):
        source = diffusers_name(name, config.num_levels)
        if source not in modern:
            raise UserFacingError(f"{path}: weights do not fit the config (missing {source})")
        sources[name] = modern[source]
    unexpected = sorted(set(stored) - set(sources.values()))
    if unexpected:
        raise UserFacingError(f"{path}: weights do not fit the config (unexpected {unexpected[:3]})")
    return sources


def _our_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape + (1, 1) if _ATTENTION_PROJECTION.search(name) and len(shape) == 2 else shape


def _our_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    return value[:, :, None, None] if _ATTENTION_PROJECTION.search(name) and value.dim() == 2 else value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _unsupported(path: Path, key: str, value: Any, need: str) -> UserFacingError:
    return UserFacingError(f"{path}: unsupported UNet2DModel configuration: {key} = "
                           f"{json.dumps(value)}; adaskip needs {need}")


def config_from_diffusers(values: dict[str, Any], path: Path, resolution: int | None) -> UNetConfig:
    """Translate a ``UNet2DModel`` config.json; anything our U-Net cannot reproduce is refused."""
    class_name = values.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise _unsupported(path, "_class_name", class_name, '"UNet2DModel"')
    for key, (default, accepted) in _DIFFUSERS_FIXED.items():
        value = values.get(key, default)
        if value not in accepted:
            raise _unsupported(path, key, value, " or ".join(json.dumps(a) for a in accepted))
    v = {key: values.get(key, default) for key, default in _DIFFUSERS_DEFAULTS.items()}
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        if not isinstance(v[key], (list, tuple)):
            raise _unsupported(path, key, v[key], "a list")
    down, up, channels = list(v["down_block_types"]), list(v["up_block_types"]), list(v["block_out_channels"])
    if not (len(down) == len(up) == len(channels) >= 1):
        raise _unsupported(path, "block_out_channels", channels,
                           "as many entries as down_block_types and up_block_types")
    for key, types, allowed in (("down_block_types", down, ("DownBlock2D", "AttnDownBlock2D")),
                                ("up_block_types", up, ("UpBlock2D", "AttnUpBlock2D"))):
        if any(t not in allowed for t in types):
            raise _unsupported(path, key, types, f"only {' and '.join(allowed)}")
    attention = [t == "AttnDownBlock2D" for t in down]
    if [t == "AttnUpBlock2D" for t in reversed(up)] != attention:
        raise _unsupported(path, "up_block_types", up,
                           "attention at the levels where down_block_types has it (mirrored)")
    for key in ("in_channels", "out_channels", "layers_per_block", "norm_num_groups"):
        if not _positive_int(v[key]):
            raise _unsupported(path, key, v[key], "a positive integer")
    if not all(_positive_int(c) for c in channels):
        raise _unsupported(path, "block_out_channels", channels, "positive integers")
    ch = channels[0]
    if any(c % ch for c in channels):
        raise _unsupported(path, "block_out_channels", channels, f"multiples of the first ({ch})")
    head_dim = v["attention_head_dim"]
    attention_channels = [c for c, a in zip(channels, attention) if a] + [channels[-1]]
    if head_dim is not None and any(c != head_dim for c in attention_channels):
        raise _unsupported(path, "attention_head_dim", head_dim,
                           "single-head attention (null, or the channels of every attention block)")
    if v["attn_norm_num_groups"] not in (None, v["norm_num_groups"]):
        raise _unsupported(path, "attn_norm_num_groups", v["attn_norm_num_groups"],
                           "null or norm_num_groups")
    if v["time_embedding_dim"] not in (None, 4 * ch):
        raise _unsupported(path, "time_embedding_dim", v["time_embedding_dim"], f"null or {4 * ch}")
    if not isinstance(v["norm_eps"], (int, float)) or abs(v["norm_eps"] - NORM_EPS) > 1e-12:
        raise _unsupported(path, "norm_eps", v["norm_eps"], f"{NORM_EPS:g}")
    size = v["sample_size"]
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if size is not None and not _positive_int(size):
        raise _unsupported(path, "sample_size", size, "a square size")
    if size is not None:
        check_resolution(size, resolution, path)
    resolution = size or resolution or DEFAULT_RESOLUTION
    try:
        return UNetConfig(
            in_channels=v["in_channels"],
            out_channels=v["out_channels"],
            ch=ch,
            ch_mult=tuple(c // ch for c in channels),
            num_res_blocks=v["layers_per_block"],
            attn_resolutions=tuple(resolution // 2 ** i for i, a in enumerate(attention) if a),
            dropout=float(v["dropout"]),
            resolution=resolution,
            num_groups=v["norm_num_groups"],
        )
    except (TypeError, ValueError) as error:
        raise UserFacingError(f"{path}: unsupported UNet2DModel configuration ({error})") from None


def diffusers_config(config: UNetConfig) -> dict[str, Any]:
    """The ``UNet2DModel`` config.json that reproduces ``config`` at k = 0."""
    if config.ch_mult[0] != 1:
        raise UserFacingError(
            f"diffusers' UNet2DModel needs ch_mult[0] = 1 (its conv_in has the channels of "
            f"level 0); this model has ch_mult {list(config.ch_mult)}"
        )
    attention = [config.resolution // 2 ** i in config.attn_resolutions for i in range(config.num_levels)]
    return {
        "_class_name": "UNet2DModel",
        "sample_size": config.resolution,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "freq_shift": 1,
        "flip_sin_to_cos": False,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "block_out_channels": [config.ch * m for m in config.ch_mult],
        "layers_per_block": config.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 0,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": config.dropout,
        "act_fn": "silu",
        "attention_head_dim": None,
        "norm_num_groups": config.num_groups,
        "attn_norm_num_groups": None,
        "norm_eps": NORM_EPS,
        "resnet_time_scale_shift": "default",
        "add_attention": True,
        "class_embed_type": None,
        "num_class_embeds": None,
    }


def diffusion_from_scheduler(values: dict[str, Any], path: Path) -> DiffusionConfig:
    """Check a diffusers scheduler config (linear betas, fixed_large, ε-prediction) and translate it."""
    checks = (("beta_schedule", "linear"), ("variance_type", "fixed_large"),
              ("prediction_type", "epsilon"), ("trained_betas", None))
    for key, supported in checks:
        value = values.get(key, supported)
        if value != supported:
            raise UserFacingError(f"{path}: {key} = {json.dumps(value)} is not supported "
                                  f"(adaskip supports {json.dumps(supported)})")
    try:
        return DiffusionConfig(num_timesteps=int(values.get("num_train_timesteps", 1000)),
                               beta_start=float(values.get("beta_start", 1e-4)),
                               beta_end=float(values.get("beta_end", 0.02)))
    except (TypeError, ValueError) as error:
        raise UserFacingError(f"{path}: unsupported scheduler configuration ({error})") from None


def scheduler_config(diffusion: DiffusionConfig) -> dict[str, Any]:
    """A ``DDPMScheduler`` config.json matching ``diffusion`` (the DDPM CIFAR-10 sampler)."""
    return {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": diffusion.num_timesteps,
        "beta_start": diffusion.beta_start,
        "beta_end": diffusion.beta_end,
        "beta_schedule": "linear",
        "trained_betas": None,
        "variance_type": "fixed_large",
        "clip_sample": True,
        "prediction_type": "epsilon",
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserFacingError(f"{path}: not a readable JSON file ({brief(error)})") from None
    if not isinstance(values, dict):
        raise UserFacingError(f"{path}: expected a JSON object, found {type(values).__name__}")
    return values


def _diffusers_folder(path: Path) -> Path:
    """The folder holding the UNet's config.json: ``path`` itself or a pipeline's ``unet/``."""
    for folder in (path, path / "unet"):
        if (folder / DIFFUSERS_CONFIG).is_file():
            return folder
    raise UserFacingError(f"{path}: a folder without {DIFFUSERS_CONFIG} (expected a diffusers "
                          "UNet2DModel folder)")

def read_diffusers(path: Path, resolution: int | None) -> ForeignCheckpoint:
    """The weights (in our names, read on demand), config and scheduler settings of a
    UNet2DModel folder; the stored names are checked against the config's model first."""
    folder = _diffusers_folder(path)
    config = config_from_diffusers(_read_json(folder / DIFFUSERS_CONFIG), folder / DIFFUSERS_CONFIG,
                                   resolution)
    diffusion = DiffusionConfig()
    for scheduler in (folder / SCHEDULER_CONFIG, folder.parent / "scheduler" / SCHEDULER_CONFIG):
        if scheduler.is_file():
            diffusion = diffusion_from_scheduler(_read_json(scheduler), scheduler)
            break
    weights_file, shapes, read = _stored_weights(folder)
    sources = diffusers_sources(shapes, config, weights_file)

    def read_ours() -> dict[str, torch.Tensor]:
        stored = read()
        return {name: _our_tensor(name, stored[source]) for name, source in sources.items()}

    weights = StoredWeights({name: _our_shape(name, shapes[source]) for name, source in sources.items()},
                            read_ours, weights_file)
    return ForeignCheckpoint(weights, config, diffusion, None, "diffusers UNet2DModel")


def _stored_weights(folder: Path) -> tuple[Path, Shapes, Callable[[], dict[str, torch.Tensor]]]:
    """(the weights file, its weights' shapes, a way to read them) in diffusers' names; the
    shapes of a ``.safetensors`` come from its header, a pickled ``.bin`` is read whole."""
    weights_file = folder / DIFFUSERS_WEIGHTS
    if weights_file.is_file():
        _, shapes = safetensors_header(weights_file)
        return weights_file, shapes, lambda: read_safetensors(weights_file)
    weights_file = folder / DIFFUSERS_PICKLED_WEIGHTS
    if weights_file.is_file():
        tensors = tensor_dict(torch_load(weights_file), weights_file, "the file")
        return weights_file, {name: tuple(value.shape) for name, value in tensors.items()}, lambda: tensors
    raise UserFacingError(f"{folder}: no {DIFFUSERS_WEIGHTS} (or {DIFFUSERS_PICKLED_WEIGHTS}) "
                          "beside config.json")


def save_diffusers(model: AdaptiveUNet, path: str | os.PathLike[str]) -> None:
    """Write a diffusers ``UNet2DModel`` folder for k = 0 use, atomically; bridges are dropped.

    The folder holds config.json, diffusion_pytorch_model.safetensors and a DDPMScheduler
    scheduler_config.json built from ``model.metadata["diffusion"]`` (default: DDPM's).
    """
    config = diffusers_config(model.config)
    diffusion = DiffusionConfig.from_dict(model.metadata.get("diffusion", DiffusionConfig().to_dict()))
    tensors = to_diffusers_state_dict(model)
    with atomic_directory(path) as tmp:
        (tmp / DIFFUSERS_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / SCHEDULER_CONFIG).write_text(json.dumps(scheduler_config(diffusion), indent=2) + "\n",
                                            encoding="utf-8")
        save_file(tensors, str(tmp / DIFFUSERS_WEIGHTS), metadata={"format": "pt"})
