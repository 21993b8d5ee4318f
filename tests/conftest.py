"""Shared fixtures: small seeded models and helpers to perturb parameters. Nothing here needs a GPU."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

# Kernels' outputs start as NaN, so an element a kernel forgets to write fails (read once, by the
# extension's first allocation). Without CUDA, Triton kernels run in the interpreter on CPU
# tensors; Triton reads this when a kernel is decorated, so it is set before any import of them.
os.environ["ADASKIP_POISON_OUTPUTS"] = "1"
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from adaskip_ext.checkpoints import save_model
from adaskip_ext.model import AdaptiveUNet, UNetConfig

# These models are tiny: extra intra-op threads only add synchronisation, and on a loaded machine
# (e.g. a training job on the other core) spinning threads slow each op down a hundredfold.
torch.set_num_threads(1)
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n`: one core per worker, CLI subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_model(config: UNetConfig, skip_type: str = "zero", seed: int = 0) -> AdaptiveUNet:
    """A model with seeded default initialisation, in eval mode (dropout off)."""
    torch.manual_seed(seed)
    return AdaptiveUNet(config, skip_type).eval()


@torch.no_grad()
def perturb_(module: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    """Add seeded Gaussian noise to every parameter of ``module`` in place.

    Used to move GroupNorm affines off their (1, 0) defaults, to make zero-initialised bridges
    non-zero, and to check which parameters an output depends on.
    """
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


@pytest.fixture(scope="session")
def tiny_c2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh tiny model (seed 0, skip type zero) saved with c = 2 as its sampling default."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(AdaptiveUNet(UNetConfig.tiny(), "zero"), path, {"schedule": {"c": 2.0}})
    return path


@pytest.fixture
def tiny_config() -> UNetConfig:
    return UNetConfig.tiny()


@pytest.fixture
def make_model() -> Callable[..., AdaptiveUNet]:
    """``make_model(config, skip_type="zero", seed=0)`` -> a seeded eval-mode model."""
    return build_model


@pytest.fixture
def tiny_model(tiny_config: UNetConfig) -> AdaptiveUNet:
    """The tiny preset (3 levels, 8×8 RGB, attention at 4×4), skip type zero, norms perturbed."""
    model = build_model(tiny_config, "zero")
    perturb_(model, scale=0.05, seed=3)
    return model


def random_inputs(config: UNetConfig, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (batch, C, R, R) standard normal; t: (batch,) integer timesteps spread over [0, 1000)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, config.resolution, config.resolution, generator=generator)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    t[0] = 999  # always include the noisiest timestep (largest sinusoid angles)
    return x, t


@pytest.fixture
def no_tf32():
    """Keep CUDA convolutions and matmuls in full fp32 so fp32 results compare at ~1e-5 (APIs that
    exist from torch 2.4 to 2.14; `torch.backends.cuda.matmul.allow_tf32` breaks on 2.11)."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
