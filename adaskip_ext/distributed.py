"""torchrun support: this process's rank, the process group, the device each rank uses.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), a process joins the group with
NCCL on CUDA and gloo on CPU; run plainly, it is rank 0 of 1 and nothing is initialised.
"""
from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from .io_utils import UserFacingError

Args = TypeVar("Args")


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's rank among ``world`` processes (``local`` on its machine)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK (rank 0 of 1 without them)."""
    try:
        return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserFacingError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by torchrun; returns the ranks and this rank's
    device (``cuda:LOCAL_RANK`` when ``device`` is CUDA)."""
    ranks = ranks_from_env()
    if ranks.world == 1:
        return ranks, device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(minutes=30))
    return ranks, device


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def run_on_ranks(main: Callable[[Args, Ranks, torch.device], int], args: Args,
                 device: torch.device) -> int:
    """``main(args, ranks, device)`` inside the process group (when launched by torchrun),
    which is left however ``main`` ends."""
    ranks, device = start(device)
    try:
        return main(args, ranks, device)
    finally:
        stop()
