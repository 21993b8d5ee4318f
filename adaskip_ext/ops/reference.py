"""The meaning of every fused op, in plain PyTorch. Every backend is tested against these.

Bad arguments raise ValueError, as on every other backend (the checks are the Triton kernels').
Outputs keep the input's memory format (NCHW or channels_last) and dtype; the arithmetic runs
in float32 (float64 for float64 inputs) and is cast once at the end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kernels.checks import check_bridge, check_conv3x3, check_group_norm, check_resize
from ..tensor_layout import memory_format_of


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, float32 for everything else (fp16/bf16 accumulate in fp32)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y cast to x's dtype and laid out in x's memory format."""
    return y.to(x.dtype).contiguous(memory_format=memory_format_of(x))


def group_norm_silu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float, silu: bool
) -> torch.Tensor:
    """``silu(group_norm(x))`` (or the GroupNorm alone). x: (N, C, H, W); weight, bias: (C,)."""
    check_group_norm(x, weight, bias, groups)
    dtype = compute_dtype(x)
    y = F.group_norm(x.to(dtype), groups, weight.to(dtype), bias.to(dtype), eps)
    return _like(F.silu(y) if silu else y, x)


def group_norm_silu_conv3x3(
    x: torch.Tensor,
    gn_weight: torch.Tensor,
    gn_bias: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    groups: int,
    eps: float,
    add: torch.Tensor | None,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """``conv3x3(silu(group_norm(x))) + conv_bias + add[:, :, None, None] + residual``, padding 1.

    x: (N, C_in, H, W); conv_weight: (C_out, C_in, 3, 3); conv_bias: (C_out,);
    add: (N, C_out) or None; residual: (N, C_out, H, W) or None. Returns (N, C_out, H, W).
    """
    check_group_norm(x, gn_weight, gn_bias, groups)
    check_conv3x3(x, conv_weight, conv_bias, add, residual)
    dtype = compute_dtype(x)
    h = F.group_norm(x.to(dtype), groups, gn_weight.to(dtype), gn_bias.to(dtype), eps)
    y = F.conv2d(F.silu(h), conv_weight.to(dtype), conv_bias.to(dtype), padding=1)
    if add is not None:
        y = y + add.to(dtype)[:, :, None, None]
    if residual is not None:
        y = y + residual.to(dtype)
    return _like(y, x)


def bicubic_bridge(
    x: torch.Tensor, out_h: int, out_w: int, proj_weight: torch.Tensor, proj_bias: torch.Tensor
) -> torch.Tensor:
    """``conv1x1(interpolate(x, (out_h, out_w), bicubic, align_corners=False))``.

    x: (N, C_in, H, W); proj_weight: (C_out, C_in, 1, 1); proj_bias: (C_out,).
    Returns (N, C_out, out_h, out_w).
    """
    check_bridge(x, out_h, out_w, proj_weight, proj_bias)
    dtype = compute_dtype(x)
    h = F.interpolate(x.to(dtype), size=(out_h, out_w), mode="bicubic", align_corners=False)
    return _like(F.conv2d(h, proj_weight.to(dtype), proj_bias.to(dtype)), x)


def bicubic_resize(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``interpolate(x, (out_h, out_w), bicubic, align_corners=False)``: A = −0.75, clamped taps.

    x: (N, C, H, W) -> (N, C, out_h, out_w).
    """
    check_resize(x, out_h, out_w)
    dtype = compute_dtype(x)
    h = F.interpolate(x.to(dtype), size=(out_h, out_w), mode="bicubic", align_corners=False)
    return _like(h, x)
