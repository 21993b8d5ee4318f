"""The sampling loop: DDPM ancestral or DDIM steps, running the model at k(t_i) at each step.

No I/O and no graph capture here (``graphs.py`` runs the steps). Randomness: samples are numbered globally and cut into
batches of ``batch_size``; batch b draws x_T and then each step's noise from a CPU generator
seeded by (seed, b), always at the full ``(batch_size, C, H, W)`` shape, so the same seed and
batch size give the same images whatever the device, device count or execution path.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .diffusion import DiffusionConfig
from .graphs import Steps, steps_for
from .model import AdaptiveUNet, preferred_memory_format
from .schedule import SkipSchedule
from .step import DeviceSchedule, SamplerConfig, SamplerName, TimeSequence


def time_sequence(kind: TimeSequence, steps: int, num_timesteps: int) -> list[int]:
    """Timesteps visited, ascending (the DDIM code's ``seq``); the sampler walks it backwards.

    ``uniform``: ``arange(steps) * (T // steps)``; ``quad``: ``int(linspace(0, sqrt(0.8 T), steps)**2)``.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must lie in [1, {num_timesteps}], got {steps}")
    if kind == "uniform":
        return [i * (num_timesteps // steps) for i in range(steps)]
    if kind == "quad":
        return [int(s) for s in np.linspace(0, np.sqrt(num_timesteps * 0.8), steps) ** 2]
    raise ValueError(f"time sequence must be 'uniform' or 'quad', got {kind!r}")


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. (seed, batch)); stable across platforms."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """A time sequence (noisiest step first) with the k of every step."""

    timesteps: list[int]
    previous: list[int]
    skip_levels: list[int]

    @classmethod
    def build(cls, config: SamplerConfig, schedule: SkipSchedule, num_timesteps: int) -> "SamplingPlan":
        ascending = time_sequence(config.time_seq, config.steps, num_timesteps)
        timesteps = list(reversed(ascending))
        previous = list(reversed([-1] + ascending[:-1]))
        return cls(timesteps, previous, schedule.levels(timesteps, num_timesteps))


def sample_batch(
    steps: Steps,
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
        x = steps(i, k, x, generator)
        if on_step is not None:
            on_step()
    return x.clone()  # a graph's static buffer is overwritten by the next batch


def checkpoint_schedule(model: AdaptiveUNet, c: float | None = None) -> SkipSchedule:
    """Eq. 1 with ``c`` if given, else the c stored with the checkpoint (0: the full network)."""
    if c is None:
        c = float(model.metadata.get("schedule", {}).get("c", 0.0))
    return SkipSchedule(model.num_levels, c=c)


@torch.no_grad()
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
    step replays a CUDA graph captured per k (``graphs.py``) unless ``graphs`` is False; a last
    partial batch runs at the full batch size and is cut, so the graphs serve every batch. The
    model is moved to ``device`` in place, its weights laid out as ``preferred_memory_format``
    says for ``batch_size`` (channels_last on CUDA at small batches; the values do not change).
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError("num_samples and batch_size must be positive")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    diffusion = diffusion or DiffusionConfig.from_dict(model.metadata.get("diffusion", {}))
    if schedule is None:
        schedule = checkpoint_schedule(model)
    config = SamplerConfig(sampler, steps, eta, time_seq, clip_x0)
    plan = SamplingPlan.build(config, schedule, diffusion.num_timesteps)
    if next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model).to(dtype=dtype)  # leave the caller's model as it was
    model = model.to(device, memory_format=preferred_memory_format(device, batch_size)).eval()
    num_batches = -(-num_samples // batch_size)
    batches = list(range(num_batches)) if batches is None else batches
    if any(not 0 <= b < num_batches for b in batches):
        raise ValueError(f"batch indices must lie in [0, {num_batches - 1}] for {num_samples} samples "
                         f"in batches of {batch_size}, got {batches}")
    coefficients = DeviceSchedule(plan, diffusion, device)
    steps_run = steps_for(model, config, coefficients, set(plan.skip_levels), batch_size, dtype,
                          device, graphs)
    c = model.config
    shape = (batch_size, c.in_channels, c.resolution, c.resolution)
    outputs = []
    with tqdm(total=len(batches) * len(plan.timesteps), desc="sampling", unit="step",
              disable=not progress) as bar:
        for b in batches:
            generator = torch.Generator().manual_seed(seed_for(seed, b))
            x = sample_batch(steps_run, plan.skip_levels, generator, shape, device,
                             on_step=lambda: bar.update(1))
            outputs.append(x[: min(batch_size, num_samples - b * batch_size)])
    return torch.cat(outputs).clamp(-1.0, 1.0)
