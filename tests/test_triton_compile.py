"""Every Triton kernel compiles for the H100/H200 (sm_90) in fp32, bf16 and fp16, with no GPU:
Triton's own compiler and ptxas, ahead of time. The interpreter (test_triton_kernels.py) checks
what the kernels compute; this catches what only the compiler rejects. It runs in a subprocess,
since this test session decorates the kernels for the interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def compile_for_sm90(kernel, pointers: dict[str, str], constexprs: dict, floats=()) -> None:
    """Compile ``kernel`` with the given pointer types; other arguments are i32 (or fp32)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {name: "constexpr" if name in constexprs else
                 pointers.get(name, "fp32" if name in floats else "i32") for name in names}
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(names.index(k),): v for k, v in constexprs.items()})
    triton.compile(source, target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": 4, "num_stages": 3})


def compile_all(dtype: str) -> None:
    from adaskip_ext.kernels import bicubic_bridge, conv3x3
    from adaskip_ext.kernels import group_norm_silu as gn

    tensor, table = f"*{dtype}", "*fp32"
    compile_for_sm90(
        conv3x3._gn_silu_conv3x3_kernel,
        {"x_ptr": tensor, "w_ptr": tensor, "bias_ptr": tensor, "add_ptr": tensor,
         "res_ptr": tensor, "y_ptr": tensor, "scale_ptr": table, "shift_ptr": table},
        {"HAS_ADD": True, "HAS_RESIDUAL": True, "TILE_IN_ONE_IMAGE": True,
         "BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32})
    compile_for_sm90(
        bicubic_bridge._bicubic_bridge_kernel,
        {"x_ptr": tensor, "w_ptr": tensor, "bias_ptr": tensor, "y_ptr": tensor},
        {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, floats=("scale_h", "scale_w"))
    compile_for_sm90(
        gn._group_norm_silu_kernel,
        {"x_ptr": tensor, "y_ptr": tensor, "w_ptr": table, "b_ptr": table},
        {"SILU": True, "CHANNELS_LAST": True, "BLOCK": 1024}, floats=("eps",))
    compile_for_sm90(
        gn._group_norm_affine_kernel,
        {"x_ptr": tensor, "w_ptr": table, "b_ptr": table, "scale_ptr": table, "shift_ptr": table},
        {"CHANNELS_LAST": False, "BLOCK": 1024, "BLOCK_C": 8}, floats=("eps",))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_triton_kernels_compile_for_sm90(dtype):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's NVIDIA backend not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, __file__, dtype], capture_output=True, text=True,
                            timeout=600, env=env, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-3000:]


if __name__ == "__main__":
    compile_all(sys.argv[1])
