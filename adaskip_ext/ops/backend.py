"""The one place that decides which implementation each fused op runs on.

Per op and device type: ``native`` (the C++/CUDA extension), ``triton`` or ``reference``
(plain PyTorch). ``ADASKIP_BACKEND=native|triton|reference`` or ``set_backend(...)`` forces one;
a forced backend that cannot run the op is an error, not a silent fallback.
"""
from __future__ import annotations

import os
import warnings

import torch._dynamo

from . import native
from .triton_ops import triton_usable

BACKENDS = ("native", "triton", "reference")
OPS = ("group_norm_silu", "group_norm_silu_conv3x3", "bicubic_bridge")
# Preference when nothing is forced, for every op and device: the extension first. Measured on an
# H200 (benchmarks/results/h200-2026-11-27): the native fused conv (the CUDA GroupNorm+SiLU kernel
# + cuDNN) ran 0.9-2.5x the PyTorch composition's speed, the Triton implicit-GEMM conv only
# 0.12-0.57x of the native one, so Triton is the fallback where the extension is not built.
PREFERENCE = ("native", "triton", "reference")

_forced: str | None = None
_warned: set[str] = set()  # the one-time warnings already given
# Decisions already taken, keyed by everything they depend on; the ops are called per block.
_choices: dict[tuple[str, str, str | None, str | None], str] = {}


def _check_name(backend: str, source: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def set_backend(backend: str | None) -> None:
    """Force every op onto ``backend`` (``native``, ``triton`` or ``reference``); None: automatic."""
    global _forced
    _forced = None if backend is None else _check_name(backend, "set_backend")


def forced_backend() -> str | None:
    """The backend forced by ``set_backend`` or else ``$ADASKIP_BACKEND``; None when automatic."""
    if _forced is not None:
        return _forced
    value = os.environ.get("ADASKIP_BACKEND", "").strip()
    return _check_name(value, "ADASKIP_BACKEND") if value else None


def triton_version() -> str | None:
    """Triton's version, or None when it is not installed (imports it)."""
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def available(op: str, backend: str, device_type: str) -> bool:
    """Whether ``backend`` can run ``op`` on tensors of ``device_type`` in this process."""
    if backend == "native":
        return native.has_kernel(op, device_type)
    if backend == "triton":
        return triton_usable(device_type)
    return True


@torch._dynamo.assume_constant_result
def choose(op: str, device_type: str) -> str:
    """The backend ``op`` runs on for ``device_type`` ('cpu', 'cuda', ...).

    Under ``torch.compile`` the answer is taken once, at tracing: recompile after changing it.
    """
    forced = forced_backend()
    key = (op, device_type, forced, os.environ.get("TRITON_INTERPRET"))
    backend = _choices.get(key)
    if backend is None:
        backend = _choices[key] = _decide(op, device_type, forced)
    return backend


def _decide(op: str, device_type: str, forced: str | None) -> str:
    if forced is not None:
        if not available(op, forced, device_type):
            raise RuntimeError(f"adaskip: backend {forced!r} cannot run {op} on {device_type} "
                               f"({reason_unavailable(forced, device_type)})")
        return forced
    _warn_once_if_unbuilt(device_type)
    return next(b for b in PREFERENCE if available(op, b, device_type))


def reason_unavailable(backend: str, device_type: str) -> str:
    """Why ``backend`` cannot run on ``device_type``, in a few words."""
    if backend == "native":
        if native.LOAD_ERROR is not None:
            return f"the extension did not load: {native.LOAD_ERROR}"
        if device_type == "cuda":
            return f"the extension has no CUDA kernels: {cuda_unbuilt_reason()}"
        return f"the extension was built without {device_type.upper()} kernels"
    if backend == "triton":
        return "Triton runs CUDA tensors only (CPU tensors under TRITON_INTERPRET=1)"
    return "available"


def cuda_unbuilt_reason() -> str:
    """Why this build has no CUDA kernels, as the build recorded it."""
    return native.build_info().get("cuda_reason") or "the build recorded no reason"


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=6)


def _warn_once_if_unbuilt(device_type: str) -> None:
    if native.LOAD_ERROR is not None:
        _warn_once("unbuilt", f"adaskip: the compiled extension is not available "
                              f"({native.LOAD_ERROR}); fused ops run on the PyTorch reference. "
                              "Build it with `pip install --no-build-isolation -e .` in the clone.")
    elif device_type == "cuda" and not native.has_kernel("group_norm_silu", "cuda"):
        fallback = "Triton" if triton_usable("cuda") else "the PyTorch reference"
        _warn_once("cpu-only", f"adaskip: this build has CPU kernels only "
                               f"({cuda_unbuilt_reason()}); CUDA tensors run on {fallback}. For "
                               f"CUDA kernels install a CUDA toolkit of torch's CUDA major version "
                               f"({torch.version.cuda}), then reinstall "
                               "(`pip install --no-build-isolation -e .`).")
