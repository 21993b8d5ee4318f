"""The compiled extension ``adaskip_ext._C``: its ``torch.ops.adaskip`` ops and their fake (meta)
kernels for ``torch.compile`` (their autograd is registered in C++, csrc/autograd.cpp).

Importing this module never fails: without a built extension ``LOAD_ERROR`` says why and every
``has_kernel`` is False.
"""
from __future__ import annotations

import importlib
import json
from importlib import resources

import torch

from ..tensor_layout import memory_format_of

try:
    importlib.import_module("adaskip_ext._C")  # loading the library registers the ops

    LOAD_ERROR: str | None = None
except ImportError as error:
    LOAD_ERROR = str(error)


def has_kernel(op: str, device_type: str) -> bool:
    """True when the extension registered a kernel for ``adaskip::op`` on this device type."""
    if LOAD_ERROR is not None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"adaskip::{op}", key)


def cpu_kernels() -> str | None:
    """Which clone of the C++ CPU kernels runs on this CPU, as GCC's load-time resolver picks it:
    "x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2+FMA)" or "baseline x86-64"; None without the extension."""
    if LOAD_ERROR is not None:
        return None
    return importlib.import_module("adaskip_ext._C").cpu_isa()


def build_info() -> dict:
    """What setup.py built: torch version, whether CUDA kernels were compiled, the arch list."""
    try:
        return json.loads(resources.files("adaskip_ext").joinpath("_build_info.json").read_text())
    except FileNotFoundError:
        return {}


def _register() -> None:
    @torch.library.register_fake("adaskip::group_norm_silu")
    def _(x, weight, bias, groups, eps, silu):
        return torch.empty_like(x, memory_format=memory_format_of(x))

    @torch.library.register_fake("adaskip::group_norm_silu_backward")
    def _(grad_out, x, weight, bias, groups, eps, silu):
        return (torch.empty_like(x, memory_format=memory_format_of(x)), torch.empty_like(weight),
                torch.empty_like(bias))

    @torch.library.register_fake("adaskip::group_norm_silu_conv3x3")
    def _(x, gn_weight, gn_bias, conv_weight, conv_bias, groups, eps, add, residual):
        shape = (x.shape[0], conv_weight.shape[0], x.shape[2], x.shape[3])
        return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))

    @torch.library.register_fake("adaskip::bicubic_resize")
    def _(x, out_h, out_w):
        shape = (x.shape[0], x.shape[1], out_h, out_w)
        return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))

    @torch.library.register_fake("adaskip::bicubic_resize_backward")
    def _(grad_out, in_h, in_w):
        shape = (grad_out.shape[0], grad_out.shape[1], in_h, in_w)
        return grad_out.new_empty(shape).contiguous(memory_format=memory_format_of(grad_out))

    @torch.library.register_fake("adaskip::bicubic_bridge")
    def _(x, out_h, out_w, proj_weight, proj_bias):
        shape = (x.shape[0], proj_weight.shape[0], out_h, out_w)
        return x.new_empty(shape).contiguous(memory_format=memory_format_of(x))

    @torch.library.register_fake("adaskip::bicubic_bridge_backward")
    def _(grad_out, x, proj_weight):
        return (torch.empty_like(x, memory_format=memory_format_of(x)),
                torch.empty_like(proj_weight), proj_weight.new_empty(proj_weight.shape[0]))


if LOAD_ERROR is None:
    _register()
