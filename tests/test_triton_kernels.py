"""The Triton kernels against the pure-PyTorch reference ops.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (small shapes, float32, and
bfloat16 for GroupNorm: the interpreter's tl.dot multiplies bfloat16 bit patterns as integers, so
the GEMM kernels are checked in bfloat16 only on the GPU); with CUDA the ``gpu`` cases run real
shapes in float32, float16 and bfloat16.
"""
from __future__ import annotations

import os

import pytest
import torch

# conftest.py sets TRITON_INTERPRET=1 without CUDA, before any kernel module is imported (the
# interpreter is chosen when a kernel is decorated).
from adaskip_ext.kernels import tiles
from adaskip_ext.kernels.bicubic_bridge import bicubic_bridge
from adaskip_ext.kernels.conv3x3 import group_norm_silu_conv3x3
from adaskip_ext.kernels.group_norm_silu import group_norm_affine, group_norm_silu
from adaskip_ext.ops import reference

CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

CPU = pytest.param(
    "cpu", marks=pytest.mark.skipif(not INTERPRET, reason="TRITON_INTERPRET=1 is not set (CPU tensors need Triton's interpreter)"), id="interp"
)
GPU = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")], id="cuda"
)
CL = torch.channels_last
NCHW = torch.contiguous_format
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def _full_fp32(no_tf32):
    """Every case here compares fp32 at ~1e-5: TF32 off."""


def _randn(
    shape: tuple[int, ...],
    seed: int,
    device: str,
    dtype: torch.dtype = torch.float32,
    layout: torch.memory_format = NCHW,
    scale: float = 1.0,
    shift: float = 0.0,
) -> torch.Tensor:
    """Seeded ``shift + scale * N(0, 1)`` of the given shape, dtype and memory format."""
    generator = torch.Generator().manual_seed(seed)
    t = shift + scale * torch.randn(shape, generator=generator)
    t = t.to(device=device, dtype=dtype)
    return t.contiguous(memory_format=layout) if t.dim() == 4 else t


