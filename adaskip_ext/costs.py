"""What each k costs relative to the full network, and the time a schedule could ideally save.

Three shares of the k = 0 network bound the saving from different sides: FLOPs (compute-bound,
large batches), op count (launch-bound small batches, where every kernel costs about the same)
and parameters read (bandwidth-bound). Weighted by the k a schedule picks at each step of a time
sequence, each gives an ideal fraction of time saved.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .model import AdaptiveUNet

SHARES = ("flops", "ops", "params")


class _OpCounter(TorchDispatchMode):
    """Counts the operators that reach a backend (each is one kernel launch in eager mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class DepthCost:
    """The cost of one forward at ``skip_levels`` = k, for one image."""

    skip_levels: int
    flops: int
    ops: int
    params: int


def depth_costs(model: AdaptiveUNet) -> list[DepthCost]:
    """The cost of a batch-1 forward at every k: FLOPs, backend ops, parameters used.

    Counted on the plain PyTorch layers (the flop counter cannot see inside a fused op), so the
    shares describe the network, not one implementation of it; the model's switch is restored.
    """
    c = model.config
    x = torch.zeros(1, c.in_channels, c.resolution, c.resolution,
                    device=next(model.parameters()).device)
    t = torch.full((1,), 500, device=x.device)
    fused = model.fused
    model.use_fused_ops(False)
    try:
        costs = []
        for k in range(model.num_levels):
            with torch.no_grad(), FlopCounterMode(display=False) as flop_counter:
                model(x, t, skip_levels=k)
            with torch.no_grad(), _OpCounter() as op_counter:
                model(x, t, skip_levels=k)
            costs.append(DepthCost(k, flop_counter.get_total_flops(), op_counter.count,
                                   _parameters_used(model, x, t, k)))
    finally:
        model.use_fused_ops(fused)
    return costs


def _parameters_used(model: AdaptiveUNet, x: torch.Tensor, t: torch.Tensor, k: int) -> int:
    """Parameters the forward at k depends on: those that receive a gradient."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        output = model(x, t, skip_levels=k)
        grads = torch.autograd.grad(output.sum(), parameters, allow_unused=True)
    return sum(p.numel() for p, g in zip(parameters, grads) if g is not None)


def shares(costs: list[DepthCost]) -> dict[str, list[float]]:
    """Each cost as a fraction of k = 0's: {"flops": [1.0, …], "ops": […], "params": […]}."""
    full = costs[0]
    return {name: [getattr(cost, name) / getattr(full, name) for cost in costs] for name in SHARES}


def ideal_savings(share: dict[str, list[float]], skip_levels: list[int]) -> dict[str, float]:
    """The fraction of time saved if time followed each share, for the per-step k of a schedule."""
    return {name: 1.0 - sum(values[k] for k in skip_levels) / len(skip_levels)
            for name, values in share.items()}
