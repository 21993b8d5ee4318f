"""The diffusion process: linear betas, the forward noising, the ε-loss, and one-step updates.

Schedule arrays are computed in float64 (as in improved-diffusion) and moved to the sampling
device once. The step functions take and return device tensors only (no ``.item()``, no host
synchronisation), so a whole step can later be captured in a CUDA graph.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Linear beta schedule and the reverse-process variance."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    variance_type: str = "fixedlarge"

    def __post_init__(self) -> None:
        if self.beta_schedule != "linear":
            raise ValueError(f"unsupported beta schedule {self.beta_schedule!r} (only 'linear')")
        if self.variance_type != "fixedlarge":
            raise ValueError(f"unsupported variance type {self.variance_type!r} (only 'fixedlarge')")
        if self.num_timesteps < 2:
            raise ValueError("num_timesteps must be at least 2")

    def betas(self) -> np.ndarray:
        """(T,) float64."""
        return np.linspace(self.beta_start, self.beta_end, self.num_timesteps, dtype=np.float64)

    def alphas_cumprod(self) -> np.ndarray:
        """(T,) float64, ᾱ_t = ∏_{s<=t} (1 - β_s)."""
        return np.cumprod(1.0 - self.betas())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DiffusionConfig":
        return cls(**values)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε. x0, noise: (B, C, H, W); t: (B,) long."""
    abar = alphas_cumprod.to(x0.device)[t].to(x0.dtype)[:, None, None, None]
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise


def epsilon_loss(predicted: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """ε-MSE, mean over all elements (as in the original DDPM code)."""
    return torch.mean((predicted.float() - noise.float()) ** 2)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0 implied by ε at ᾱ_t (a 0-dim or broadcastable tensor)."""
    return (x - (1.0 - abar_t).sqrt() * eps) / abar_t.sqrt()


def ddim_step(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              eta: float, noise: torch.Tensor | None, clip_x0: bool = False) -> torch.Tensor:
    """One DDIM update x_t -> x_prev (generalised steps of Song et al., x0 unclipped by default).

    x, eps, noise: (B, C, H, W); abar_t, abar_prev: 0-dim tensors (ᾱ of the previous step is 1
    after the last step). ``noise`` may be None when eta == 0.
    """
    x0 = predict_x0(x, eps, abar_t)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
    sigma = eta * ((1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)).sqrt()
    direction = (1.0 - abar_prev - sigma ** 2).clamp(min=0.0).sqrt() * eps
    x_prev = abar_prev.sqrt() * x0 + direction
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev


def ddpm_mean_variance(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor,
                       abar_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean (x0 clipped to [-1, 1]) and ``fixedlarge`` variance β_t = 1 - ᾱ_t/ᾱ_prev.

    Valid on a strided time subsequence. Returns ((B, C, H, W), 0-dim).
    """
    beta_t = 1.0 - abar_t / abar_prev
    x0 = predict_x0(x, eps, abar_t).clamp(-1.0, 1.0)
    mean = (abar_prev.sqrt() * beta_t * x0 + (1.0 - beta_t).sqrt() * (1.0 - abar_prev) * x) / (1.0 - abar_t)
    return mean, beta_t


def ddpm_step(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              noise: torch.Tensor, is_last: torch.Tensor) -> torch.Tensor:
    """One ancestral DDPM update; no noise on the last step (``is_last``: 0-dim bool tensor)."""
    mean, variance = ddpm_mean_variance(x, eps, abar_t, abar_prev)
    scale = torch.where(is_last, torch.zeros_like(variance), variance.sqrt())
    return mean + scale * noise
