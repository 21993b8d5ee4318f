"""The fused ops, one function each: GroupNorm+SiLU, GroupNorm+SiLU+conv3×3, bicubic bridge.

Each call runs on the backend ``backend.choose`` picks for the op and the tensors' device
(``native`` C++/CUDA extension, ``triton``, or the plain-PyTorch ``reference`` that defines it).
A bad argument (a shape, a group count, a device) raises ValueError on every backend.
"""
from __future__ import annotations

import torch

from . import reference
from .backend import BACKENDS, OPS, available, choose, forced_backend, set_backend
from .native import build_info, cpu_kernels

__all__ = ["BACKENDS", "OPS", "available", "bicubic_bridge", "build_info", "choose",
           "cpu_kernels", "forced_backend", "group_norm_silu", "group_norm_silu_conv3x3",
           "set_backend"]


def group_norm_silu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    silu: bool = True,
) -> torch.Tensor:
    """``silu(group_norm(x))``, or the GroupNorm alone with ``silu=False``. Differentiable.

    x: (N, C, H, W), NCHW or channels_last; weight, bias: (C,). Returns x's shape, dtype, layout.
    """
    backend = choose("group_norm_silu", x.device.type)
    if backend == "native":
        return torch.ops.adaskip.group_norm_silu(x, weight, bias, groups, eps, silu)
    if backend == "triton":
        return torch.ops.adaskip.group_norm_silu_triton(x, weight, bias, groups, eps, silu)
    return reference.group_norm_silu(x, weight, bias, groups, eps, silu)


def group_norm_silu_conv3x3(
    x: torch.Tensor,
    gn_weight: torch.Tensor,
    gn_bias: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    groups: int,
    eps: float,
    add: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv3x3(silu(group_norm(x))) + conv_bias + add[:, :, None, None] + residual``. Inference only.

    x: (N, C_in, H, W); conv_weight: (C_out, C_in, 3, 3); add: (N, C_out); residual:
    (N, C_out, H, W). Returns (N, C_out, H, W) in x's dtype and layout.
    """
    backend = choose("group_norm_silu_conv3x3", x.device.type)
    arguments = (x, gn_weight, gn_bias, conv_weight, conv_bias, groups, eps, add, residual)
    if backend == "native":
        return torch.ops.adaskip.group_norm_silu_conv3x3(*arguments)
    if backend == "triton":
        return torch.ops.adaskip.group_norm_silu_conv3x3_triton(*arguments)
    return reference.group_norm_silu_conv3x3(*arguments)


def bicubic_bridge(
    x: torch.Tensor,
    out_h: int,
    out_w: int,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
) -> torch.Tensor:
    """``conv1x1(interpolate(x, (out_h, out_w), bicubic))``. Differentiable.

    x: (N, C_in, H, W); proj_weight: (C_out, C_in, 1, 1); proj_bias: (C_out,).
    Returns (N, C_out, out_h, out_w) in x's dtype and layout.
    """
    backend = choose("bicubic_bridge", x.device.type)
    if backend == "native":
        return torch.ops.adaskip.bicubic_bridge(x, out_h, out_w, proj_weight, proj_bias)
    if backend == "triton":
        return torch.ops.adaskip.bicubic_bridge_triton(x, out_h, out_w, proj_weight, proj_bias)
    return reference.bicubic_bridge(x, out_h, out_w, proj_weight, proj_bias)
