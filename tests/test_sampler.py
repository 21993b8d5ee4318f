"""Samplers against diffusers' DDIM and DDPM schedulers as the oracle, time sequences against the
DDIM code's formulas, and batch-split independence of ``sample_images``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adaskip_ext.diffusion import DiffusionConfig, ddim_step, ddpm_mean_variance, ddpm_step
from adaskip_ext.model import AdaptiveUNet
from adaskip_ext.sampling import SamplerConfig, SamplingPlan, sample_images, time_sequence
from adaskip_ext.sampling.step import StepCoefficients
from adaskip_ext.seeds import seed_for
from adaskip_ext.schedule import SkipSchedule

T = 1000
CPU = torch.device("cpu")


@pytest.fixture
def diffusers():
    """The oracle; only the tests that compare against it are skipped without it."""
    return pytest.importorskip("diffusers", reason="diffusers not installed")


@pytest.fixture
def scheduling_ddpm(diffusers):
    """diffusers' DDPM scheduler module, whose ``randn_tensor`` the tests replace to inject noise."""
    from diffusers.schedulers import scheduling_ddpm
    return scheduling_ddpm


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


def ddim_scheduler(diffusers, steps: int, clip_sample: bool = False):
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=T, trained_betas=DiffusionConfig().betas().tolist(), clip_sample=clip_sample,
        set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    scheduler.set_timesteps(steps)
    return scheduler


def ddpm_scheduler(diffusers):
    return diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=DiffusionConfig().betas().tolist(),
                                   variance_type="fixed_large", clip_sample=True)


def plan_and_coefficients(config: SamplerConfig, schedule: SkipSchedule | None = None):
    plan = SamplingPlan.build(config, schedule or SkipSchedule(3), T)
    return plan, StepCoefficients(plan, DiffusionConfig(), CPU)


# ---------------------------------------------------------------------------------------------
# Time sequences (anchors §1.6)


@pytest.mark.parametrize("steps", [1, 10, 20, 50, 100, 250, 1000])
def test_uniform_matches_ddim_code(steps):
    skip = T // steps  # the DDIM code: seq = range(0, num_timesteps, skip)
    assert time_sequence("uniform", steps, T) == list(range(0, T, skip))


