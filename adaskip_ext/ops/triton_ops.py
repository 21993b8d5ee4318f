"""The Triton kernels (``adaskip_ext.kernels``) as ops of their own, ``adaskip::<name>_triton``.

An op name holds one kernel per device, and the CUDA slot of ``adaskip::<name>`` belongs to the
C++ extension, so the Triton versions are separate ops. Triton is imported on first call only.
Their backward (where the op has one) runs the reference's autograd.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from . import reference
from ..tensor_layout import memory_format_of


def triton_usable(device_type: str) -> bool:
    """Triton runs CUDA tensors, and CPU tensors under ``TRITON_INTERPRET=1`` (tests)."""
    if importlib.util.find_spec("triton") is None:
        return False
    if device_type == "cuda":
        return True
    return device_type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


@torch.library.custom_op("adaskip::group_norm_silu_triton", mutates_args=())
def group_norm_silu_triton(
    x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, silu: bool
) -> Tensor:
    """``reference.group_norm_silu`` by the Triton kernel."""
    from adaskip_ext.kernels import group_norm_silu

    return group_norm_silu.group_norm_silu(x, weight, bias, groups, eps, silu)


@group_norm_silu_triton.register_fake
def _(x, weight, bias, groups, eps, silu):
    return torch.empty_like(x, memory_format=memory_format_of(x))


@torch.library.custom_op("adaskip::group_norm_silu_conv3x3_triton", mutates_args=())
def group_norm_silu_conv3x3_triton(
    x: Tensor,
    gn_weight: Tensor,
    gn_bias: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor,
    groups: int,
    eps: float,
    add: Tensor | None,
    residual: Tensor | None,
) -> Tensor:
    """``reference.group_norm_silu_conv3x3`` by the implicit-GEMM Triton kernel (inference only)."""
    from adaskip_ext.kernels import conv3x3

    return conv3x3.group_norm_silu_conv3x3(x, gn_weight, gn_bias, conv_weight, conv_bias,
                                           groups, eps, add, residual)


@group_norm_silu_conv3x3_triton.register_fake
def _(x, gn_weight, gn_bias, conv_weight, conv_bias, groups, eps, add, residual):
    shape = (x.shape[0], conv_weight.shape[0], x.shape[2], x.shape[3])
    return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))


@torch.library.custom_op("adaskip::bicubic_bridge_triton", mutates_args=())
def bicubic_bridge_triton(
    x: Tensor, out_h: int, out_w: int, proj_weight: Tensor, proj_bias: Tensor
) -> Tensor:
    """``reference.bicubic_bridge`` by one fused Triton kernel (resize in the GEMM's A-load)."""
    from adaskip_ext.kernels import bicubic_bridge

    return bicubic_bridge.bicubic_bridge(x, out_h, out_w, proj_weight, proj_bias)


@bicubic_bridge_triton.register_fake
def _(x, out_h, out_w, proj_weight, proj_bias):
    shape = (x.shape[0], proj_weight.shape[0], out_h, out_w)
    return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*[a for a in inputs if isinstance(a, Tensor)])
    ctx.arguments = [a for a in inputs if not isinstance(a, Tensor)]


def _reference_vjp(function, tensors: tuple[Tensor, ...], arguments: list, grad: Tensor):
    """Gradients of ``function(*tensors, *arguments)`` with respect to ``tensors``."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in tensors]
        return torch.autograd.grad(function(*leaves, *arguments), leaves, grad)


def _group_norm_silu_backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    grads = _reference_vjp(
        lambda x_, w_, b_, *args: reference.group_norm_silu(x_, w_, b_, *args),
        (x, weight, bias), ctx.arguments, grad)
    return (*grads, None, None, None)


def _bicubic_bridge_backward(ctx, grad):
    x, proj_weight, proj_bias = ctx.saved_tensors
    out_h, out_w = ctx.arguments
    grad_x, grad_weight, grad_bias = _reference_vjp(
        lambda x_, w_, b_: reference.bicubic_bridge(x_, out_h, out_w, w_, b_),
        (x, proj_weight, proj_bias), [], grad)
    return grad_x, None, None, grad_weight, grad_bias


group_norm_silu_triton.register_autograd(_group_norm_silu_backward, setup_context=_save_inputs)
bicubic_bridge_triton.register_autograd(_bicubic_bridge_backward, setup_context=_save_inputs)
