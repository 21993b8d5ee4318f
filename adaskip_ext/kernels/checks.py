"""Argument checks of the fused ops for the Triton kernels and the PyTorch reference.

The Python twin of csrc/checks.h: the same bad call raises ValueError on every backend, with the
message the C++ check gives (up to how a dtype is written). Plain PyTorch, no Triton, so that
``ops.reference`` imports it too (it lives here because kernels/ may import nothing from ops/).
"""
from __future__ import annotations

import torch


def _shape(t: torch.Tensor) -> list[int]:
    """t's shape written as the C++ checks write it: [2, 3]."""
    return list(t.shape)


def check_image(x: torch.Tensor, name: str = "x") -> None:
    """x is a 4-D (N, C, H, W) floating-point tensor."""
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got {x.dim()}-D")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")


def check_on_device_of(x: torch.Tensor, names: str, *tensors: torch.Tensor | None) -> None:
    """Every given tensor lives on x's device."""
    if any(t is not None and t.device != x.device for t in tensors):
        raise ValueError(f"{names} must be on x's device ({x.device})")


def check_group_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int
) -> None:
    """x: (N, C, H, W) with groups dividing C; weight, bias: (C,) on x's device."""
    check_image(x)
    channels = x.size(1)
    if groups <= 0 or channels % groups != 0:
        raise ValueError(f"groups ({groups}) must divide the channel count ({channels})")
    if weight.shape != (channels,):
        raise ValueError(f"weight must have shape ({channels}), got {_shape(weight)}")
    if bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels}), got {_shape(bias)}")
    check_on_device_of(x, "weight and bias", weight, bias)


def check_conv3x3(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    add: torch.Tensor | None,
    residual: torch.Tensor | None,
) -> None:
    """The conv part of group_norm_silu_conv3x3 (x itself is checked by ``check_group_norm``)."""
    batch, c_in, height, width = x.shape
    if conv_weight.dim() != 4 or conv_weight.shape[1:] != (c_in, 3, 3):
        raise ValueError(f"conv_weight must have shape (C_out, {c_in}, 3, 3), got "
                         f"{_shape(conv_weight)}")
    c_out = conv_weight.size(0)
    if conv_bias.shape != (c_out,):
        raise ValueError(f"conv_bias must have shape ({c_out}), got {_shape(conv_bias)}")
    if add is not None and add.shape != (batch, c_out):
        raise ValueError(f"add must have shape ({batch}, {c_out}), got {_shape(add)}")
    if residual is not None and residual.shape != (batch, c_out, height, width):
        raise ValueError(f"residual must have shape ({batch}, {c_out}, {height}, {width}), got "
                         f"{_shape(residual)}")
    check_on_device_of(x, "conv_weight, conv_bias, add and residual", conv_weight, conv_bias, add,
                       residual)


def check_resize(x: torch.Tensor, out_h: int, out_w: int) -> None:
    """x: (N, C, H, W) with a non-empty image; a positive output size."""
    check_image(x)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"out_h and out_w must be positive, got {out_h}x{out_w}")
    if x.size(2) == 0 or x.size(3) == 0:
        raise ValueError(f"x must have a non-empty image, got {_shape(x)}")


def check_bridge(
    x: torch.Tensor, out_h: int, out_w: int, proj_weight: torch.Tensor, proj_bias: torch.Tensor
) -> None:
    """bicubic_bridge's arguments: ``check_resize`` and a (C_out, C_in, 1, 1) projection."""
    check_resize(x, out_h, out_w)
    if proj_weight.dim() != 4 or proj_weight.shape[1:] != (x.size(1), 1, 1):
        raise ValueError(f"proj_weight must have shape (C_out, {x.size(1)}, 1, 1), got "
                         f"{_shape(proj_weight)}")
    c_out = proj_weight.size(0)
    if proj_bias.shape != (c_out,):
        raise ValueError(f"proj_bias must have shape ({c_out}), got {_shape(proj_bias)}")
    check_on_device_of(x, "proj_weight and proj_bias", proj_weight, proj_bias)
