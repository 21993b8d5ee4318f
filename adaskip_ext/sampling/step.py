"""One sampler step, x_t -> x_prev: the per-step coefficients on the device, and the math.

Shared by the eager runner and the CUDA graphs (``runners.py``), so both run the same operations.
"""
from __future__ import annotations

import numpy as np
import torch

from ..diffusion import DiffusionConfig, ddim_step, ddpm_step
from ..model import AdaptiveUNet
from .plan import SamplerConfig, SamplingPlan


class StepCoefficients:
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
    ``StepCoefficients.rows``. Returns (B, C, R, R) float32. No host synchronisation: capturable.
    """
    abar_t, abar_prev = row[0], row[1]
    t = row[2].long().expand(x.shape[0])  # timesteps < 2^24 are exact in float32
    eps = model(x.to(dtype), t, skip_levels=skip_levels).float()
    if config.sampler == "ddim":
        return ddim_step(x, eps, abar_t, abar_prev, config.eta, noise, config.clip_x0)
    return ddpm_step(x, eps, abar_t, abar_prev, noise, row[3] > 0)