def _nan_like(shape: tuple[int, ...], like: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """An output buffer poisoned with NaN: any element the kernel fails to write shows up."""
    return torch.full(shape, float("nan"), dtype=like.dtype, device=like.device).contiguous(memory_format=layout)


def _id(value: object) -> str | None:
    """Readable test ids: f32/bf16, nchw/cl, 5x5; pytest's default for anything else."""
    if isinstance(value, torch.dtype):
        return {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}[value]
    if isinstance(value, torch.memory_format):
        return "cl" if value == CL else "nchw"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return None


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return CL if x.is_contiguous(memory_format=CL) and not x.is_contiguous() else NCHW


def _assert_matches(y: torch.Tensor, expected: torch.Tensor, x: torch.Tensor) -> None:
    """y has x's dtype and memory format and equals ``expected`` up to the dtype's tolerance,
    taken relative to the output's scale."""
    assert y.shape == expected.shape and y.dtype == x.dtype
    assert y.is_contiguous(memory_format=_format_of(x))
    assert not torch.isnan(y).any()
    tol = TOLERANCE[x.dtype]
    scale = expected.float().abs().max().item()
    torch.testing.assert_close(y.float(), expected.float(), rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------------------------------------
# GroupNorm + SiLU

GN_CPU_CASES = [
    # (shape, groups, dtype, layout, silu)
    ((2, 12, 5, 5), 3, torch.float32, NCHW, True),
    ((2, 12, 5, 5), 3, torch.float32, CL, True),
    ((2, 12, 8, 8), 4, torch.float32, NCHW, False),
    ((2, 12, 8, 8), 4, torch.float32, CL, True),
    ((2, 12, 5, 5), 4, torch.bfloat16, NCHW, True),
    ((2, 12, 8, 8), 3, torch.bfloat16, CL, True),
]
GN_GPU_CASES = [
    ((8, 128, 32, 32), 32, dtype, layout, True)
    for dtype in (torch.float32, torch.float16, torch.bfloat16)
    for layout in (NCHW, CL)
] + [((4, 256, 8, 8), 32, torch.float16, CL, False), ((2, 96, 7, 9), 24, torch.float32, NCHW, True)]


def _gn_params(channels: int, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return _randn((channels,), 1, device, dtype, shift=1.0), _randn((channels,), 2, device, dtype)


def _check_group_norm_silu(device: str, shape, groups, dtype, layout, silu) -> None:
    x = _randn(shape, 0, device, dtype, layout, scale=2.0, shift=0.5)
    weight, bias = _gn_params(shape[1], device, dtype)
    expected = reference.group_norm_silu(x, weight, bias, groups, 1e-6, silu)
    _assert_matches(group_norm_silu(x, weight, bias, groups, 1e-6, silu), expected, x)


@pytest.mark.parametrize("device", [CPU])
@pytest.mark.parametrize("shape, groups, dtype, layout, silu", GN_CPU_CASES, ids=_id)
def test_group_norm_silu(device, shape, groups, dtype, layout, silu) -> None:
    _check_group_norm_silu(device, shape, groups, dtype, layout, silu)


@pytest.mark.parametrize("device", [GPU])
@pytest.mark.parametrize("shape, groups, dtype, layout, silu", GN_GPU_CASES, ids=_id)
def test_group_norm_silu_gpu(device, shape, groups, dtype, layout, silu) -> None:
    _check_group_norm_silu(device, shape, groups, dtype, layout, silu)


@pytest.mark.parametrize("device", [CPU, GPU])
def test_group_norm_large_mean_is_stable(device: str) -> None:
    """|mean| ≫ std over several BLOCK chunks: E[x²]−E[x]² in fp32 would lose the variance."""
    x = _randn((1, 4, 40, 40), 0, device, shift=1000.0)  # groups of 3200 elements: 2 chunks
    weight, bias = _gn_params(4, device, torch.float32)
    y = group_norm_silu(x, weight, bias, 2, 1e-6, False)
    expected = reference.group_norm_silu(x.double(), weight.double(), bias.double(), 2, 1e-6, False)
    torch.testing.assert_close(y.double(), expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("device", [CPU, GPU])
@pytest.mark.parametrize("layout", [NCHW, CL], ids=_id)
def test_group_norm_affine(device: str, layout: torch.memory_format) -> None:
    x = _randn((2, 12, 5, 5), 0, device, layout=layout, scale=2.0, shift=0.5)
    weight, bias = _gn_params(12, device, torch.float32)
    scale, shift = group_norm_affine(x, weight, bias, 3, 1e-6)
    assert scale.shape == shift.shape == (2, 12) and scale.dtype == shift.dtype == torch.float32
    y = scale[:, :, None, None] * x + shift[:, :, None, None]
    expected = reference.group_norm_silu(x, weight, bias, 3, 1e-6, False)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("device", [CPU, GPU])
@pytest.mark.parametrize("layout", [NCHW, CL], ids=_id)
def test_group_norm_silu_writes_every_element_of_out(device: str, layout: torch.memory_format) -> None:
    x = _randn((2, 12, 5, 5), 0, device, layout=layout)
    weight, bias = _gn_params(12, device, torch.float32)
    out = _nan_like(x.shape, x, CL if layout == NCHW else NCHW)
    y = group_norm_silu(x, weight, bias, 4, 1e-6, True, out=out)
    assert y is out and not torch.isnan(out).any()
    expected = reference.group_norm_silu(x, weight, bias, 4, 1e-6, True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


# ---------------------------------------------------------------------------------------------
# GroupNorm + SiLU + conv3x3

CONV_CPU_CASES = [
    # (N, C_in, C_out, H, W, groups, dtype, x layout, has_add, residual layout or None)
    (2, 12, 10, 5, 5, 3, torch.float32, NCHW, True, NCHW),
    (2, 12, 10, 5, 5, 3, torch.float32, CL, True, CL),
    (2, 12, 10, 8, 8, 4, torch.float32, CL, True, NCHW),
    (2, 12, 10, 8, 8, 4, torch.float32, NCHW, False, CL),
    (2, 12, 10, 5, 8, 4, torch.float32, NCHW, False, None),
    (1, 40, 70, 6, 5, 8, torch.float32, CL, True, None),
]
CONV_GPU_CASES = [
    (8, 128, 128, 32, 32, 32, dtype, layout, True, layout)
    for dtype in (torch.float32, torch.float16, torch.bfloat16)
    for layout in (NCHW, CL)
] + [
    (4, 256, 128, 8, 8, 32, torch.float16, CL, False, NCHW),
    (2, 64, 256, 16, 16, 32, torch.bfloat16, NCHW, True, None),
    (3, 40, 70, 7, 9, 8, torch.float32, CL, False, None),
]


def _conv_inputs(device, n, c_in, c_out, h, w, dtype, layout, has_add, residual_layout):
    x = _randn((n, c_in, h, w), 0, device, dtype, layout, scale=2.0, shift=0.5)
    gn_weight, gn_bias = _gn_params(c_in, device, dtype)
    conv_weight = _randn((c_out, c_in, 3, 3), 3, device, dtype, scale=(9 * c_in) ** -0.5)
    conv_bias = _randn((c_out,), 4, device, dtype)
    add = _randn((n, c_out), 5, device, dtype) if has_add else None
    residual = _randn((n, c_out, h, w), 6, device, dtype, residual_layout) if residual_layout else None
    return x, gn_weight, gn_bias, conv_weight, conv_bias, add, residual


def _check_conv(device, n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout) -> None:
    x, gn_w, gn_b, conv_w, conv_b, add, residual = _conv_inputs(
        device, n, c_in, c_out, h, w, dtype, layout, has_add, residual_layout
    )
    y = group_norm_silu_conv3x3(x, gn_w, gn_b, conv_w, conv_b, groups, 1e-6, add, residual)
    expected = reference.group_norm_silu_conv3x3(x, gn_w, gn_b, conv_w, conv_b, groups, 1e-6, add, residual)
    _assert_matches(y, expected, x)


CONV_ARGS = "n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout"


@pytest.mark.parametrize("device", [CPU])
@pytest.mark.parametrize(CONV_ARGS, CONV_CPU_CASES, ids=_id)
def test_group_norm_silu_conv3x3(device, n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout):
    _check_conv(device, n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout)


@pytest.mark.parametrize("device", [GPU])
@pytest.mark.parametrize(CONV_ARGS, CONV_GPU_CASES, ids=_id)
def test_group_norm_silu_conv3x3_gpu(device, n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout):
    _check_conv(device, n, c_in, c_out, h, w, groups, dtype, layout, has_add, residual_layout)


@pytest.mark.parametrize("device", [CPU, GPU])
def test_conv_padding_is_zero_after_the_norm(device: str) -> None:
    """A constant input normalises to silu(beta) everywhere; the border must see zeros, not that."""
    x = torch.zeros((1, 4, 4, 4), device=device)
    gn_w, gn_b = torch.ones(4, device=device), torch.full((4,), 2.0, device=device)
    conv_w, conv_b = torch.ones(1, 4, 3, 3, device=device), torch.zeros(1, device=device)
    y = group_norm_silu_conv3x3(x, gn_w, gn_b, conv_w, conv_b, 2, 1e-6, None, None)
    taps = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=torch.float32, device=device)
    silu_beta = torch.nn.functional.silu(torch.tensor(2.0)).item()
    torch.testing.assert_close(y[0, 0], 4 * silu_beta * taps)


@pytest.mark.parametrize("device", [CPU, GPU])
@pytest.mark.parametrize("layout", [NCHW, CL], ids=_id)
def test_conv3x3_writes_every_element_of_out(device: str, layout: torch.memory_format) -> None:
    x, gn_w, gn_b, conv_w, conv_b, add, residual = _conv_inputs(
        device, 2, 12, 10, 5, 5, torch.float32, layout, True, layout
    )
    out = _nan_like((2, 10, 5, 5), x, CL if layout == NCHW else NCHW)
    y = group_norm_silu_conv3x3(x, gn_w, gn_b, conv_w, conv_b, 3, 1e-6, add, residual, out=out)
    assert y is out and not torch.isnan(out).any()
    expected = reference.group_norm_silu_conv3x3(x, gn_w, gn_b, conv_w, conv_b, 3, 1e-6, add, residual)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


# ---------------------------------------------------------------------------------------------
# Bicubic bridge

BRIDGE_CPU_CASES = [
    # (N, C_in, C_out, (H, W), (out_h, out_w), dtype, layout)
    (2, 12, 10, (8, 8), (4, 4), torch.float32, NCHW),
    (2, 12, 10, (4, 4), (8, 8), torch.float32, CL),
    (2, 12, 10, (5, 5), (7, 7), torch.float32, NCHW),
    (2, 12, 10, (6, 6), (3, 3), torch.float32, CL),
    (1, 20, 6, (5, 8), (7, 4), torch.float32, NCHW),
    (2, 12, 10, (6, 6), (6, 6), torch.float32, CL),
]
BRIDGE_GPU_CASES = [
    (8, c_in, c_out, (size, size), (out, out), dtype, layout)
    for dtype in (torch.float32, torch.float16, torch.bfloat16)
    for layout in (NCHW, CL)
    for c_in, c_out, size, out in ((256, 128, 16, 32), (128, 256, 32, 16))
] + [(3, 40, 70, (7, 9), (16, 5), torch.float32, CL)]


def _bridge_inputs(device, n, c_in, c_out, size, dtype, layout):
    x = _randn((n, c_in, *size), 0, device, dtype, layout)
    return x, _randn((c_out, c_in, 1, 1), 1, device, dtype, scale=c_in**-0.5), _randn((c_out,), 2, device, dtype)


def _check_bridge(device, n, c_in, c_out, size, out_size, dtype, layout) -> None:
    x, proj_w, proj_b = _bridge_inputs(device, n, c_in, c_out, size, dtype, layout)
    y = bicubic_bridge(x, *out_size, proj_w, proj_b)
    _assert_matches(y, reference.bicubic_bridge(x, *out_size, proj_w, proj_b), x)


BRIDGE_ARGS = "n, c_in, c_out, size, out_size, dtype, layout"


@pytest.mark.parametrize("device", [CPU])
@pytest.mark.parametrize(BRIDGE_ARGS, BRIDGE_CPU_CASES, ids=_id)
def test_bicubic_bridge(device, n, c_in, c_out, size, out_size, dtype, layout) -> None:
    _check_bridge(device, n, c_in, c_out, size, out_size, dtype, layout)


@pytest.mark.parametrize("device", [GPU])
@pytest.mark.parametrize(BRIDGE_ARGS, BRIDGE_GPU_CASES, ids=_id)
def test_bicubic_bridge_gpu(device, n, c_in, c_out, size, out_size, dtype, layout) -> None:
    _check_bridge(device, n, c_in, c_out, size, out_size, dtype, layout)


@pytest.mark.parametrize("device", [CPU, GPU])
@pytest.mark.parametrize("layout", [NCHW, CL], ids=_id)
def test_bicubic_bridge_writes_every_element_of_out(device: str, layout: torch.memory_format) -> None:
    x, proj_w, proj_b = _bridge_inputs(device, 2, 12, 10, (5, 5), torch.float32, layout)
    out = _nan_like((2, 10, 7, 7), x, CL if layout == NCHW else NCHW)
    y = bicubic_bridge(x, 7, 7, proj_w, proj_b, out=out)
    assert y is out and not torch.isnan(out).any()
    expected = reference.bicubic_bridge(x, 7, 7, proj_w, proj_b)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_tile_ladder_fills_the_multiprocessors(monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cpu")
    assert tiles.gemm_tile_config(8 * 1024, 128, 128, device) == (64, 128, 32)  # 1 "SM"
    monkeypatch.setattr(tiles, "multiprocessor_count", lambda device: 132)
    assert tiles.gemm_tile_config(128 * 1024, 256, 256, device) == (64, 128, 32)  # 2048 tiles
    assert tiles.gemm_tile_config(8 * 1024, 128, 128, device) == (64, 64, 32)  # 128 -> 256
    assert tiles.gemm_tile_config(1024, 128, 128, device) == (32, 32, 32)  # batch 1: smallest
    assert tiles.gemm_tile_config(64, 8, 10, device) == (32, 32, 16)


@pytest.mark.parametrize("device", [CPU, GPU])
def test_smallest_tiles_match_reference(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 32 x 32 tiles that small batches get on a GPU, forced by pretending to have many SMs."""
    monkeypatch.setattr(tiles, "multiprocessor_count", lambda device: 10**6)
    _check_conv(device, 2, 12, 40, 5, 7, 4, torch.float32, CL, True, NCHW)
    _check_bridge(device, 2, 12, 40, (6, 5), (3, 7), torch.float32, NCHW)