@pytest.mark.parametrize("steps", [3, 7, 30, 300, 999])
def test_uniform_runs_exactly_the_requested_steps(diffusers, steps):
    """Where S does not divide T, the DDIM code's range() runs more than S steps (S = 7: 8 steps,
    S = 300: 334); we run S, the set diffusers' "leading" spacing gives."""
    sequence = time_sequence("uniform", steps, T)
    assert len(sequence) == steps
    assert sequence == list(range(0, T, T // steps))[:steps]
    assert sequence == sorted(ddim_scheduler(diffusers, steps).timesteps.tolist())


def test_quad_hand_values():
    # (i * sqrt(800) / 9)^2 = 800 i^2 / 81: 9.9, 39.5, 88.9, 158.0, 246.9, 355.6, 484.0 (483.95), 632.1, 800
    assert time_sequence("quad", 10, T) == [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
    # anchors §1.6
    twenty = time_sequence("quad", 20, T)
    assert twenty[:4] == [0, 2, 8, 19] and twenty[-2:] == [718, 800]
    fifty = time_sequence("quad", 50, T)
    assert fifty[:6] == [0, 0, 1, 2, 5, 8] and fifty[-2:] == [767, 800] and len(set(fifty)) == 49
    hundred = time_sequence("quad", 100, T)
    assert hundred[:6] == [0, 0, 0, 0, 1, 2] and hundred[-2:] == [783, 800] and len(set(hundred)) == 96


@pytest.mark.parametrize("steps", [2, 10, 20, 21, 50, 100, 500])
def test_quad_matches_ddim_code(steps):
    # the DDIM code: seq = [int(s) for s in list(np.linspace(0, np.sqrt(num_timesteps * 0.8), S) ** 2)]
    expected = [int(s) for s in list(np.linspace(0, np.sqrt(T * 0.8), steps) ** 2)]
    assert time_sequence("quad", steps, T) == expected


@pytest.mark.parametrize("kind, steps", [("uniform", 0), ("uniform", 1001), ("quad", 0), ("linear", 10)])
def test_time_sequence_rejects(kind, steps):
    with pytest.raises(ValueError):
        time_sequence(kind, steps, T)


def test_plan_walks_the_sequence_backwards():
    plan = SamplingPlan.build(SamplerConfig("ddim", 5), SkipSchedule(4, c=2.0), T)
    assert plan.timesteps == [800, 600, 400, 200, 0]
    assert plan.previous == [600, 400, 200, 0, -1]
    # c = 2, N = 4: t = 0.801 -> 4 - 4 * 0.199^2 = 3.84 -> 3; 0.601 -> 4 - 4 * 0.399^2 = 3.36 -> 3;
    # 0.401 -> 2.56 -> 2; 0.201 -> 1.45 -> 1; 0.001 -> 0.008 -> 0
    assert plan.skip_levels == [3, 3, 2, 1, 0]


def test_device_schedule_is_alphas_cumprod_with_one_before_zero():
    plan, coefficients = plan_and_coefficients(SamplerConfig("ddim", 10))
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    expected_t = torch.tensor(abar[plan.timesteps], dtype=torch.float32)
    expected_prev = torch.tensor([abar[p] if p >= 0 else 1.0 for p in plan.previous], dtype=torch.float32)
    assert torch.equal(coefficients.abar_t, expected_t)
    assert torch.equal(coefficients.abar_prev, expected_prev)
    assert coefficients.abar_prev[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# DDIM against diffusers.DDIMScheduler (eps from the tiny U-Net at k = 0)


@pytest.mark.parametrize("steps, eta", [(10, 0.0), (50, 0.0), (10, 0.5), (20, 1.0)])
def test_ddim_steps_match_diffusers(diffusers, tiny_model, steps, eta):
    plan, coefficients = plan_and_coefficients(SamplerConfig("ddim", steps, eta))
    scheduler = ddim_scheduler(diffusers, steps)
    assert scheduler.timesteps.tolist() == plan.timesteps
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    x_theirs = x.clone()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            noise = torch.randn(x.shape, generator=generator) if eta > 0 else None
            # one step from the same input
            eps = tiny_model(x, t.expand(2))
            ours = ddim_step(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i], eta, noise)
            theirs = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
            assert relative_error(ours, theirs) < 1e-5, (i, int(t))
            # and the two trajectories run side by side
            eps_theirs = tiny_model(x_theirs, t.expand(2))
            x_theirs = scheduler.step(eps_theirs, t, x_theirs, eta=eta, variance_noise=noise).prev_sample
            x = ours
    assert relative_error(x, x_theirs) < 1e-5


def diffusers_ddim_images(diffusers, model: AdaptiveUNet, plan: SamplingPlan, steps: int, eta: float,
                          batch_size: int, seed: int) -> torch.Tensor:
    """Batch 0 of ``sample_images`` rebuilt with diffusers: x_T, then one noise draw per step, all
    from the generator seeded by (seed, batch), as the sampler documents."""
    scheduler = ddim_scheduler(diffusers, steps)
    generator = torch.Generator().manual_seed(seed_for(seed, 0))
    shape = (batch_size, 3, 8, 8)
    x = torch.randn(shape, generator=generator)
    with torch.no_grad():
        for t, k in zip(scheduler.timesteps, plan.skip_levels):
            eps = model(x, t.expand(batch_size), skip_levels=k)
            noise = torch.randn(shape, generator=generator) if eta > 0 else None
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    return x.clamp(-1, 1)


@pytest.mark.parametrize("eta, c", [(0.0, 0.0), (0.5, 0.0), (0.0, 2.0), (1.0, 3.0)])
def test_sample_images_ddim_matches_diffusers_loop(diffusers, tiny_model, eta, c):
    steps, seed = 10, 5
    schedule = SkipSchedule(3, c=c)
    plan = SamplingPlan.build(SamplerConfig("ddim", steps, eta), schedule, T)
    if c > 0:
        assert len(set(plan.skip_levels)) == 3  # the loop really switches k
    ours = sample_images(tiny_model, 3, sampler="ddim", steps=steps, eta=eta, clip_x0=False,
                         schedule=schedule, batch_size=3, seed=seed, progress=False)
    theirs = diffusers_ddim_images(diffusers, tiny_model, plan, steps, eta, 3, seed)
    assert relative_error(ours, theirs) < 1e-5


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_clipped_x0_matches_diffusers_clip_sample(diffusers, tiny_model, eta):
    steps = 10
    plan, coefficients = plan_and_coefficients(SamplerConfig("ddim", steps, eta, clip_x0=True))
    scheduler = ddim_scheduler(diffusers, steps, clip_sample=True)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    clipped_somewhere = False
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            noise = torch.randn(x.shape, generator=generator) if eta > 0 else None
            eps = tiny_model(x, t.expand(2))
            unclipped = ddim_step(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i], eta, noise)
            ours = ddim_step(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i], eta, noise, True)
            theirs = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
            assert relative_error(ours, theirs) < 1e-5, (i, int(t))
            clipped_somewhere |= relative_error(unclipped, theirs) > 1e-3
            x = ours
    assert clipped_somewhere  # the test exercised the clip


# ---------------------------------------------------------------------------------------------
# DDPM against diffusers.DDPMScheduler(variance_type="fixed_large", clip_sample=True)


def test_alphas_cumprod_match_diffusers(diffusers):
    theirs = ddpm_scheduler(diffusers).alphas_cumprod  # float32 cumprod of float32 betas
    ours = torch.tensor(DiffusionConfig().alphas_cumprod(), dtype=torch.float32)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def ddpm_cases():
    return {
        "full": (SamplerConfig("ddpm", 1000), lambda s: s.set_timesteps(1000)),
        "uniform-10": (SamplerConfig("ddpm", 10), lambda s: s.set_timesteps(10)),
        "quad-10": (SamplerConfig("ddpm", 10, time_seq="quad"),
                    lambda s: s.set_timesteps(timesteps=list(reversed(time_sequence("quad", 10, T))))),
    }


@pytest.mark.parametrize("case", sorted(ddpm_cases()))
def test_ddpm_mean_and_variance_match_diffusers(diffusers, scheduling_ddpm, monkeypatch, case):
    config, set_timesteps = ddpm_cases()[case]
    plan, coefficients = plan_and_coefficients(config)
    scheduler = ddpm_scheduler(diffusers)
    # Share our ᾱ table: β_t = 1 - ᾱ_t / ᾱ_{t-1} cancels to ~1e-4 at small t, where the two float32
    # tables' 3e-7 disagreement (checked above) would become 5e-4. The step maths is what's compared.
    scheduler.alphas_cumprod = torch.tensor(DiffusionConfig().alphas_cumprod(), dtype=torch.float32)
    set_timesteps(scheduler)
    assert scheduler.timesteps.tolist() == plan.timesteps
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kwargs: torch.zeros(shape))
    generator = torch.Generator().manual_seed(2)
    clipped = 0
    for i, t in enumerate(scheduler.timesteps):
        x = 2 * torch.randn(2, 3, 4, 4, generator=generator)
        eps = torch.randn(x.shape, generator=generator)
        mean, variance = ddpm_mean_variance(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i])
        assert relative_error(mean, scheduler.step(eps, t, x).prev_sample) < 1e-5, int(t)
        expected_variance = scheduler._get_variance(t)
        assert abs(variance - expected_variance) <= 1e-5 * expected_variance, int(t)
        abar = coefficients.abar_t[i]
        clipped += bool((((x - (1 - abar).sqrt() * eps) / abar.sqrt()).abs() > 1).any())
    assert clipped > 0  # the x0 clipping was exercised


