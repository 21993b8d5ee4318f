"""Where one full-depth forward spends its GPU time: the kernels of the graphed fused model
against those of ``torch.compile(mode="reduce-overhead")`` of the reference model.

    python benchmarks/profile_forward.py [--batch 1] [--dtype fp32] [--top 25]

Prints, per variant, the kernel count, the summed kernel time and the wall time of one replay,
then the kernels that take the most time (summed over a forward). The gap between the summed
kernel time and the wall time is launch and idle time between kernels.
"""
from __future__ import annotations

import argparse
import collections
import copy
import sys
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from adaskip_ext.model import AdaptiveUNet, UNetConfig, preferred_memory_format
from adaskip_ext.timing import timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from depth import DTYPES, graphed_forward, inputs  # noqa: E402


def kernel_times(fn: Callable[[], object], repeats: int = 5) -> dict[str, tuple[int, float]]:
    """Kernel name -> (launches per forward, µs per forward), from ``repeats`` profiled calls."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.name][0] += 1
            totals[event.name][1] += event.device_time
    return {name: (count // repeats, us / repeats) for name, (count, us) in totals.items()}


def report(label: str, fn: Callable[[], object], top: int) -> None:
    (wall_ms,) = timer("cuda", repeats=20)(fn)
    kernels = kernel_times(fn)
    total_us = sum(us for _, us in kernels.values())
    count = sum(n for n, _ in kernels.values())
    print(f"\n## {label}: {count} kernels, {total_us / 1000:.3f} ms of kernel time, "
          f"{wall_ms:.3f} ms per forward\n")
    print("| launches | µs | kernel |\n|---:|---:|---|")
    for name, (n, us) in sorted(kernels.items(), key=lambda item: -item[1][1])[:top]:
        print(f"| {n} | {us:.1f} | {name[:110]} |")


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--top", type=int, default=25, help="kernels listed per variant")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.ddpm_cifar10(), "zero").cuda().to(DTYPES[args.dtype]).eval()
    x, t = inputs(model, args.batch, DTYPES[args.dtype], "cuda")
    fused = copy.deepcopy(model).to(memory_format=preferred_memory_format(x.device, args.batch))
    report("fused ops + CUDA graph", graphed_forward(fused, x, t, 0), args.top)
    model.use_fused_ops(False)
    compiled = torch.compile(model, mode="reduce-overhead")
    report("torch.compile reduce-overhead", lambda: compiled(x, t, skip_levels=0), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
