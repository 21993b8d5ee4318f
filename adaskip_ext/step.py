"""One sampler step, x_t -> x_prev: what to run, the per-step values on the device, and the math.

Shared by the eager loop and the CUDA graphs (``graphs.py``), so both run the same operations.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .diffusion import DiffusionConfig, ddim_step, ddpm_step
from .model import AdaptiveUNet

if TYPE_CHECKING:
    from .sampler import SamplingPlan

SamplerName = Literal["ddpm", "ddim"]
TimeSequence = Literal["uniform", "quad"]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """What to run: sampler kind, number of steps, η, the time sequence and whether DDIM clips
    its x0 prediction to [-1, 1] (diffusers' ``clip_sample``; the DDIM code does not)."""

    sampler: SamplerName = "ddim"
    steps: int = 100
    eta: float = 0.0
    time_seq: TimeSequence = "uniform"
    clip_x0: bool = True  # DDIM only (DDPM always clips, as the DDPM code does)

    def __post_init__(self) -> None:
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {self.sampler!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")

    @property
    def stochastic(self) -> bool:
        return self.sampler == "ddpm" or self.eta > 0


class DeviceSchedule:
    """ᾱ for every step of a plan, resident on the sampling device (float32).

    ``rows[i]`` = (ᾱ_t, ᾱ_prev, t, is_last) of step i: one (4,) row, so a captured step takes
    all its per-step values with one copy.
    """

    def __init__(self, plan: SamplingPlan, diffusion: DiffusionConfig, device: torch.device) -> None:
        abar = np.concatenate([[1.0], diffusion.alphas_cumprod()])  # index t + 1; ᾱ(-1) = 1
        self.abar_t = torch.tensor(abar[np.array(plan.timesteps) + 1], dtype=torch.float32, device=device)
        self.abar_prev = torch.tensor(abar[np.array(plan.previous) + 1], dtype=torch.float32, device=device)
        self.timesteps = torch.tensor(plan.timesteps, dtype=torch.long, device=device)
        self.rows = torch.stack([self.abar_t, self.abar_prev, self.timesteps.float(),
                                 (self.timesteps == 0).float()], dim=1)


def sampler_step(model: AdaptiveUNet, config: SamplerConfig, x: torch.Tensor, row: torch.Tensor,
                 skip_levels: int, noise: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """x_t -> x_prev: ε from the model at k = ``skip_levels``, then the DDIM or DDPM update.

    x, noise: (B, C, R, R) float32 (noise None for deterministic DDIM); row: (4,) as in
    ``DeviceSchedule.rows``. Returns (B, C, R, R) float32. No host synchronisation: capturable.
    """
    abar_t, abar_prev = row[0], row[1]
    t = row[2].long().expand(x.shape[0])  # timesteps < 2^24 are exact in float32
    eps = model(x.to(dtype), t, skip_levels=skip_levels).float()
    if config.sampler == "ddim":
        return ddim_step(x, eps, abar_t, abar_prev, config.eta, noise, config.clip_x0)
    return ddpm_step(x, eps, abar_t, abar_prev, noise, row[3] > 0)
