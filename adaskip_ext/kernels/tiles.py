"""What the GEMM-shaped kernels share: the output tile of a program over (pixels, channels)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def pixel_channel_tile(N, H, W, C_out, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program (pid_m, pid_n)'s [BLOCK_M pixels, BLOCK_N channels] tile of an (N, C_out, H, W)
    output: the pixel rows as (image, y, x), the channel columns, and both masks."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pix = offs_m % (H * W)
    return offs_m // (H * W), pix // W, pix % W, offs_n, offs_m < N * H * W, offs_n < C_out
