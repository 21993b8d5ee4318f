"""The sampling loop: DDPM ancestral or DDIM steps, running the model at k(t_i) at each step.

No I/O and no graph capture here (``runners.py`` runs the steps). Randomness: samples are
numbered globally and cut into batches of ``batch_size``; batch b draws x_T and then each step's
noise from a CPU generator seeded by (seed, b), always at the full ``(batch_size, C, H, W)``
shape, so the same seed and batch size give the same images whatever the device, device count or
execution path.
"""
from __future__ import annotations

import copy
import weakref
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..diffusion import DiffusionConfig
from ..model import AdaptiveUNet, preferred_memory_format
from ..schedule import SkipSchedule
from ..seeds import seed_for
from .plan import SamplerConfig, SamplerName, SamplingPlan, TimeSequence, checkpoint_schedule
from .runners import StepRunner, runner_for
from .step import StepCoefficients

# Reduced-precision copies of caller models, per (dtype, device), with the parameter versions
# they were made from: a second run reuses the copy (and so its CUDA graphs).
_copies: "weakref.WeakKeyDictionary[AdaptiveUNet, dict[tuple, tuple[tuple, AdaptiveUNet]]]" = \
    weakref.WeakKeyDictionary()


def _source_version(model: AdaptiveUNet) -> tuple:
    """Changes when any parameter or buffer is updated in place or replaced."""
    tensors = (*model.parameters(), *model.buffers())
    return tuple((t.data_ptr(), t._version) for t in tensors)


def prepare_model(model: AdaptiveUNet, device: torch.device, dtype: torch.dtype,
                  batch_size: int) -> AdaptiveUNet:
    """The model as a run on ``device`` in ``dtype`` at ``batch_size`` needs it, in eval mode.

    In ``dtype`` already: moved to ``device`` in place, its 4-D weights laid out as
    ``preferred_memory_format`` says (the values do not change). Otherwise: a copy in ``dtype``,
    kept per (model, dtype, device) until the model's parameters change, so the caller's model
    stays as it was. Idempotent: preparing a prepared model moves nothing (its tensors keep their
    addresses, so CUDA graphs captured on it stay valid).
    """
    layout = preferred_memory_format(device, batch_size)
    if next(model.parameters()).dtype == dtype:
        return model.to(device, memory_format=layout).eval()
    kept = _copies.setdefault(model, {})
    version = _source_version(model)
    entry = kept.get((dtype, device))
    if entry is None or entry[0] != version:
        entry = kept[(dtype, device)] = (version, copy.deepcopy(model).to(dtype=dtype))
    return entry[1].to(device, memory_format=layout).eval()


def sample_batch(
    runner: StepRunner,
    skip_levels: list[int],
    generator: torch.Generator,
    shape: tuple[int, int, int, int],
    device: torch.device,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """One batch of samples, not yet clipped: ``shape`` = (B, C, R, R), float32 on ``device``.

    x_T, then each step's noise, come from ``generator``; step i runs at k = ``skip_levels[i]``.
    """
    x = torch.randn(shape, generator=generator).to(device)
    for i, k in enumerate(skip_levels):
        x = runner(i, k, x, generator)
        if on_step is not None:
            on_step()
    return x.clone()  # a graph's static buffer is overwritten by the next batch


@torch.no_grad()
def run_plan(
    model: AdaptiveUNet,
    plan: SamplingPlan,
    config: SamplerConfig,
    diffusion: DiffusionConfig,
    num_samples: int,
    batch_size: int,
    seed: int,
    batches: list[int] | None,
    device: torch.device,
    dtype: torch.dtype,
    graphs: bool,
    progress: bool,
) -> torch.Tensor:
    """The samples of ``plan`` (``sample_images``' work once the plan is built): (n, C, R, R) in
    [-1, 1] for the rows of ``batches`` (default: all ``num_samples``)."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError("num_samples and batch_size must be positive")
    num_batches = -(-num_samples // batch_size)
    batches = list(range(num_batches)) if batches is None else batches
    if any(not 0 <= b < num_batches for b in batches):
        raise ValueError(f"batch indices must lie in [0, {num_batches - 1}] for {num_samples} samples "
                         f"in batches of {batch_size}, got {batches}")
    model = prepare_model(model, device, dtype, batch_size)
    coefficients = StepCoefficients(plan, diffusion, device)
    runner = runner_for(model, config, coefficients, set(plan.skip_levels), batch_size, dtype,
                        device, graphs)
    c = model.config
    shape = (batch_size, c.in_channels, c.resolution, c.resolution)
    outputs = []
    with tqdm(total=len(batches) * len(plan.timesteps), desc="sampling", unit="step",
              disable=not progress) as bar:
        for b in batches:
            generator = torch.Generator().manual_seed(seed_for(seed, b))
            x = sample_batch(runner, plan.skip_levels, generator, shape, device,
                             on_step=lambda: bar.update(1))
            outputs.append(x[: min(batch_size, num_samples - b * batch_size)])
    return torch.cat(outputs).clamp(-1.0, 1.0)


def sample_images(
    model: AdaptiveUNet,
    num_samples: int,
    *,
    sampler: SamplerName = "ddim",
    steps: int = 100,
    eta: float = 0.0,
    time_seq: TimeSequence = "uniform",
    clip_x0: bool = True,
    schedule: SkipSchedule | None = None,
    diffusion: DiffusionConfig | None = None,
    batch_size: int = 64,
    seed: int = 0,
    batches: list[int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    graphs: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Draw ``num_samples`` images with the model; returns (num_samples, C, R, R) in [-1, 1].

    ``schedule`` defaults to the checkpoint's c (``model.metadata``) or the full network;
    ``diffusion`` to the checkpoint's or the DDPM defaults. ``clip_x0`` (default on) clips
    DDIM's x0 prediction to [-1, 1] at every step, as diffusers' ``clip_sample`` does; False runs
    the DDIM code's unclipped update (its published numbers). ``batches`` restricts the work to
    those batch indices (their rows are returned in order), for sharding. On a CUDA device each
    step replays a CUDA graph captured per k (``runners.py``) unless ``graphs`` is False; a last
    partial batch runs at the full batch size and is cut, so the graphs serve every batch. The
    model is prepared as ``prepare_model`` says: moved to ``device`` in place when it is in
    ``dtype`` already, else a kept copy in ``dtype``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    diffusion = diffusion or DiffusionConfig.from_dict(model.metadata.get("diffusion", {}))
    if schedule is None:
        schedule = checkpoint_schedule(model)
    config = SamplerConfig(sampler, steps, eta, time_seq, clip_x0)
    plan = SamplingPlan.build(config, schedule, diffusion.num_timesteps)
    return run_plan(model, plan, config, diffusion, num_samples, batch_size, seed, batches, device,
                    dtype, graphs, progress)
