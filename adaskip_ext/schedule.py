"""Skip schedules: which k (= ``skip_levels``) each sampling step runs.

Eq. 1 of the paper, ``k(t) = min(N - 1, floor(N - N * (1 - t)**c))``, with the normalised time
``t = (timestep + 1) / T`` in float64: the noisiest timestep T-1 gives t = 1 (the shallowest
network, k = N-1, for any c > 0) and timestep 0 gives t = 1/T. c = 0 is the full network.
The same function decides k in training (constant-k scheme) and in sampling.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Sequence

from .io_utils import InvalidSetting


def skip_levels_at(timestep: int, num_levels: int, c: float, num_timesteps: int) -> int:
    """k for one integer timestep in [0, T) under Eq. 1."""
    if not 0 <= timestep < num_timesteps:
        raise ValueError(f"timestep {timestep} is outside [0, {num_timesteps})")
    if c == 0:
        return 0
    t = (timestep + 1) / num_timesteps
    return min(num_levels - 1, math.floor(num_levels - num_levels * (1.0 - t) ** c))


def check_exponent(c: float) -> None:
    """Eq. 1's c must be a finite number >= 0 (0: the full network)."""
    if not (math.isfinite(c) and c >= 0):
        raise InvalidSetting("c", f"must be a finite number >= 0, got {c}")


def parse_skip_list(text: str) -> tuple[int, ...]:
    """``"3,3,2,..."`` -> (3, 3, 2, ...): one k per sampling step, noisiest first."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidSetting("skip_list", f"must be comma-separated integers, got {text!r}") from None
    if not values:
        raise InvalidSetting("skip_list", "is empty")
    return values


@dataclasses.dataclass(frozen=True)
class SkipSchedule:
    """Either Eq. 1 with exponent ``c`` or an explicit per-step list (noisiest step first)."""

    num_levels: int
    c: float = 0.0
    skip_list: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_exponent(self.c)
        if self.skip_list is not None:
            bad = [k for k in self.skip_list if not 0 <= k < self.num_levels]
            if bad:
                raise InvalidSetting("skip_list", f"values must lie in [0, {self.num_levels - 1}], "
                                                  f"got {bad[0]}")

    @classmethod
    def parse_list(cls, text: str, num_levels: int) -> "SkipSchedule":
        """From ``"3,3,2,..."`` (one k per sampling step, noisiest first)."""
        return cls(num_levels=num_levels, skip_list=parse_skip_list(text))

    def levels(self, timesteps: Sequence[int], num_timesteps: int) -> list[int]:
        """k for each step of a sampler's time sequence, given noisiest first."""
        if self.skip_list is not None:
            if len(self.skip_list) != len(timesteps):
                raise InvalidSetting("skip_list", f"has {len(self.skip_list)} values but the "
                                                  f"sampler runs {len(timesteps)} steps")
            return list(self.skip_list)
        return [skip_levels_at(int(t), self.num_levels, self.c, num_timesteps) for t in timesteps]

    def shares(self, timesteps: Sequence[int], num_timesteps: int) -> dict[int, float]:
        """Share of steps at each k in [0, N-1] (zeros included)."""
        counts = Counter(self.levels(timesteps, num_timesteps))
        return {k: counts.get(k, 0) / len(timesteps) for k in range(self.num_levels)}

    def describe(self) -> str:
        return "explicit list" if self.skip_list is not None else f"c = {self.c:g}"

