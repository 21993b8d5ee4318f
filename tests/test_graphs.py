"""CUDA graphs of the sampler step (``sampling/runners.py``): replays equal eager steps; CPU stays eager.

The GPU cases compare fp32 with TF32 off at 1e-6 relative per step, and state the tolerance with
TF32 on. Without a GPU only the eager fallback is checked.
"""
from __future__ import annotations

import pytest
import torch

from adaskip_ext.sampling import runners
from adaskip_ext.diffusion import DiffusionConfig
from adaskip_ext.model import UNetConfig
from adaskip_ext.sampling import SamplingPlan, sample_images
from adaskip_ext.schedule import SkipSchedule
from adaskip_ext.sampling.plan import SamplerConfig
from adaskip_ext.sampling.step import StepCoefficients, sampler_step

from conftest import build_model, perturb_

CUDA = torch.cuda.is_available()


def on_gpu(test):
    """Marks ``test`` as a GPU test that skips without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="no CUDA device")(test))

SAMPLERS = [SamplerConfig("ddim", 10), SamplerConfig("ddim", 10, eta=0.5), SamplerConfig("ddpm", 10)]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def plan_of(config: SamplerConfig, num_levels: int, c: float = 2.0) -> SamplingPlan:
    """A plan whose steps run every k of the model at least once (c = 2 over 10 steps)."""
    plan = SamplingPlan.build(config, SkipSchedule(num_levels, c=c), 1000)
    assert len(set(plan.skip_levels)) > 1
    return plan


def test_cpu_runs_eager_and_graphs_flag_changes_nothing(tiny_model):
    assert isinstance(runners.runner_for(tiny_model, SAMPLERS[0], None, [0], 2, torch.float32,
                                       torch.device("cpu")), runners.EagerRunner)
    options = dict(sampler="ddpm", steps=6, batch_size=3, schedule=SkipSchedule(3, c=2.0), progress=False)
    with_flag = sample_images(tiny_model, 5, graphs=True, **options)
    without = sample_images(tiny_model, 5, graphs=False, **options)
    assert torch.equal(with_flag, without)


def test_step_graphs_refuse_a_cpu_device(tiny_model):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, got cpu"):
        runners.GraphRunner(tiny_model, SAMPLERS[0], 2, torch.float32, torch.device("cpu"))


def cuda_model(config: UNetConfig, skip_type: str, dtype: torch.dtype = torch.float32):
    model = build_model(config, skip_type)
    perturb_(model, scale=0.05, seed=3)
    return model.to("cuda", dtype)


@pytest.mark.parametrize("config", SAMPLERS, ids=lambda c: f"{c.sampler}-eta{c.eta}")
@pytest.mark.parametrize("preset,skip_type", [("tiny", "zero"), ("ddpm_cifar10", "interpolate")])
@on_gpu
def test_each_replayed_step_equals_the_eager_step(config, preset, skip_type, no_tf32):
    model = cuda_model(getattr(UNetConfig, preset)(), skip_type)
    plan = plan_of(config, model.num_levels)
    schedule = StepCoefficients(plan, DiffusionConfig(), torch.device("cuda"))
    batch = 3
    steps = runners.runner_for(model, config, schedule, set(plan.skip_levels), batch, torch.float32,
                             torch.device("cuda"))
    assert isinstance(steps, runners.GraphRunner) and set(steps.graphs) == set(plan.skip_levels)
    c = model.config
    shape = (batch, c.in_channels, c.resolution, c.resolution)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).cuda()
    for i, k in enumerate(plan.skip_levels):
        replay_generator = torch.Generator().manual_seed(i)
        replayed = steps(i, k, x, replay_generator).clone()
        eager_generator = torch.Generator().manual_seed(i)
        noise = torch.randn(shape, generator=eager_generator).cuda() if config.stochastic else None
        with torch.no_grad():
            expected = sampler_step(model, config, x, schedule.rows[i], k, noise, torch.float32)
        assert relative_error(replayed, expected) <= 1e-6, (i, k)
        # the same draws were consumed from both generators
        assert torch.equal(torch.randn(2, generator=replay_generator), torch.randn(2, generator=eager_generator))
        x = expected


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@on_gpu
def test_whole_runs_match_eager(tf32, no_tf32):
    """Graph and eager runs of DDPM and DDIM: 1e-5 in full fp32 (10 steps of per-step ~1e-7
    differences); with TF32 on, both sides round matmuls and convs to 10 mantissa bits in
    different places, so 1e-3."""
    if tf32:
        torch.set_float32_matmul_precision("high")
    model = cuda_model(UNetConfig.ddpm_cifar10(), "zero")
    for config in SAMPLERS:
        options = dict(sampler=config.sampler, steps=config.steps, eta=config.eta, batch_size=4,
                       schedule=SkipSchedule(model.num_levels, c=2.0), progress=False)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
            replayed = sample_images(model, 6, graphs=True, **options)  # a partial last batch
            eager = sample_images(model, 6, graphs=False, **options)
        assert relative_error(replayed, eager) <= (1e-3 if tf32 else 1e-5), config


@on_gpu
def test_bf16_replays_match_eager():
    model = cuda_model(UNetConfig.ddpm_cifar10(), "duplicate", torch.bfloat16)
    options = dict(sampler="ddim", steps=10, batch_size=2, dtype=torch.bfloat16,
                   schedule=SkipSchedule(model.num_levels, c=2.0), progress=False)
    replayed = sample_images(model, 2, graphs=True, **options)
    eager = sample_images(model, 2, graphs=False, **options)
    assert relative_error(replayed, eager) <= 1e-2


@on_gpu
def test_graphs_are_kept_until_the_setting_changes():
    model = cuda_model(UNetConfig.tiny(), "zero")
    config, device = SAMPLERS[0], torch.device("cuda")
    first = runners.graphs_for(model, config, [0, 1], 4, torch.float32, device)
    assert runners.graphs_for(model, config, [1], 4, torch.float32, device) is first
    assert first.report.graphs == 2 and first.report.seconds > 0 and first.report.memory_bytes >= 0
    runners.graphs_for(model, config, [2], 4, torch.float32, device)
    assert first.report.graphs == 3  # a new k joins the same pool
    assert runners.graphs_for(model, config, [0], 8, torch.float32, device) is not first  # batch size
    assert runners.graphs_for(model, SAMPLERS[2], [0], 8, torch.float32, device) is not first  # sampler
    model.to(torch.bfloat16)  # parameters replaced in place: capture anew
    bf16 = runners.graphs_for(model, config, [0], 8, torch.bfloat16, device)
    assert bf16.dtype == torch.bfloat16 and set(bf16.graphs) == {0}
