"""The paper's training schemes, as every random draw of an optimiser step from (seed, step).

Schemes (k = ``skip_levels``):
* ``full``: k = 0, plain DDPM.
* ``random``: each batch draws k uniformly from [0, N-1]; timesteps uniform.
* ``constant-k``: each batch draws one timestep uniformly, takes k = k(t) under the training c,
  then draws every sample's timestep uniformly from {t : k(t) = k}. So k comes up in proportion
  to the timesteps it covers, timesteps stay uniform overall, and the deep levels only ever see
  the low-noise timesteps that use them at sampling time.
"""
from __future__ import annotations

import dataclasses

import torch

from ..schedule import skip_levels_at
from ..seeds import seed_for

SCHEMES = ("full", "random", "constant-k")


@dataclasses.dataclass
class TrainingBatch:
    """Everything random about one global batch. indices, timesteps: (B,); noise: (B, C, R, R)."""

    skip_levels: int
    indices: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor
    flips: torch.Tensor

    def shard(self, rank: int, world_size: int) -> "TrainingBatch":
        """This process's contiguous slice of the global batch (its size must divide evenly)."""
        if self.indices.shape[0] % world_size or not 0 <= rank < world_size:
            raise ValueError(f"cannot take shard {rank} of {world_size} from a batch of "
                             f"{self.indices.shape[0]}")
        size = self.indices.shape[0] // world_size
        part = slice(rank * size, (rank + 1) * size)
        return TrainingBatch(self.skip_levels, self.indices[part], self.timesteps[part],
                             self.noise[part], self.flips[part])


class BatchDrawer:
    """Draws step s's batch from a generator seeded by (seed, s): same draws on every process."""

    def __init__(self, scheme: str, num_levels: int, c: float, num_timesteps: int,
                 dataset_size: int, batch_size: int, image_shape: tuple[int, int, int],
                 flip: bool, seed: int) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme, self.num_levels, self.num_timesteps = scheme, num_levels, num_timesteps
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.image_shape, self.flip, self.seed = image_shape, flip, seed
        levels = torch.tensor([skip_levels_at(t, num_levels, c, num_timesteps)
                               for t in range(num_timesteps)])
        self.timestep_level = levels  # (T,) k(t) under the training c
        self.timesteps_at_level = [torch.nonzero(levels == k).flatten() for k in range(num_levels)]

    def draw(self, step: int) -> TrainingBatch:
        generator = torch.Generator().manual_seed(seed_for(self.seed, step))
        b, T = self.batch_size, self.num_timesteps
        indices = torch.randint(self.dataset_size, (b,), generator=generator)
        if self.scheme == "constant-k":
            skip_levels = int(self.timestep_level[torch.randint(T, (1,), generator=generator)])
            pool = self.timesteps_at_level[skip_levels]
            timesteps = pool[torch.randint(len(pool), (b,), generator=generator)]
        else:
            skip_levels = (int(torch.randint(self.num_levels, (1,), generator=generator))
                           if self.scheme == "random" else 0)
            timesteps = torch.randint(T, (b,), generator=generator)
        noise = torch.randn((b, *self.image_shape), generator=generator)
        flips = (torch.rand(b, generator=generator) < 0.5) & self.flip
        return TrainingBatch(skip_levels, indices, timesteps, noise, flips)

