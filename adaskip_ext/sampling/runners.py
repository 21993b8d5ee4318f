"""Step runners: each runs sampler step i at a given k, eagerly or as a replayed CUDA graph.

At the small batches of interactive sampling the U-Net is launch-bound (hundreds of small
kernels per step); a graph replays them with one launch. ``GraphRunner`` captures, for one model,
batch size, dtype, device and sampler, one graph per k into one shared memory pool. Each graph
reads static buffers (x, the step's row of ᾱ_t, ᾱ_prev, t, is_last, and the noise) and writes
x_prev back into x. The noise is drawn outside the graph from the batch's CPU generator and
copied in, so graph and eager runs consume the same numbers. ``EagerRunner`` is the same step
without graphs (CPU, ``--no-graphs``). ``runner_for`` picks one and keeps captured graphs across
calls until the batch size, dtype, device, sampler or the model's parameters change.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import time
import weakref
from typing import Callable, Iterable, Mapping, Protocol

import torch

from ..model import AdaptiveUNet
from .plan import SamplerConfig
from .step import StepCoefficients, sampler_step


class StepRunner(Protocol):
    """Runs sampler step ``i`` at k = ``skip_levels``; returns x_prev, (B, C, R, R) float32."""

    def __call__(self, i: int, skip_levels: int, x: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor: ...


@dataclasses.dataclass
class CaptureReport:
    """What capturing cost: graphs captured, seconds (warm-up included) and device memory held
    by the graphs' pool and static buffers."""

    graphs: int = 0
    seconds: float = 0.0
    memory_bytes: int = 0

    def describe(self) -> str:
        return (f"{self.graphs} CUDA graph{'s' * (self.graphs != 1)} captured in {self.seconds:.2f} s, "
                f"{self.memory_bytes / 2**20:.1f} MiB")


