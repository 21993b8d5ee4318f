"""Bicubic resize fused with a 1x1 projection, in Triton: conv1x1(interpolate(x, bicubic)).

A GEMM over M = N*out_h*out_w output pixels x C_out with K = C_in. Its A tile is the bicubic
sample of x computed on the fly from 16 clamped taps with PyTorch's exact formulas
(align_corners=False, A = -0.75, source index not clamped, interpolation along x for each of the
4 tap rows, then along y), multiplied with W^T [C_in, C_out]; the bias is added in the epilogue.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..tensor_layout import memory_format_of
from .checks import check_bridge
from .tiles import gemm_tile_config, pixel_channel_tile

_A = tl.constexpr(-0.75)  # ATen's bicubic (Keys) coefficient, non-antialiased path


@triton.jit
def _cubic_coefficients(t):
    """Keys cubic weights of the 4 taps at fractional offset t, in ATen's evaluation order."""
    x0 = t + 1.0
    c0 = ((_A * x0 - 5.0 * _A) * x0 + 8.0 * _A) * x0 - 4.0 * _A
    c1 = ((_A + 2.0) * t - (_A + 3.0)) * t * t + 1.0
    u = 1.0 - t
    c2 = ((_A + 2.0) * u - (_A + 3.0)) * u * u + 1.0
    x3 = u + 1.0
    c3 = ((_A * x3 - 5.0 * _A) * x3 + 8.0 * _A) * x3 - 4.0 * _A
    return c0, c1, c2, c3


@triton.jit
def _source_taps(dst, scale, size):
    """Clamped tap indices and cubic weights for destination indices dst along one axis."""
    src = scale * (dst.to(tl.float32) + 0.5) - 0.5  # not clamped for cubic
    fl = tl.floor(src)
    c0, c1, c2, c3 = _cubic_coefficients(src - fl)
    i = fl.to(tl.int32)
    i0 = tl.minimum(tl.maximum(i - 1, 0), size - 1)
    i1 = tl.minimum(tl.maximum(i, 0), size - 1)
    i2 = tl.minimum(tl.maximum(i + 1, 0), size - 1)
    i3 = tl.minimum(tl.maximum(i + 2, 0), size - 1)
    return i0, i1, i2, i3, c0, c1, c2, c3


@triton.jit
def _cubic_row(row_ptrs, x0, x1, x2, x3, w0, w1, w2, w3, mask):
    """Interpolate along x one tap row: row_ptrs [BLOCK_M, BLOCK_K], x offsets/weights [BLOCK_M, 1]."""
    v0 = tl.load(row_ptrs + x0, mask=mask, other=0.0).to(tl.float32)
    v1 = tl.load(row_ptrs + x1, mask=mask, other=0.0).to(tl.float32)
    v2 = tl.load(row_ptrs + x2, mask=mask, other=0.0).to(tl.float32)
    v3 = tl.load(row_ptrs + x3, mask=mask, other=0.0).to(tl.float32)
    return v0 * w0 + v1 * w1 + v2 * w2 + v3 * w3


