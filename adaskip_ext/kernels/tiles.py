"""What the GEMM-shaped kernels share: the tile sizes and each program's output tile."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# (BLOCK_M, largest BLOCK_N), from the most efficient tile to the one that fills the most SMs.
TILE_LADDER = ((64, 128), (64, 64), (32, 64), (32, 32))


def multiprocessor_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (1 elsewhere: the interpreter)."""
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def gemm_tile_config(rows: int, c_in: int, c_out: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K) for a [rows, c_out] output: the largest tile of TILE_LADDER that
    still gives every SM a program (small batches would leave most idle), else the smallest.
    BLOCK_K never exceeds C_in rounded up to 16."""
    block_k = 32 if c_in > 16 else 16
    sms = multiprocessor_count(device)
    for block_m, widest in TILE_LADDER:
        block_n = min(widest, max(32, triton.next_power_of_2(c_out)))
        if triton.cdiv(rows, block_m) * triton.cdiv(c_out, block_n) >= sms:
            break
    return block_m, block_n, block_k


@triton.jit
def pixel_channel_tile(N, H, W, C_out, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program (pid_m, pid_n)'s [BLOCK_M pixels, BLOCK_N channels] tile of an (N, C_out, H, W)
    output: the pixel rows as (image, y, x), the channel columns, and both masks."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pix = offs_m % (H * W)
    return offs_m // (H * W), pix // W, pix % W, offs_n, offs_m < N * H * W, offs_n < C_out
