"""Wall-clock timing for the benchmarks and recipes: one call, medians of calls taken in turn.

Calls are timed in turn (a, b, a, b, …) rather than one after the other, so that the drift of a
shared machine hits every function alike and their ratio stays meaningful.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch


def elapsed(fn: Callable[[], object], device: str | torch.device = "cpu") -> float:
    """Seconds one call of ``fn`` takes; on CUDA the queued work before and after it included,
    so the time is the work's, not its launch's."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def medians_in_turn(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 1,
                    device: str | torch.device = "cpu") -> list[float]:
    """Median seconds per call of each function: ``warmup`` untimed rounds, then ``repeats``
    timed rounds, each round calling every function once, in order."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            times.append(elapsed(fn, device))
    return [statistics.median(times) for times in samples]


def timer(device: str, repeats: int, rep_ms: int = 100) -> Callable[..., list[float]]:
    """``measure(*fns)``: milliseconds per call of each function on ``device``.

    CUDA: ``triton.testing.do_bench`` (CUDA events over many calls) timing each function for
    about ``rep_ms``. CPU: ``medians_in_turn`` of ``repeats`` rounds after 3 warm-up rounds.
    """
    if device == "cuda":
        import triton.testing

        return lambda *fns: [float(triton.testing.do_bench(fn, warmup=rep_ms // 4, rep=rep_ms))
                             for fn in fns]
    return lambda *fns: [1e3 * s for s in medians_in_turn(fns, repeats, warmup=3, device=device)]
