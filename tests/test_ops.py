"""The native (C++ CPU and CUDA) kernels against the pure-PyTorch reference ops.

CPU cases need the extension built by ``pip install --no-build-isolation -e .`` and fail without it;
``gpu`` cases run the CUDA kernels and skip without a device. Outputs are NaN-poisoned by the
extension (conftest sets ADASKIP_POISON_OUTPUTS=1), so an unwritten element fails.
"""
from __future__ import annotations

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


def test_group_norm_silu_rejects_bad_groups():
    x = random((1, 6, 2, 2))
    with pytest.raises(RuntimeError, match="groups \\(4\\) must divide the channel count \\(6\\)"):
        torch.ops.adaskip.group_norm_silu(x, torch.ones(6), torch.zeros(6), 4, 1e-6, True)


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
        assert ops.choose(op, "cpu") == "native"


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
        if built:  # measured faster than the Triton kernels (benchmarks/results/GPU.md)
            assert ops.choose(op, "cuda") == "native", op
        else:
            assert ops.choose(op, "cuda") != "native", op


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
        assert ops.choose("group_norm_silu", "cpu") == "native"


CPU_KERNELS = {"x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2+FMA)", "baseline x86-64"}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the CPU clones are x86-64 only")
def test_cpu_kernels_names_the_clone_this_cpu_runs():
    name = ops.cpu_kernels()
    assert name in CPU_KERNELS | {"AVX2"}, name  # AVX2: a GCC < 12 build's clone
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert name == "x86-64-v4 (AVX-512)"


def test_set_backend_forces_and_validates(monkeypatch):
    x, weight, bias = random((1, 4, 3, 3)), random(4, seed=1), random(4, seed=2)
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
    assert ops.choose("group_norm_silu", "cpu") == "native"


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


def test_front_functions_match_reference_on_every_available_cpu_backend():
    x = random((2, 8, 6, 6))
    w8, b8 = random(8, seed=1), random(8, seed=2)
    conv_weight, conv_bias = random((4, 8, 3, 3), seed=3, scale=0.2), random(4, seed=4)
    proj_weight, proj_bias = random((4, 8, 1, 1), seed=5), random(4, seed=6)
    expected = (reference.group_norm_silu(x, w8, b8, 4, 1e-6, True),
                reference.group_norm_silu_conv3x3(x, w8, b8, conv_weight, conv_bias, 4, 1e-6,
                                                  None, None),
                reference.bicubic_bridge(x, 3, 3, proj_weight, proj_bias))
    for backend in ops.BACKENDS:
        if not ops.available("group_norm_silu", backend, "cpu"):
            continue
        try:
            ops.set_backend(backend)
            actual = (ops.group_norm_silu(x, w8, b8, 4, 1e-6),
                      ops.group_norm_silu_conv3x3(x, w8, b8, conv_weight, conv_bias, 4, 1e-6),
                      ops.bicubic_bridge(x, 3, 3, proj_weight, proj_bias))
        finally:
            ops.set_backend(None)
        for a, e in zip(actual, expected):
            assert_close(a, e, torch.float32)


def test_reference_matches_the_plain_torch_composition():
    x = random((2, 8, 6, 6))
    weight, bias = random(8, seed=1), random(8, seed=2)
    expected = F.silu(F.group_norm(x, 4, weight, bias, 1e-6))
    assert torch.equal(reference.group_norm_silu(x, weight, bias, 4, 1e-6, True), expected)
