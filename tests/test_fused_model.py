"""The model's one switch: fused ops on and off give the same outputs and gradients."""
from __future__ import annotations

import copy

import pytest
import torch

from adaskip_ext import ops
from adaskip_ext.model import SKIP_TYPES, UNetConfig, preferred_memory_format

from conftest import build_model, perturb_, random_inputs


def fused_and_plain(config: UNetConfig, skip_type: str):
    model = build_model(config, skip_type)
    perturb_(model, scale=0.05, seed=3)  # also makes the zero-initialised bridges non-zero
    plain = copy.deepcopy(model).use_fused_ops(False)
    return model.use_fused_ops(True), plain


def test_the_switch_routes_every_fused_op(tiny_config, monkeypatch):
    """A new model runs its norms, norm+convs and bridges through ``ops`` (for every k);
    ``use_fused_ops(False)`` runs none of them."""
    calls = {op: 0 for op in ops.OPS}

    def counting(op: str):
        function = getattr(ops, op)

        def counted(*args, **kwargs):
            calls[op] += 1
            return function(*args, **kwargs)
        return counted

    for op in ops.OPS:
        monkeypatch.setattr(ops, op, counting(op))
    model = build_model(tiny_config, "interpolate")
    x, t = random_inputs(tiny_config)
    with torch.no_grad():
        for k in range(tiny_config.num_levels):
            model(x, t, skip_levels=k)
        assert all(calls.values()), calls
        model.use_fused_ops(False)
        before = dict(calls)
        for k in range(tiny_config.num_levels):
            model(x, t, skip_levels=k)
    assert calls == before


TRITON_ON_CPU = pytest.mark.skipif(not ops.available("group_norm_silu", "triton", "cpu"),
                                   reason="Triton runs CPU tensors only under TRITON_INTERPRET=1")
BACKEND_CASES = [(skip_type, backend) for skip_type in SKIP_TYPES
                 for backend in ("native", "reference")] + [
    # The interpreter takes ~20 s a model; the interpolate skip runs all three ops.
    pytest.param("interpolate", "triton", marks=[TRITON_ON_CPU, pytest.mark.slow]),
]


@pytest.mark.parametrize("skip_type,backend", BACKEND_CASES)
def test_fused_matches_plain_for_every_k(tiny_config, skip_type, backend):
    fused, plain = fused_and_plain(tiny_config, skip_type)
    x, t = random_inputs(tiny_config)
    try:
        ops.set_backend(backend)
        with torch.no_grad():
            for k in range(tiny_config.num_levels):
                expected = plain(x, t, skip_levels=k)
                actual = fused(x, t, skip_levels=k)
                torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    finally:
        ops.set_backend(None)


@pytest.mark.parametrize("skip_type", SKIP_TYPES)
@pytest.mark.parametrize("fused_ops", [True, False])
def test_channels_last_model_matches_nchw(tiny_config, skip_type, fused_ops):
    """The layout the sampler uses on CUDA, here on CPU: weights (and so activations)
    channels_last give the NCHW model's outputs for every k."""
    model, _ = fused_and_plain(tiny_config, skip_type)
    model.use_fused_ops(fused_ops)
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert channels_last.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x, t = random_inputs(tiny_config)
    with torch.no_grad():
        for k in range(tiny_config.num_levels):
            torch.testing.assert_close(channels_last(x, t, skip_levels=k), model(x, t, skip_levels=k),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("skip_type", ["zero", "interpolate"])
def test_fused_training_gradients_match_plain(tiny_config, skip_type):
    config = UNetConfig.from_dict({**tiny_config.to_dict(), "dropout": 0.1})
    fused, plain = fused_and_plain(config, skip_type)
    x, t = random_inputs(config)
    for k in range(config.num_levels):
        losses = []
        for model in (fused, plain):
            model.train()
            torch.manual_seed(0)  # the same dropout masks in both
            model.zero_grad()
            loss = model(x, t, skip_levels=k).square().mean()
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
        for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
            if b.grad is None:
                assert a.grad is None or not a.grad.any(), name
                continue
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", [None, "native", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_matches_plain_on_cuda(backend, dtype, no_tf32):
    """The whole CIFAR-10 network on the GPU: fused CUDA/Triton kernels in the sampler's layout
    (channels_last) against plain PyTorch in NCHW."""
    config = UNetConfig.ddpm_cifar10()
    fused, plain = fused_and_plain(config, "interpolate")
    cuda = torch.device("cuda")
    fused = fused.to(cuda, dtype, memory_format=preferred_memory_format(cuda, 3))
    plain = plain.to(cuda, dtype)
    x, t = random_inputs(config, batch=3)
    x, t = x.to("cuda", dtype), t.to("cuda")
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    try:
        ops.set_backend(backend)
        with torch.no_grad():
            for k in range(config.num_levels):
                expected = plain(x, t, skip_levels=k).float()
                actual = fused(x, t, skip_levels=k).float()
                error = (actual - expected).norm() / expected.norm()
                assert error < tolerance, (k, error.item())
    finally:
        ops.set_backend(None)
