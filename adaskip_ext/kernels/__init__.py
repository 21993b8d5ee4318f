"""Triton kernels: fused GroupNorm+SiLU, GroupNorm+SiLU+conv3x3 (implicit GEMM) and bicubic+1x1 bridge."""
