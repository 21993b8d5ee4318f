"""What a sampling run does, decided before anything runs: the sampler settings, the timesteps
visited (noisiest first) and the k of every step."""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from ..io_utils import InvalidSetting
from ..model import AdaptiveUNet
from ..schedule import SkipSchedule

SamplerName = Literal["ddpm", "ddim"]
TimeSequence = Literal["uniform", "quad"]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """What to run: sampler kind, number of sampling steps, η, the time sequence and whether DDIM
    clips its x0 prediction to [-1, 1] (diffusers' ``clip_sample``; the DDIM code does not)."""

    sampler: SamplerName = "ddim"
    steps: int = 100
    eta: float = 0.0
    time_seq: TimeSequence = "uniform"
    clip_x0: bool = True  # DDIM only (DDPM always clips, as the DDPM code does)

    def __post_init__(self) -> None:
        if self.sampler not in ("ddpm", "ddim"):
            raise InvalidSetting("sampler", f"must be 'ddpm' or 'ddim', got {self.sampler!r}")
        if self.steps < 1:
            raise InvalidSetting("steps", f"must be positive, got {self.steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise InvalidSetting("eta", f"must lie in [0, 1], got {self.eta}")
        if self.time_seq not in ("uniform", "quad"):
            raise InvalidSetting("time_seq", f"must be 'uniform' or 'quad', got {self.time_seq!r}")

    @property
    def stochastic(self) -> bool:
        return self.sampler == "ddpm" or self.eta > 0


def time_sequence(kind: TimeSequence, steps: int, num_timesteps: int) -> list[int]:
    """Timesteps visited, ascending (the DDIM code's ``seq``); the sampler walks it backwards.

    ``uniform``: ``arange(steps) * (T // steps)``; ``quad``: ``int(linspace(0, sqrt(0.8 T), steps)**2)``.
    """
    if not 1 <= steps <= num_timesteps:
        raise InvalidSetting("steps", f"must lie in [1, {num_timesteps}], got {steps}")
    if kind == "uniform":
        return [i * (num_timesteps // steps) for i in range(steps)]
    if kind == "quad":
        return [int(s) for s in np.linspace(0, np.sqrt(num_timesteps * 0.8), steps) ** 2]
    raise InvalidSetting("time_seq", f"must be 'uniform' or 'quad', got {kind!r}")


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


def checkpoint_schedule(model: AdaptiveUNet, c: float | None = None) -> SkipSchedule:
    """Eq. 1 with ``c`` if given, else the c stored with the checkpoint (0: the full network)."""
    if c is None:
        c = float(model.metadata.get("schedule", {}).get("c", 0.0))
    return SkipSchedule(model.num_levels, c=c)