@triton.jit
def _bicubic_bridge_kernel(
    x_ptr, w_ptr, bias_ptr, y_ptr,
    N, C_in, H_in, W_in, H_out, W_out, C_out,
    scale_h, scale_w,
    sxN, sxC, sxH, sxW,
    syN, syC, syH, syW,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Grid (cdiv(N*H_out*W_out, BLOCK_M), cdiv(C_out, BLOCK_N)): one [pixels, channels] tile."""
    img, oy, ox, offs_n, row_mask, col_mask = pixel_channel_tile(N, H_out, W_out, C_out, BLOCK_M,
                                                                 BLOCK_N)

    # Taps and weights depend only on the output pixel: computed once, reused for every channel.
    y0, y1, y2, y3, wy0, wy1, wy2, wy3 = _source_taps(oy, scale_h, H_in)
    x0, x1, x2, x3, wx0, wx1, wx2, wx3 = _source_taps(ox, scale_w, W_in)
    x0 = (x0 * sxW)[:, None]
    x1 = (x1 * sxW)[:, None]
    x2 = (x2 * sxW)[:, None]
    x3 = (x3 * sxW)[:, None]
    wx0 = wx0[:, None]
    wx1 = wx1[:, None]
    wx2 = wx2[:, None]
    wx3 = wx3[:, None]
    img_offs = (img * sxN)[:, None]

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for c_start in range(0, C_in, BLOCK_K):
        ci = c_start + tl.arange(0, BLOCK_K)
        c_mask = ci < C_in
        mask = row_mask[:, None] & c_mask[None, :]
        plane = x_ptr + img_offs + (ci * sxC)[None, :]
        r0 = _cubic_row(plane + (y0 * sxH)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, mask)
        r1 = _cubic_row(plane + (y1 * sxH)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, mask)
        r2 = _cubic_row(plane + (y2 * sxH)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, mask)
        r3 = _cubic_row(plane + (y3 * sxH)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, mask)
        a = r0 * wy0[:, None] + r1 * wy1[:, None] + r2 * wy2[:, None] + r3 * wy3[:, None]
        w = tl.load(w_ptr + ci[:, None] * C_out + offs_n[None, :], mask=c_mask[:, None] & col_mask[None, :], other=0.0)
        # "ieee" keeps fp32 inputs out of TF32; it is ignored for fp16/bf16 inputs.
        acc = tl.dot(a.to(w.dtype), w, acc, input_precision="ieee")

    acc += tl.load(bias_ptr + offs_n, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    y_offs = (img * syN + oy * syH + ox * syW)[:, None] + (offs_n * syC)[None, :]
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=row_mask[:, None] & col_mask[None, :])


def _fp32_ratio(numerator: int, denominator: int) -> float:
    """numerator/denominator rounded once to float32, as ATen computes the bicubic scale."""
    ratio = torch.tensor(numerator, dtype=torch.float32) / torch.tensor(denominator, dtype=torch.float32)
    return ratio.item()


def bicubic_bridge(
    x: torch.Tensor,
    out_h: int,
    out_w: int,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv1x1(interpolate(x, (out_h, out_w), mode="bicubic", align_corners=False))``.

    x: (N, C_in, H, W), NCHW or channels_last; proj_weight: (C_out, C_in, 1, 1);
    proj_bias: (C_out,). Returns (N, C_out, out_h, out_w) in x's dtype and memory format, or
    writes ``out`` (that shape and dtype, any strides) and returns it.
    """
    check_bridge(x, out_h, out_w, proj_weight, proj_bias)
    batch, c_in, height, width = x.shape
    c_out = proj_weight.size(0)
    y_shape = (batch, c_out, out_h, out_w)
    if out is None:
        out = torch.empty(y_shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    elif out.shape != y_shape or out.dtype != x.dtype:
        raise ValueError(f"out must be {y_shape} of dtype {x.dtype}")
    if out.numel() == 0:
        return out
    # W^T [C_in, C_out] row-major, in x's dtype so tl.dot sees matching inputs.
    w = proj_weight.to(x.dtype).reshape(c_out, c_in).t().contiguous()
    block_m, block_n, block_k = gemm_tile_config(batch * out_h * out_w, c_in, c_out, x.device)
    grid = (triton.cdiv(batch * out_h * out_w, block_m), triton.cdiv(c_out, block_n))
    _bicubic_bridge_kernel[grid](
        x, w, proj_bias.contiguous(), out,
        batch, c_in, height, width, out_h, out_w, c_out,
        _fp32_ratio(height, out_h), _fp32_ratio(width, out_w),
        *x.stride(), *out.stride(),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        # More stages would software-pipeline the 16 fp32 tap loads through shared memory
        # (~300 KB at 3 stages, over the H100 limit); K = C_in is only a few chunks anyway.
        num_warps=4, num_stages=1,
    )
    return out
