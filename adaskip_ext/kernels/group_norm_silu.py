"""Fused GroupNorm (+ SiLU) in Triton, and the per-(n, c) affine tables a conv prologue needs.

One program per (n, g). Statistics are accumulated in fp32 chunk by chunk: each BLOCK chunk's
mean and centred sum of squares are exact in registers, and chunks are merged with Chan et al.'s
parallel-variance update, which avoids the cancellation of E[x²] − E[x]². As in PyTorch, the
normalisation is applied as y = a*x + b with a = rstd*gamma[c] and b = beta[c] − a*mean.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..tensor_layout import memory_format_of
from .checks import check_group_norm


@triton.jit
def _group_offsets(e, C_G, HW, sC, sP, CHANNELS_LAST: tl.constexpr):
    """Memory offsets and channels (within the group) of the group's flat element indices e.

    NCHW walks channel by channel (pixels contiguous); channels_last walks pixel by pixel
    (the group's C_G channels contiguous), so consecutive e stay as close in memory as possible.
    """
    if CHANNELS_LAST:
        c = e % C_G
        p = e // C_G
    else:
        c = e // HW
        p = e % HW
    return c * sC + p * sP, c


@triton.jit
def _group_mean_rstd(x_ptr, base, C_G, HW, sC, sP, eps, CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr):
    """fp32 mean and 1/sqrt(biased var + eps) of the C_G*HW elements of one (n, g) group."""
    count = C_G * HW
    n = tl.zeros((), tl.float32)
    mean = tl.zeros((), tl.float32)
    m2 = tl.zeros((), tl.float32)
    for start in range(0, count, BLOCK):
        e = start + tl.arange(0, BLOCK)
        mask = e < count
        offs, _ = _group_offsets(e, C_G, HW, sC, sP, CHANNELS_LAST)
        v = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        n_b = tl.minimum(count - start, BLOCK).to(tl.float32)
        mean_b = tl.sum(v, axis=0) / n_b
        d = tl.where(mask, v - mean_b, 0.0)
        m2_b = tl.sum(d * d, axis=0)
        # Chan et al.: merge (n, mean, m2) with the chunk's (n_b, mean_b, m2_b).
        n_new = n + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / n_new)
        m2 = m2 + m2_b + delta * delta * (n * n_b / n_new)
        n = n_new
    rstd = tl.rsqrt(m2 / n + eps)
    return mean, rstd


@triton.jit
def _group_norm_silu_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    HW, C_G, G,
    sxN, sxC, sxP, syN, syC, syP,
    eps,
    SILU: tl.constexpr, CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr,
):
    """Grid (N*G,): statistics of group (n, g), then y = silu(a*(x - mean) + beta) over the same
    elements (centring first keeps precision when |mean| >> std)."""
    pid = tl.program_id(0)
    n_idx = pid // G
    g = pid % G
    c0 = g * C_G
    x_base = n_idx * sxN + c0 * sxC
    y_base = n_idx * syN + c0 * syC
    mean, rstd = _group_mean_rstd(x_ptr, x_base, C_G, HW, sxC, sxP, eps, CHANNELS_LAST, BLOCK)
    count = C_G * HW
    for start in range(0, count, BLOCK):
        e = start + tl.arange(0, BLOCK)
        mask = e < count
        x_offs, c = _group_offsets(e, C_G, HW, sxC, sxP, CHANNELS_LAST)
        y_offs, _ = _group_offsets(e, C_G, HW, syC, syP, CHANNELS_LAST)
        v = tl.load(x_ptr + x_base + x_offs, mask=mask, other=0.0).to(tl.float32)
        gamma = tl.load(w_ptr + c0 + c, mask=mask, other=0.0).to(tl.float32)
        beta = tl.load(b_ptr + c0 + c, mask=mask, other=0.0).to(tl.float32)
        a = rstd * gamma
        y = a * (v - mean) + beta
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + y_base + y_offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _group_norm_affine_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr,
    C, HW, C_G, G,
    sxN, sxC, sxP,
    eps,
    CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Grid (N*G,): statistics of group (n, g), written as scale[n, c] = a, shift[n, c] = b."""
    pid = tl.program_id(0)
    n_idx = pid // G
    g = pid % G
    c0 = g * C_G
    mean, rstd = _group_mean_rstd(x_ptr, n_idx * sxN + c0 * sxC, C_G, HW, sxC, sxP, eps,
                                  CHANNELS_LAST, BLOCK)
    c = c0 + tl.arange(0, BLOCK_C)
    mask = c < c0 + C_G
    gamma = tl.load(w_ptr + c, mask=mask, other=0.0).to(tl.float32)
    beta = tl.load(b_ptr + c, mask=mask, other=0.0).to(tl.float32)
    a = rstd * gamma
    tl.store(scale_ptr + n_idx * C + c, a, mask=mask)
    tl.store(shift_ptr + n_idx * C + c, beta - a * mean, mask=mask)


def _standard_layout(t: torch.Tensor) -> torch.Tensor:
    """t itself if NCHW-contiguous or channels_last, else an NCHW-contiguous copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


def _is_channels_last(t: torch.Tensor) -> bool:
    return memory_format_of(t) == torch.channels_last


def _strides_ncp(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, channel, pixel) strides of a standard-layout (N, C, H, W) tensor.

    In both layouts pixel p = h*W + w sits at p * stride(3); when W == 1 stride(3) is arbitrary
    (a size-1 dim), so the pixel stride is stride(2).
    """
    pixel = t.stride(3) if t.size(3) > 1 else t.stride(2)
    return t.stride(0), t.stride(1), pixel


def _launch_config(group_numel: int) -> tuple[int, int]:
    """(BLOCK, num_warps): one chunk covers a small group; large groups loop over 2048-chunks."""
    block = min(max(triton.next_power_of_2(group_numel), 128), 2048)
    return block, 4 if block <= 1024 else 8


def group_norm_silu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    silu: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``silu(group_norm(x))`` (or the GroupNorm alone when ``silu`` is False).

    x: (N, C, H, W), NCHW or channels_last (other strides are copied to NCHW);
    weight, bias: (C,). Returns (N, C, H, W) in x's dtype and memory format, or writes ``out``
    (same shape and dtype, NCHW-contiguous or channels_last) and returns it.
    """
    check_group_norm(x, weight, bias, groups)
    x = _standard_layout(x)
    if out is None:
        out = torch.empty_like(x, memory_format=memory_format_of(x))
    elif out.shape != x.shape or out.dtype != x.dtype or _standard_layout(out) is not out:
        raise ValueError("out must match x's shape and dtype and be NCHW-contiguous or channels_last")
    batch, channels, height, width = x.shape
    if x.numel() == 0:
        return out
    c_g, hw = channels // groups, height * width
    block, num_warps = _launch_config(c_g * hw)
    # The flat walk order follows x; out's own strides are used, whatever its layout.
    _group_norm_silu_kernel[(batch * groups,)](
        x, weight.contiguous(), bias.contiguous(), out,
        hw, c_g, groups,
        *_strides_ncp(x), *_strides_ncp(out),
        eps,
        SILU=silu, CHANNELS_LAST=_is_channels_last(x), BLOCK=block, num_warps=num_warps,
    )
    return out


def group_norm_affine(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(n, c) fp32 tables (scale, shift), each (N, C), with group_norm(x) = scale*x + shift.

    x: (N, C, H, W), NCHW or channels_last (other strides are copied); weight, bias: (C,).
    scale = rstd[n, g]*weight[c], shift = bias[c] − scale*mean[n, g], as PyTorch computes them.
    """
    check_group_norm(x, weight, bias, groups)
    x = _standard_layout(x)
    batch, channels, height, width = x.shape
    scale = torch.empty((batch, channels), dtype=torch.float32, device=x.device)
    shift = torch.empty((batch, channels), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return scale, shift
    c_g, hw = channels // groups, height * width
    block, num_warps = _launch_config(c_g * hw)
    _group_norm_affine_kernel[(batch * groups,)](
        x, weight.contiguous(), bias.contiguous(), scale, shift,
        channels, hw, c_g, groups,
        *_strides_ncp(x),
        eps,
        CHANNELS_LAST=_is_channels_last(x), BLOCK=block, BLOCK_C=triton.next_power_of_2(c_g),
        num_warps=num_warps,
    )
    return scale, shift
