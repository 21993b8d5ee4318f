"""The native (C++ CPU and CUDA) kernels against the pure-PyTorch reference ops, the reference
against float64 oracles written from the definitions, the front functions on every backend, and
the same ValueError for the same bad call on every backend.

CPU cases need the extension built by ``pip install --no-build-isolation -e .`` and fail without it;
``gpu`` cases run the CUDA kernels and skip without a device. Outputs are NaN-poisoned by the
extension (conftest sets ADASKIP_POISON_OUTPUTS=1), so an unwritten element fails.
"""
from __future__ import annotations

import math
import platform
import warnings

import pytest
import torch
import torch.nn.functional as F

from adaskip_ext import ops
from adaskip_ext.ops import backend, native, reference

CUDA = torch.cuda.is_available()
CPU_DEVICE = pytest.param("cpu", id="cpu")
CUDA_DEVICE = pytest.param(
    "cuda", id="cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")])
DEVICES = [CPU_DEVICE, CUDA_DEVICE]
CL = torch.channels_last
NCHW = torch.contiguous_format
# Relative to the largest reference magnitude: fp32 ~1e-5, half types ~1e-2.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 1e-2}
GN_SHAPES = [  # (N, C, H, W), groups
    ((2, 12, 5, 7), 3), ((2, 12, 5, 7), 4), ((3, 8, 1, 1), 8), ((1, 32, 9, 9), 32),
    ((2, 64, 16, 16), 32), ((1, 6, 3, 50), 2),
]


@pytest.fixture(autouse=True)
def _full_fp32(no_tf32):
    """CUDA references in full fp32 (cuDNN's default TF32 convs are off by ~3e-4)."""


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """No NaN, same shape, max error within TOLERANCE[dtype] of the reference's scale."""
    assert actual.shape == expected.shape
    assert not torch.isnan(actual).any(), "an output element was not written"
    scale = expected.double().abs().max().clamp_min(1.0)
    error = (actual.double() - expected.double()).abs().max() / scale
    assert error <= TOLERANCE[dtype], f"max relative error {error:.3g} > {TOLERANCE[dtype]:g}"


def in_double(*args):
    """The arguments with tensors in float64: the reference evaluated exactly enough to judge
    float32 kernels (torch's own float32 GroupNorm loses digits when |mean| >> std)."""
    return [a.double() if isinstance(a, torch.Tensor) else a for a in args]


def assert_layout(y: torch.Tensor, like: torch.Tensor) -> None:
    """y is laid out as ``like`` (channels_last stays channels_last; ambiguous shapes are NCHW)."""
    memory_format = reference.memory_format_of(like)
    assert y.is_contiguous(memory_format=memory_format), f"output is not {memory_format}"


def random(shape, dtype=torch.float32, device="cpu", memory_format=NCHW, seed=0, scale=1.0,
           offset=0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset
    return x.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)


def dtypes_for(device: str) -> list[torch.dtype]:
    return [torch.float32, torch.float64, torch.bfloat16, torch.float16] if device == "cpu" else \
        [torch.float32, torch.bfloat16, torch.float16]


# ---- group_norm_silu ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("shape,groups", GN_SHAPES)
def test_group_norm_silu_matches_reference(device, memory_format, shape, groups):
    weight, bias = random(shape[1], seed=1, device=device), random(shape[1], seed=2, device=device)
    for dtype in dtypes_for(device):
        # A large offset checks the variance is computed stably (E[x²] − E[x]² would cancel).
        x = random(shape, dtype, device, memory_format, scale=3.0, offset=20.0)
        for silu in (True, False):
            y = torch.ops.adaskip.group_norm_silu(x, weight, bias, groups, 1e-6, silu)
            assert y.dtype == dtype
            assert_layout(y, x)
            expected = reference.group_norm_silu(*in_double(x, weight, bias), groups, 1e-6, silu)
            assert_close(y, expected, dtype)