def test_ddpm_step_adds_scaled_noise_except_last(diffusers, scheduling_ddpm, monkeypatch):
    plan, coefficients = plan_and_coefficients(SamplerConfig("ddpm", 10))
    scheduler = ddpm_scheduler(diffusers)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(3)
    current = {}
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kwargs: current["noise"])
    for i, t in enumerate(scheduler.timesteps):
        x, eps, noise = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
        current["noise"] = noise
        ours = ddpm_step(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i], noise,
                         coefficients.timesteps[i] == 0)
        assert relative_error(ours, scheduler.step(eps, t, x).prev_sample) < 1e-5, int(t)
        mean, _ = ddpm_mean_variance(x, eps, coefficients.abar_t[i], coefficients.abar_prev[i])
        assert torch.equal(ours, mean) == (int(t) == 0)


def test_sample_images_ddpm_matches_diffusers_loop(diffusers, scheduling_ddpm, tiny_model, monkeypatch):
    steps, seed, batch = 10, 4, 2
    ours = sample_images(tiny_model, batch, sampler="ddpm", steps=steps, batch_size=batch, seed=seed,
                         progress=False)
    scheduler = ddpm_scheduler(diffusers)
    scheduler.set_timesteps(steps)
    current = {}
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kwargs: current["noise"])
    generator = torch.Generator().manual_seed(seed_for(seed, 0))
    x = torch.randn(batch, 3, 8, 8, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = tiny_model(x, t.expand(batch))
            current["noise"] = torch.randn(x.shape, generator=generator)  # drawn every step
            x = scheduler.step(eps, t, x).prev_sample
    assert relative_error(ours, x.clamp(-1, 1)) < 1e-5


def test_repeated_timestep_is_a_no_op():
    """quad sequences repeat t = 0; a step from ᾱ to the same ᾱ must leave x unchanged."""
    generator = torch.Generator().manual_seed(4)
    x, eps, noise = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
    abar = torch.tensor(0.9999, dtype=torch.float32)
    torch.testing.assert_close(ddim_step(x, eps, abar, abar, 0.0, None), x)
    torch.testing.assert_close(ddim_step(x, eps, abar, abar, 1.0, noise), x)
    mean, variance = ddpm_mean_variance(x.clamp(-0.9, 0.9), eps * 0.01, abar, abar)
    torch.testing.assert_close(mean, x.clamp(-0.9, 0.9))
    assert variance == 0


def test_ddim_clips_x0_by_default(tiny_model):
    """The default is diffusers' clip_sample; clip_x0=False is the DDIM code's update."""
    assert SamplerConfig().clip_x0
    options = dict(sampler="ddim", steps=5, batch_size=2, seed=0, progress=False)
    default = sample_images(tiny_model, 2, **options)
    assert torch.equal(default, sample_images(tiny_model, 2, clip_x0=True, **options))
    assert not torch.equal(default, sample_images(tiny_model, 2, clip_x0=False, **options))


# ---------------------------------------------------------------------------------------------
# Batch-split independence


SAMPLING_PATHS = {
    "ddim": dict(sampler="ddim", eta=0.0),
    "ddim-eta": dict(sampler="ddim", eta=0.5),
    "ddpm": dict(sampler="ddpm"),
}


def draw(model, num_samples, path, **kwargs):
    options = dict(steps=5, schedule=SkipSchedule(3, c=2.0), batch_size=4, seed=7, progress=False)
    options.update(SAMPLING_PATHS[path])
    options.update(kwargs)
    return sample_images(model, num_samples, **options)


@pytest.mark.parametrize("path", sorted(SAMPLING_PATHS))
def test_batches_are_independent_of_how_the_work_is_split(tiny_model, path):
    whole = draw(tiny_model, 12, path)
    assert whole.shape == (12, 3, 8, 8)
    pieces = torch.cat([draw(tiny_model, 12, path, batches=[b]) for b in range(3)])
    assert torch.equal(whole, pieces)
    assert torch.equal(draw(tiny_model, 12, path, batches=[2, 0]), torch.cat([whole[8:], whole[:4]]))
    assert not torch.equal(whole[:4], whole[4:8])  # each batch has its own noise


@pytest.mark.parametrize("path", sorted(SAMPLING_PATHS))
def test_partial_last_batch_keeps_the_first_rows(tiny_model, path):
    five, eight = draw(tiny_model, 5, path), draw(tiny_model, 8, path)
    assert five.shape == (5, 3, 8, 8)
    assert torch.equal(five, eight[:5])
    assert torch.equal(draw(tiny_model, 5, path, batches=[1]), eight[4:5])


@pytest.mark.parametrize("path", sorted(SAMPLING_PATHS))
def test_seeds_differ(tiny_model, path):
    assert torch.equal(draw(tiny_model, 4, path, seed=1), draw(tiny_model, 4, path, seed=1))
    assert not torch.equal(draw(tiny_model, 4, path, seed=1), draw(tiny_model, 4, path, seed=2))


def test_stochastic_paths_use_their_noise(tiny_model):
    """η > 0 and DDPM really add noise: they differ from deterministic DDIM from the same x_T."""
    ddim = draw(tiny_model, 4, "ddim")
    assert not torch.equal(ddim, draw(tiny_model, 4, "ddim-eta"))
    assert not torch.equal(ddim, draw(tiny_model, 4, "ddpm"))


def test_other_dtype_leaves_the_callers_model_alone(tiny_model):
    float32 = draw(tiny_model, 4, "ddim")
    float64 = draw(tiny_model, 4, "ddim", dtype=torch.float64)
    assert next(tiny_model.parameters()).dtype == torch.float32
    torch.testing.assert_close(float64, float32, rtol=1e-4, atol=1e-4)


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError):
        sample_images(tiny_model, 0, progress=False)
    with pytest.raises(ValueError):
        sample_images(tiny_model, 4, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="eta"):
        sample_images(tiny_model, 4, eta=1.5, progress=False)
    with pytest.raises(ValueError, match="sampler"):
        sample_images(tiny_model, 4, sampler="euler", progress=False)
    for batches in ([2], [-1]):  # 5 samples in batches of 4: only batches 0 and 1 exist
        with pytest.raises(ValueError, match="batch indices"):
            sample_images(tiny_model, 5, batch_size=4, steps=2, batches=batches, progress=False)