class EagerRunner:
    """Each step run op by op (CPU, or CUDA without graphs)."""

    def __init__(self, model: AdaptiveUNet, config: SamplerConfig, coefficients: StepCoefficients,
                 dtype: torch.dtype) -> None:
        self.model, self.config, self.coefficients, self.dtype = model, config, coefficients, dtype

    def __call__(self, i: int, skip_levels: int, x: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        noise = None
        if self.config.stochastic:
            noise = torch.randn(x.shape, generator=generator).to(x.device)
        return sampler_step(self.model, self.config, x, self.coefficients.rows[i], skip_levels, noise,
                            self.dtype)


# How often each k has been captured in this process (tests count recaptures with it).
captures: "collections.Counter[int]" = collections.Counter()


def capture_graphs(bodies: Mapping[int, Callable[[], object]], warmup: int = 2,
                   pool: tuple[int, int] | None = None,
                   device: torch.device | None = None) -> dict[int, torch.cuda.CUDAGraph]:
    """One CUDA graph of each body, in the order given, all into ``pool`` (None: a private one).

    Every body first runs ``warmup`` times on a side stream (PyTorch's recipe for capture):
    that settles cuDNN's algorithm choice and compiles Triton kernels before anything is
    recorded. ``device``: the CUDA device to capture on (None: the current one).
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for body in bodies.values():
            for _ in range(warmup):
                body()
    torch.cuda.current_stream(device).wait_stream(side)
    graphs: dict[int, torch.cuda.CUDAGraph] = {}
    for key, body in bodies.items():
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            body()
        graphs[key] = graph
    return graphs


class GraphRunner:
    """One CUDA graph of the whole sampler step per k, sharing one memory pool.

    Built for a batch size, dtype and device; ``capture(levels)`` captures the k's not yet
    captured (after a warm-up that settles cuDNN's algorithm choice and compiles Triton kernels).
    A step copies its row and noise into the static buffers and replays; the returned x is the
    static buffer itself, valid until the next step.
    """

    def __init__(self, model: AdaptiveUNet, config: SamplerConfig, batch_size: int,
                 dtype: torch.dtype, device: torch.device, warmup: int = 2) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        c = model.config
        self.shape = (batch_size, c.in_channels, c.resolution, c.resolution)
        # Held weakly: graphs are kept per model (``graphs_for``) and must not keep it alive.
        self._model = weakref.ref(model)
        self.config, self.dtype, self.device, self.warmup = config, dtype, device, warmup
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.coefficients: StepCoefficients | None = None  # set by bind()
        self.report = CaptureReport()
        self.x = torch.zeros(self.shape, device=device)
        self.row = torch.tensor([0.5, 1.0, 0.0, 0.0], device=device)  # any valid (ᾱ_t, ᾱ_prev, t, last)
        self.noise = torch.zeros(self.shape, device=device) if config.stochastic else None
        # Noise is drawn into pinned host memory and copied without blocking; two buffers, so the
        # next draw never overwrites one whose copy may still be running.
        self.staging = [torch.empty(self.shape, pin_memory=True) for _ in range(2 if self.noise is not None else 0)]
        self.copied = [torch.cuda.Event() for _ in self.staging]
        self.turn = 0
        self.report.memory_bytes = sum(t.numel() * t.element_size() for t in (self.x, self.row, self.noise)
                                       if t is not None)

    def _body(self, skip_levels: int) -> None:
        x_prev = sampler_step(self._model(), self.config, self.x, self.row, skip_levels, self.noise,
                              self.dtype)
        self.x.copy_(x_prev)

    @torch.no_grad()
    def capture(self, levels: Iterable[int]) -> None:
        """Capture a graph for every k in ``levels`` that has none yet."""
        missing = sorted(set(levels) - set(self.graphs))
        if not missing:
            return
        started = time.perf_counter()
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()  # as capture does: what is reserved after it is the graphs' pool
        before = torch.cuda.memory_reserved(self.device)
        saved = self.x.clone()
        self.graphs.update(capture_graphs({k: functools.partial(self._body, k) for k in missing},
                                          self.warmup, self.pool, self.device))
        captures.update(missing)
        self.x.copy_(saved)
        torch.cuda.synchronize(self.device)
        self.report.graphs += len(missing)
        self.report.seconds += time.perf_counter() - started
        self.report.memory_bytes += max(0, torch.cuda.memory_reserved(self.device) - before)

    def bind(self, coefficients: StepCoefficients) -> "GraphRunner":
        """Use ``coefficients``' rows for the steps that follow."""
        self.coefficients = coefficients
        return self

    def _load_noise(self, generator: torch.Generator) -> None:
        buffer, event = self.staging[self.turn], self.copied[self.turn]
        event.synchronize()  # that buffer's previous copy is done
        torch.randn(self.shape, generator=generator, out=buffer)
        self.noise.copy_(buffer, non_blocking=True)
        event.record()
        self.turn = 1 - self.turn

    def __call__(self, i: int, skip_levels: int, x: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        if x is not self.x:
            self.x.copy_(x)
        self.row.copy_(self.coefficients.rows[i])
        if self.noise is not None:
            self._load_noise(generator)
        if skip_levels not in self.graphs:
            self.capture([skip_levels])
        self.graphs[skip_levels].replay()
        return self.x


# Graphs kept per model, with the setting they were captured for.
_kept: "weakref.WeakKeyDictionary[AdaptiveUNet, tuple[tuple, GraphRunner]]" = weakref.WeakKeyDictionary()


def setting_of(model: AdaptiveUNet, config: SamplerConfig, batch_size: int, dtype: torch.dtype,
               device: torch.device) -> tuple:
    """Everything a capture depends on, the addresses of the model's tensors included (a model
    moved or cast in place has new ones)."""
    tensors = tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers()))
    return (config.sampler, config.eta, config.clip_x0, batch_size, dtype, device, tensors)


def runner_for(model: AdaptiveUNet, config: SamplerConfig, coefficients: StepCoefficients,
               levels: Iterable[int], batch_size: int, dtype: torch.dtype, device: torch.device,
               use_graphs: bool = True) -> StepRunner:
    """The step runner for a sampling run: CUDA graphs for every k in ``levels`` on a CUDA device
    unless ``use_graphs`` is False, else eager execution."""
    if not use_graphs or device.type != "cuda":
        return EagerRunner(model, config, coefficients, dtype)
    return graphs_for(model, config, levels, batch_size, dtype, device).bind(coefficients)


def graphs_for(model: AdaptiveUNet, config: SamplerConfig, levels: Iterable[int], batch_size: int,
               dtype: torch.dtype, device: torch.device) -> GraphRunner:
    """The model's graphs for this setting with every k in ``levels`` captured; captured anew
    (the old ones released) when the setting changed."""
    if device.index is None:
        device = torch.device(device.type, torch.cuda.current_device())
    setting = setting_of(model, config, batch_size, dtype, device)
    kept = _kept.get(model)
    if kept is None or kept[0] != setting:
        _kept.pop(model, None)
        kept = _kept[model] = (setting, GraphRunner(model, config, batch_size, dtype, device))
    kept[1].capture(levels)
    return kept[1]