@pytest.mark.parametrize("device, dtype", [
    pytest.param("cpu", torch.float64, id="cpu-fp64"),
    pytest.param("cpu", torch.float32, id="cpu-fp32"),  # the vectorised path
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.float32, id="cuda-fp32", marks=CUDA_DEVICE.marks)])
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("silu", [True, False])
def test_group_norm_silu_backward_matches_autograd(device, dtype, memory_format, silu):
    for (shape, groups) in GN_SHAPES[:4]:
        x = random(shape, dtype, device, memory_format)
        weight = random(shape[1], dtype, device, seed=1)
        bias = random(shape[1], dtype, device, seed=2)
        grad = random(shape, dtype, device, seed=3)
        # In float64: a float32 reference amplifies rounding by rstd (1000 for one-element groups).
        leaves = [t.double().requires_grad_() for t in (x, weight, bias)]
        expected = torch.autograd.grad(
            reference.group_norm_silu(*leaves, groups, 1e-6, silu), leaves, grad.double())
        actual = torch.ops.adaskip.group_norm_silu_backward(grad, x, weight, bias, groups, 1e-6, silu)
        assert_layout(actual[0], x)
        for a, e in zip(actual, expected):
            assert_close(a, e, dtype)


def test_group_norm_silu_gradcheck_cpu():
    x = random((2, 6, 3, 4), torch.float64).requires_grad_()
    weight = random(6, torch.float64, seed=1).requires_grad_()
    bias = random(6, torch.float64, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, w, b: torch.ops.adaskip.group_norm_silu(a, w, b, 3, 1e-6, True), (x, weight, bias))


# ---- group_norm_silu_conv3x3 -------------------------------------------------------------------

