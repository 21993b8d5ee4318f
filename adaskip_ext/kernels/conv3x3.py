"""GroupNorm + SiLU fused into the input load of a 3x3 convolution (padding 1), in Triton.

Implicit GEMM: M = N*H*W output pixels, N_gemm = C_out, K = 9*C_in in (kh, kw, ci) order, with
the weight pre-permuted on the host to a row-major [K, C_out] matrix. Each A tile is loaded from
x and transformed in fp32 with the per-(n, c) GroupNorm tables (silu(scale*x + shift)) before
tl.dot; the zero padding is applied after the transform, since the conv pads silu(gn(x)) with
zeros. The epilogue adds the conv bias, an optional per-(n, c_out) term and an optional residual.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..tensor_layout import memory_format_of
from .checks import check_conv3x3, check_group_norm
from .group_norm_silu import group_norm_affine
from .tiles import gemm_tile_config, pixel_channel_tile


@triton.jit
def _normalized_tile(
    x_ptr, scale_ptr, shift_ptr, img, ih, iw, ci, row_mask, c_mask,
    C_in, H, W, sxN, sxC, sxH, sxW, img0,
    TILE_IN_ONE_IMAGE: tl.constexpr,
):
    """[BLOCK_M, BLOCK_K] fp32 tile of silu(scale*x + shift) at (img, ci, ih, iw), 0 outside x."""
    inside = row_mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    mask = inside[:, None] & c_mask[None, :]
    offs = (img * sxN + ih * sxH + iw * sxW)[:, None] + (ci * sxC)[None, :]
    v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if TILE_IN_ONE_IMAGE:
        # All rows share one image: the tables are a [BLOCK_K] vector instead of a gather.
        a = tl.load(scale_ptr + img0 * C_in + ci, mask=c_mask, other=0.0)[None, :]
        b = tl.load(shift_ptr + img0 * C_in + ci, mask=c_mask, other=0.0)[None, :]
    else:
        table_offs = (img * C_in)[:, None] + ci[None, :]
        table_mask = row_mask[:, None] & c_mask[None, :]
        a = tl.load(scale_ptr + table_offs, mask=table_mask, other=0.0)
        b = tl.load(shift_ptr + table_offs, mask=table_mask, other=0.0)
    h = a * v + b
    h = h * tl.sigmoid(h)
    # Padding (and masked rows/channels) are zeros of silu(gn(x)), not silu(gn(0)).
    return tl.where(mask, h, 0.0)


@triton.jit
def _gn_silu_conv3x3_kernel(
    x_ptr, scale_ptr, shift_ptr, w_ptr, bias_ptr, add_ptr, res_ptr, y_ptr,
    N, C_in, H, W, C_out,
    sxN, sxC, sxH, sxW,
    saN, saC,
    srN, srC, srH, srW,
    syN, syC, syH, syW,
    HAS_ADD: tl.constexpr, HAS_RESIDUAL: tl.constexpr, TILE_IN_ONE_IMAGE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Grid (cdiv(N*H*W, BLOCK_M), cdiv(C_out, BLOCK_N)): one [BLOCK_M pixels, BLOCK_N channels] tile."""
    img, oh, ow, offs_n, row_mask, col_mask = pixel_channel_tile(N, H, W, C_out, BLOCK_M, BLOCK_N)
    img0 = (tl.program_id(0) * BLOCK_M) // (H * W)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_chunks = tl.cdiv(C_in, BLOCK_K)
    # One flat K loop over (tap, channel chunk) so that the whole K range is software-pipelined.
    for kk in range(0, 9 * k_chunks):
        tap = kk // k_chunks
        ci = (kk - tap * k_chunks) * BLOCK_K + tl.arange(0, BLOCK_K)
        c_mask = ci < C_in
        ih = oh + (tap // 3 - 1)
        iw = ow + (tap % 3 - 1)
        a = _normalized_tile(
            x_ptr, scale_ptr, shift_ptr, img, ih, iw, ci, row_mask, c_mask,
            C_in, H, W, sxN, sxC, sxH, sxW, img0, TILE_IN_ONE_IMAGE,
        )
        w_offs = (tap * C_in + ci)[:, None] * C_out + offs_n[None, :]
        w = tl.load(w_ptr + w_offs, mask=c_mask[:, None] & col_mask[None, :], other=0.0)
        # "ieee" keeps fp32 inputs out of TF32; it is ignored for fp16/bf16 inputs.
        acc = tl.dot(a.to(w.dtype), w, acc, input_precision="ieee")

    mask = row_mask[:, None] & col_mask[None, :]
    acc += tl.load(bias_ptr + offs_n, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    if HAS_ADD:
        add_offs = (img * saN)[:, None] + (offs_n * saC)[None, :]
        acc += tl.load(add_ptr + add_offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        res_offs = (img * srN + oh * srH + ow * srW)[:, None] + (offs_n * srC)[None, :]
        acc += tl.load(res_ptr + res_offs, mask=mask, other=0.0).to(tl.float32)
    y_offs = (img * syN + oh * syH + ow * syW)[:, None] + (offs_n * syC)[None, :]
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=mask)


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
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv3x3(silu(group_norm(x))) + conv_bias + add[:, :, None, None] + residual``, padding 1.

    x: (N, C_in, H, W), NCHW or channels_last; gn_weight, gn_bias: (C_in,);
    conv_weight: (C_out, C_in, 3, 3); conv_bias: (C_out,); add: (N, C_out) or None;
    residual: (N, C_out, H, W) in any layout, or None. Returns (N, C_out, H, W) in x's dtype and
    memory format, or writes ``out`` (that shape and dtype, any strides) and returns it.
    """
    check_group_norm(x, gn_weight, gn_bias, groups)
    check_conv3x3(x, conv_weight, conv_bias, add, residual)
    batch, c_in, height, width = x.shape
    c_out = conv_weight.size(0)
    y_shape = (batch, c_out, height, width)
    if out is None:
        out = torch.empty(y_shape, dtype=x.dtype, device=x.device,
                          memory_format=memory_format_of(x))
    elif out.shape != y_shape or out.dtype != x.dtype:
        raise ValueError(f"out must be {y_shape} of dtype {x.dtype}")
    if out.numel() == 0:
        return out
    scale, shift = group_norm_affine(x, gn_weight, gn_bias, groups, eps)
    # [K, C_out] with K in (kh, kw, ci) order, in x's dtype so tl.dot sees matching inputs.
    w = conv_weight.to(x.dtype).permute(2, 3, 1, 0).contiguous().view(9 * c_in, c_out)
    hw = height * width
    block_m, block_n, block_k = gemm_tile_config(batch * hw, c_in, c_out, x.device)
    grid = (triton.cdiv(batch * hw, block_m), triton.cdiv(c_out, block_n))
    # Absent optional inputs: pass out as a never-read placeholder pointer with zero strides.
    add_t = add if add is not None else out
    add_strides = (add.stride(0), add.stride(1)) if add is not None else (0, 0)
    res_t = residual if residual is not None else out
    res_strides = residual.stride() if residual is not None else (0, 0, 0, 0)
    _gn_silu_conv3x3_kernel[grid](
        x, scale, shift, w, conv_bias.contiguous(), add_t, res_t, out,
        batch, c_in, height, width, c_out,
        *x.stride(), *add_strides, *res_strides, *out.stride(),
        HAS_ADD=add is not None, HAS_RESIDUAL=residual is not None,
        TILE_IN_ONE_IMAGE=hw % block_m == 0,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=4, num_stages=3,
    )
    return out