CONV_CASES = [  # (N, C_in, C_out, H, W, groups)
    (2, 12, 10, 5, 7, 3), (1, 8, 8, 1, 1, 4), (2, 16, 24, 8, 8, 8), (1, 32, 32, 6, 3, 32),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("with_add,with_residual", [(False, False), (True, False), (True, True),
                                                    (False, True)])
def test_group_norm_silu_conv3x3_matches_reference(device, memory_format, case, with_add,
                                                   with_residual):
    n, c_in, c_out, h, w, groups = case
    for dtype in (torch.float32, torch.bfloat16):
        x = random((n, c_in, h, w), dtype, device, memory_format)
        gn_weight, gn_bias = random(c_in, seed=1, device=device), random(c_in, seed=2, device=device)
        conv_weight = random((c_out, c_in, 3, 3), dtype, device, seed=3, scale=0.2)
        conv_bias = random(c_out, dtype, device, seed=4)
        add = random((n, c_out), dtype, device, seed=5) if with_add else None
        residual = random((n, c_out, h, w), dtype, device, CL, seed=6) if with_residual else None
        args = (x, gn_weight, gn_bias, conv_weight, conv_bias, groups, 1e-6, add, residual)
        y = torch.ops.adaskip.group_norm_silu_conv3x3(*args)
        assert_layout(y, x)
        assert_close(y, reference.group_norm_silu_conv3x3(*args), dtype)


# ---- bicubic_resize and bicubic_bridge -----------------------------------------------------------

RESIZE_CASES = [  # (H, W) -> (out_h, out_w)
    ((32, 32), (16, 16)), ((16, 16), (32, 32)), ((8, 8), (4, 4)), ((4, 4), (32, 32)),
    ((7, 7), (16, 16)), ((16, 16), (7, 7)), ((5, 5), (5, 5)), ((1, 1), (3, 3)), ((3, 3), (1, 1)),
    ((5, 9), (8, 4)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("sizes", RESIZE_CASES, ids=lambda s: f"{s[0]}to{s[1]}")
def test_bicubic_resize_matches_interpolate(device, memory_format, sizes):
    (h, w), (out_h, out_w) = sizes
    for dtype in dtypes_for(device):
        x = random((2, 5, h, w), dtype, device, memory_format)
        y = torch.ops.adaskip.bicubic_resize(x, out_h, out_w)
        assert_layout(y, x)
        assert_close(y, reference.bicubic_resize(x, out_h, out_w), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("sizes", RESIZE_CASES, ids=lambda s: f"{s[0]}to{s[1]}")
def test_bicubic_resize_backward_is_the_adjoint(device, memory_format, sizes):
    (h, w), (out_h, out_w) = sizes
    dtype = torch.float64 if device == "cpu" else torch.float32
    x = random((2, 3, h, w), dtype, device, memory_format).requires_grad_()
    grad = random((2, 3, out_h, out_w), dtype, device, memory_format, seed=1)
    (expected,) = torch.autograd.grad(reference.bicubic_resize(x, out_h, out_w), x, grad)
    actual = torch.ops.adaskip.bicubic_resize_backward(grad, h, w)
    assert_layout(actual, grad)
    assert_close(actual, expected, dtype)


@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
def test_bicubic_resize_gradcheck_cpu(memory_format):
    x = random((1, 2, 5, 4), torch.float64, memory_format=memory_format).requires_grad_()
    for size in ((3, 7), (9, 2)):
        assert torch.autograd.gradcheck(lambda a: torch.ops.adaskip.bicubic_resize(a, *size), (x,))


BRIDGE_CASES = [  # (C_in, H, W) -> (C_out, out_h, out_w): down to the middle, back up, odd sizes
    ((8, 16, 16), (16, 4, 4)), ((16, 4, 4), (8, 16, 16)), ((6, 5, 7), (10, 9, 3)),
    ((4, 3, 3), (5, 3, 3)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", BRIDGE_CASES, ids=str)
def test_bicubic_bridge_matches_reference(device, memory_format, case):
    (c_in, h, w), (c_out, out_h, out_w) = case
    for dtype in dtypes_for(device):
        x = random((2, c_in, h, w), dtype, device, memory_format)
        weight = random((c_out, c_in, 1, 1), dtype, device, seed=1, scale=0.3)
        bias = random(c_out, dtype, device, seed=2)
        y = torch.ops.adaskip.bicubic_bridge(x, out_h, out_w, weight, bias)
        assert_layout(y, x)
        assert_close(y, reference.bicubic_bridge(x, out_h, out_w, weight, bias), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", BRIDGE_CASES, ids=str)
def test_bicubic_bridge_backward_matches_autograd(device, memory_format, case):
    (c_in, h, w), (c_out, out_h, out_w) = case
    dtype = torch.float64 if device == "cpu" else torch.float32
    x = random((2, c_in, h, w), dtype, device, memory_format)
    weight = random((c_out, c_in, 1, 1), dtype, device, seed=1, scale=0.3)
    bias = random(c_out, dtype, device, seed=2)
    grad = random((2, c_out, out_h, out_w), dtype, device, memory_format, seed=3)
    leaves = [t.double().requires_grad_() for t in (x, weight, bias)]
    expected = torch.autograd.grad(
        reference.bicubic_bridge(leaves[0], out_h, out_w, leaves[1], leaves[2]), leaves, grad.double())
    actual = torch.ops.adaskip.bicubic_bridge_backward(grad, x, weight)
    assert_layout(actual[0], x)
    for a, e in zip(actual, expected):
        assert_close(a, e, dtype)


@pytest.mark.parametrize("case", BRIDGE_CASES, ids=str)
def test_bicubic_bridge_gradcheck_cpu(case):
    (c_in, h, w), (c_out, out_h, out_w) = case
    x = random((2, c_in, h, w), torch.float64).requires_grad_()
    weight = random((c_out, c_in, 1, 1), torch.float64, seed=1).requires_grad_()
    bias = random(c_out, torch.float64, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, wt, b: torch.ops.adaskip.bicubic_bridge(a, out_h, out_w, wt, b), (x, weight, bias))


# ---- registration: opcheck, torch.compile ------------------------------------------------------

def opcheck_cases() -> list:
    x = random((2, 8, 5, 5))
    w8, b8 = random(8, seed=1), random(8, seed=2)
    conv_weight, conv_bias = random((6, 8, 3, 3), seed=3), random(6, seed=4)
    proj_weight, proj_bias = random((6, 8, 1, 1), seed=5), random(6, seed=6)
    grad = random((2, 8, 5, 5), seed=7)
    return [
        pytest.param("group_norm_silu", (x, w8, b8, 4, 1e-6, True), id="group_norm_silu"),
        pytest.param("group_norm_silu_backward", (grad, x, w8, b8, 4, 1e-6, True),
                     id="group_norm_silu_backward"),
        pytest.param("group_norm_silu_conv3x3",
                     (x, w8, b8, conv_weight, conv_bias, 4, 1e-6, random((2, 6), seed=8),
                      random((2, 6, 5, 5), seed=9)), id="group_norm_silu_conv3x3"),
        pytest.param("bicubic_resize", (x, 9, 3), id="bicubic_resize"),
        pytest.param("bicubic_resize_backward", (random((2, 8, 9, 3)), 5, 5),
                     id="bicubic_resize_backward"),
        pytest.param("bicubic_bridge", (x, 3, 3, proj_weight, proj_bias), id="bicubic_bridge"),
        pytest.param("bicubic_bridge_backward", (random((2, 6, 3, 3)), x, proj_weight),
                     id="bicubic_bridge_backward"),
    ]


@pytest.mark.parametrize("name,args", opcheck_cases())
def test_opcheck_native(name, args):
    differentiable = name in ("group_norm_silu", "bicubic_resize", "bicubic_bridge")
    if differentiable:
        args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(getattr(torch.ops.adaskip, name).default, args)


TRITON_DEVICES = [
    pytest.param("cpu", id="interpreter", marks=pytest.mark.skipif(
        not ops.available("group_norm_silu", "triton", "cpu"),
        reason="Triton cannot run CPU tensors here (TRITON_INTERPRET=1 unset, or no Triton)")),
    CUDA_DEVICE,
]


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("name", ["group_norm_silu", "group_norm_silu_conv3x3", "bicubic_bridge"])
def test_opcheck_triton(device, name):
    cases = {case.id: case.values[1] for case in opcheck_cases()}
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in cases[name])
    if name != "group_norm_silu_conv3x3":
        args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(getattr(torch.ops.adaskip, f"{name}_triton").default, args)


@pytest.mark.slow
def test_torch_compile_runs_the_ops():
    def block(x, weight, bias, proj_weight, proj_bias):
        h = ops.group_norm_silu(x, weight, bias, 4, 1e-6)
        return ops.bicubic_bridge(h, 3, 3, proj_weight, proj_bias) * 2.0

    args = (random((2, 8, 6, 6)), random(8, seed=1), random(8, seed=2),
            random((4, 8, 1, 1), seed=3), random(4, seed=4))
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    assert_close(compiled(*args), block(*args), torch.float32)


# ---- backend choice ----------------------------------------------------------------------------

def test_native_cpu_kernels_are_built():
    assert native.LOAD_ERROR is None, native.LOAD_ERROR
    for op in ops.OPS:
        assert native.has_kernel(op, "cpu")


def extension_op_names() -> list[str]:
    """Every op the compiled extension defines (csrc/ops.cpp), without the Triton ops."""
    names = [name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
             if name.startswith("adaskip::") and not name.endswith("_triton")]
    assert "group_norm_silu" in names and "bicubic_bridge_backward" in names
    return sorted(names)


def test_cuda_kernels_are_registered_exactly_when_the_build_compiled_them():
    built = bool(ops.build_info().get("cuda"))
    for op in extension_op_names():
        assert native.has_kernel(op, "cuda") == built, op
    for op in ops.OPS:
        assert ops.available(op, ops.choose(op, "cuda"), "cuda"), op


def test_cuda_tensors_on_a_cpu_only_build_warn_once_with_the_reason(monkeypatch):
    monkeypatch.setattr(native, "has_kernel", lambda op, device_type: device_type == "cpu")
    monkeypatch.setattr(native, "build_info",
                        lambda: {"cuda": False, "cuda_reason": "the CUDA build failed: boom"})
    monkeypatch.setattr(backend, "_choices", {})
    monkeypatch.setattr(backend, "_warned", set())
    monkeypatch.delenv("ADASKIP_BACKEND", raising=False)
    with pytest.warns(UserWarning, match=r"CPU kernels only \(the CUDA build failed: boom\)"):
        assert ops.choose("group_norm_silu", "cuda") != "native"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.choose("bicubic_bridge", "cuda") != "native"
        ops.choose("group_norm_silu", "cpu")  # CPU tensors: nothing to warn about


CPU_KERNELS = {"x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2+FMA)", "baseline x86-64"}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the CPU clones are x86-64 only")
def test_cpu_kernels_names_the_clone_this_cpu_runs():
    name = ops.cpu_kernels()
    assert name in CPU_KERNELS | {"AVX2"}, name  # AVX2: a GCC < 12 build's clone
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert name == "x86-64-v4 (AVX-512)"


def test_set_backend_forces_and_validates(monkeypatch):
    x, weight, bias = random((1, 4, 3, 3)), random(4, seed=1), random(4, seed=2)
    automatic = ops.choose("group_norm_silu", "cpu")
    calls = []
    monkeypatch.setattr(reference, "group_norm_silu",
                        lambda *args: calls.append(args) or torch.zeros_like(x))
    try:
        ops.set_backend("reference")
        assert ops.choose("group_norm_silu", "cpu") == "reference"
        ops.group_norm_silu(x, weight, bias, 2, 1e-6)
        assert len(calls) == 1
        with pytest.raises(ValueError, match="unknown backend 'fast'"):
            ops.set_backend("fast")
    finally:
        ops.set_backend(None)
    assert ops.choose("group_norm_silu", "cpu") == automatic


def test_environment_variable_forces_backend(monkeypatch):
    monkeypatch.setenv("ADASKIP_BACKEND", "reference")
    assert ops.choose("bicubic_bridge", "cpu") == "reference"
    monkeypatch.setenv("ADASKIP_BACKEND", "cuda")
    with pytest.raises(ValueError, match="ADASKIP_BACKEND: unknown backend 'cuda'"):
        ops.choose("bicubic_bridge", "cpu")


def test_forced_backend_that_cannot_run_is_an_error(monkeypatch):
    monkeypatch.setenv("ADASKIP_BACKEND", "native")
    with pytest.raises(RuntimeError, match="cannot run group_norm_silu on meta"):
        ops.choose("group_norm_silu", "meta")
    monkeypatch.setenv("ADASKIP_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="Triton runs CUDA tensors only"):
        ops.choose("group_norm_silu", "cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("backend", [None, *ops.BACKENDS], ids=lambda b: b or "automatic")
def test_front_functions_match_reference(device, memory_format, backend):
    """Each front function, on the backend it chooses by itself and on each one forced, against
    the float64 reference, at odd sizes (C = 12 in 3 groups, 5 x 7 images, C_out = 10)."""
    if backend is not None and not ops.available("group_norm_silu", backend, device):
        pytest.skip(f"{backend} cannot run {device} tensors here")
    x = random((2, 12, 5, 7), device=device, memory_format=memory_format)
    w12, b12 = random(12, seed=1, device=device), random(12, seed=2, device=device)
    conv_weight = random((10, 12, 3, 3), seed=3, scale=0.2, device=device)
    conv_bias, add = random(10, seed=4, device=device), random((2, 10), seed=5, device=device)
    residual = random((2, 10, 5, 7), seed=6, device=device)
    proj_weight, proj_bias = random((10, 12, 1, 1), seed=7, device=device), random(10, seed=8,
                                                                                   device=device)
    conv_args = (x, w12, b12, conv_weight, conv_bias, 3, 1e-6, add, residual)
    calls = {
        "group_norm_silu": (x, w12, b12, 3, 1e-6, True),
        "group_norm_silu_conv3x3": conv_args,
        "bicubic_bridge": (x, 3, 9, proj_weight, proj_bias),
    }
    try:
        ops.set_backend(backend)
        for op, args in calls.items():
            assert ops.available(op, ops.choose(op, device), device), op
            actual = getattr(ops, op)(*args)
            assert_layout(actual, x)
            assert_close(actual, getattr(reference, op)(*in_double(*args)), torch.float32)
    finally:
        ops.set_backend(None)


# ---- the reference against independent oracles ------------------------------------------------

def group_norm_oracle(x, weight, bias, groups, eps):
    """GroupNorm in float64 from its definition: biased variance over each (n, g) group."""
    n, c, h, w = x.shape
    xg = x.double().reshape(n, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    var = ((xg - mean) ** 2).mean(-1, keepdim=True)
    y = ((xg - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    return y * weight.double()[:, None, None] + bias.double()[:, None, None]


def silu_oracle(y):
    return y / (1.0 + torch.exp(-y))


def keys_cubic_matrix(in_size, out_size):
    """(out_size, in_size) float64 matrix of PyTorch's bicubic resize along one axis: Keys' cubic
    (A = -0.75) at distances t + 1, t, 1 - t, 2 - t from source (dst + 0.5) * in/out - 0.5,
    taps clamped to the image."""
    a = -0.75
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for dst in range(out_size):
        src = (dst + 0.5) * in_size / out_size - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            d = abs(src - (base + k))
            weight = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else \
                ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            m[dst, min(max(base + k, 0), in_size - 1)] += weight
    return m


def bicubic_oracle(x, out_h, out_w):
    rows, cols = keys_cubic_matrix(x.shape[2], out_h), keys_cubic_matrix(x.shape[3], out_w)
    return torch.einsum("yh,nchw,xw->ncyx", rows, x.double(), cols)


@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("shape,groups", GN_SHAPES)
def test_reference_group_norm_silu_matches_a_float64_oracle(memory_format, shape, groups):
    """float64 exactly; float32 as torch's float32 GroupNorm computes it, whose rounding the
    one-element groups (3, 8, 1, 1) amplify by rstd = 1/sqrt(eps) = 1000: ~1e-4, hence the
    bf16-like margin; the kernels are judged against the float64 reference instead."""
    weight, bias = random(shape[1], seed=1), random(shape[1], seed=2)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        x = random(shape, dtype, memory_format=memory_format, scale=3.0, offset=2.0)
        norm = group_norm_oracle(x, weight, bias, groups, 1e-6)
        for silu, expected in ((False, norm), (True, silu_oracle(norm))):
            y = reference.group_norm_silu(x, weight, bias, groups, 1e-6, silu)
            assert y.dtype == dtype
            assert_layout(y, x)
            assert_close(y, expected, torch.bfloat16 if dtype == torch.float32 else dtype)


@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_reference_conv3x3_matches_a_float64_oracle(memory_format, case):
    """Against the 3x3 conv written as nine shifted products of the zero-padded activation."""
    n, c_in, c_out, h, w, groups = case
    for dtype in (torch.float64, torch.float32):
        x = random((n, c_in, h, w), dtype, memory_format=memory_format)
        gn_weight, gn_bias = random(c_in, seed=1), random(c_in, seed=2)
        conv_weight = random((c_out, c_in, 3, 3), dtype, seed=3, scale=0.2)
        conv_bias, add = random(c_out, dtype, seed=4), random((n, c_out), dtype, seed=5)
        residual = random((n, c_out, h, w), dtype, seed=6)
        padded = F.pad(silu_oracle(group_norm_oracle(x, gn_weight, gn_bias, groups, 1e-6)),
                       (1, 1, 1, 1))
        expected = sum(torch.einsum("oc,nchw->nohw", conv_weight.double()[:, :, i, j],
                                    padded[:, :, i:i + h, j:j + w])
                       for i in range(3) for j in range(3))
        expected = expected + (conv_bias.double()[:, None, None] + add.double()[:, :, None, None]
                               + residual.double())
        y = reference.group_norm_silu_conv3x3(x, gn_weight, gn_bias, conv_weight, conv_bias,
                                              groups, 1e-6, add, residual)
        assert y.dtype == dtype
        assert_layout(y, x)
        assert_close(y, expected, dtype)


@pytest.mark.parametrize("memory_format", [NCHW, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("sizes", RESIZE_CASES, ids=lambda s: f"{s[0]}to{s[1]}")
def test_reference_bicubic_matches_the_keys_cubic_oracle(memory_format, sizes):
    (h, w), (out_h, out_w) = sizes
    proj_weight, proj_bias = random((3, 5, 1, 1), seed=1), random(3, seed=2)
    for dtype in (torch.float64, torch.float32):
        x = random((2, 5, h, w), dtype, memory_format=memory_format)
        resized = bicubic_oracle(x, out_h, out_w)
        projected = torch.einsum("oc,nchw->nohw", proj_weight.double()[:, :, 0, 0], resized)
        for y, expected in (
                (reference.bicubic_resize(x, out_h, out_w), resized),
                (reference.bicubic_bridge(x, out_h, out_w, proj_weight, proj_bias),
                 projected + proj_bias.double()[:, None, None])):
            assert y.dtype == dtype
            assert_layout(y, x)
            assert_close(y, expected, dtype)


# ---- bad arguments: ValueError on every backend --------------------------------------------------

def gn_call(device, x_shape=(2, 6, 5, 7), channels=6, groups=3, bias_channels=None,
            dtype=torch.float32):
    x = random(x_shape, device=device).to(dtype)
    return (x, random(channels, seed=1, device=device),
            random(bias_channels or channels, seed=2, device=device), groups, 1e-6, True)


def conv_call(device, x_shape=(2, 6, 5, 7), gn_channels=6, groups=3, conv_shape=(4, 6, 3, 3),
              bias_channels=4, add_shape=None, residual_shape=None):
    optional = [random(shape, seed=5, device=device) if shape else None
                for shape in (add_shape, residual_shape)]
    return (random(x_shape, device=device), random(gn_channels, seed=1, device=device),
            random(gn_channels, seed=2, device=device),
            random(conv_shape, seed=3, device=device), random(bias_channels, seed=4, device=device),
            groups, 1e-6, *optional)


def bridge_call(device, x_shape=(2, 6, 5, 7), out_size=(3, 4), proj_shape=(4, 6, 1, 1),
                bias_channels=4):
    return (random(x_shape, device=device), *out_size, random(proj_shape, seed=1, device=device),
            random(bias_channels, seed=2, device=device))


BAD_CALLS = [  # (op, arguments for a device, what the error says)
    ("group_norm_silu", lambda d: gn_call(d, channels=5), r"weight must have shape \(6\)"),
    ("group_norm_silu", lambda d: gn_call(d, bias_channels=12), r"bias must have shape \(6\)"),
    ("group_norm_silu", lambda d: gn_call(d, groups=4),
     r"groups \(4\) must divide the channel count \(6\)"),
    ("group_norm_silu", lambda d: gn_call(d, groups=0), r"groups \(0\) must divide"),
    ("group_norm_silu", lambda d: gn_call(d, x_shape=(6, 5, 7)), "x must be 4-D"),
    ("group_norm_silu", lambda d: gn_call(d, dtype=torch.int32), "x must be floating point"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, conv_shape=(4, 5, 3, 3)),
     r"conv_weight must have shape \(C_out, 6, 3, 3\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, conv_shape=(4, 6, 1, 1)),
     r"conv_weight must have shape \(C_out, 6, 3, 3\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, bias_channels=6),
     r"conv_bias must have shape \(4\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, add_shape=(2, 6)),
     r"add must have shape \(2, 4\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, residual_shape=(2, 4, 5, 6)),
     r"residual must have shape \(2, 4, 5, 7\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, groups=4), r"groups \(4\) must divide"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, gn_channels=4),
     r"weight must have shape \(6\)"),
    ("group_norm_silu_conv3x3", lambda d: conv_call(d, x_shape=(2, 6, 5)), "x must be 4-D"),
    ("bicubic_bridge", lambda d: bridge_call(d, proj_shape=(4, 5, 1, 1)),
     r"proj_weight must have shape \(C_out, 6, 1, 1\)"),
    ("bicubic_bridge", lambda d: bridge_call(d, proj_shape=(4, 6, 3, 3)),
     r"proj_weight must have shape \(C_out, 6, 1, 1\)"),
    ("bicubic_bridge", lambda d: bridge_call(d, bias_channels=6),
     r"proj_bias must have shape \(4\)"),
    ("bicubic_bridge", lambda d: bridge_call(d, out_size=(0, 4)), "out_h and out_w must be positive"),
    ("bicubic_bridge", lambda d: bridge_call(d, x_shape=(2, 6, 0, 7)),
     "x must have a non-empty image"),
    ("bicubic_bridge", lambda d: bridge_call(d, x_shape=(6, 5, 7)), "x must be 4-D"),
    ("bicubic_resize", lambda d: (random((2, 6, 5, 7), device=d), 3, 0),
     "out_h and out_w must be positive"),
    ("bicubic_resize", lambda d: (random((2, 6, 5, 0), device=d), 3, 3),
     "x must have a non-empty image"),
    ("bicubic_resize", lambda d: (random((5, 7), device=d), 3, 3), "x must be 4-D"),
]


def bad_call_cases() -> list:
    """Every bad call on every backend that has the op, on CPU tensors and (gpu) CUDA ones."""
    cases = []
    for device in DEVICES:
        for backend in ops.BACKENDS:
            for index, (op, make_args, message) in enumerate(BAD_CALLS):
                if backend == "triton" and op not in ops.OPS:
                    continue  # bicubic_resize has no Triton kernel of its own
                marks = list(device.marks)
                if backend == "triton" and device.values[0] == "cpu":
                    marks = TRITON_DEVICES[0].marks
                cases.append(pytest.param(device.values[0], backend, op, make_args, message,
                                          id=f"{device.id}-{backend}-{op}-{index}", marks=marks))
    return cases


def backend_entry(backend: str, op: str):
    """The function or op that runs ``op`` on ``backend`` itself, not through the front."""
    if backend == "reference":
        return getattr(reference, op)
    return getattr(torch.ops.adaskip, op if backend == "native" else f"{op}_triton")


@pytest.mark.parametrize("device,backend,op,make_args,message", bad_call_cases())
def test_bad_arguments_raise_value_error_on_every_backend(device, backend, op, make_args, message):
    args = make_args(device)
    with pytest.raises(ValueError, match=message):
        backend_entry(backend, op)(*args)
    if op in ops.OPS:  # and the same through the front function, with the backend forced
        try:
            ops.set_backend(backend)
            with pytest.raises(ValueError, match=message):
                getattr(ops, op)(*args)
        finally:
            ops.set_backend(None)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("backend", ops.BACKENDS)
def test_weights_on_another_device_raise_value_error(backend):
    cases = [
        ("group_norm_silu", gn_call("cpu"), "weight and bias must be on x's device"),
        ("group_norm_silu_conv3x3", conv_call("cpu", add_shape=(2, 4)),
         "conv_weight, conv_bias, add and residual must be on x's device"),
        ("bicubic_bridge", bridge_call("cpu"), "proj_weight and proj_bias must be on x's device"),
    ]
    for op, args, message in cases:
        args = (args[0].cuda(), *args[1:])  # x alone on the GPU
        if op == "group_norm_silu_conv3x3":  # the GroupNorm's parameters too: the conv's are left
            args = (*args[:1], args[1].cuda(), args[2].cuda(), *args[3:])
        with pytest.raises(ValueError, match=message):
            backend_entry(backend, op)(*args)
