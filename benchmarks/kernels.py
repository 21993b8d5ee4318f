"""Each fused op against the best PyTorch composition it replaces, at the DDPM CIFAR-10 shapes.

    python benchmarks/kernels.py                 # this machine's CPU (2 threads), batches 1 and 8
    python benchmarks/kernels.py --device cuda   # batches 1, 8, 64, 128 (+256 for the conv)

Times are medians of repeats (CPU) or ``triton.testing.do_bench`` (CUDA). Memory-bound ops also
report GB/s over the minimum bytes (one read of x, one write of y, the parameters) and that as a
share of the measured device copy bandwidth; the fused conv reports TFLOP/s. Targets are speed
ratios against the baseline measured in the same run. Writes JSON and a markdown table to
benchmarks/results/kernels-<device>.{json,md} (or --out DIR) with the device, torch version and commit.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from adaskip_ext import ops
from adaskip_ext.timing import timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import metadata, parse, parser_for, write_results  # noqa: E402

GROUPS, EPS = 32, 1e-6
# (channels, resolution) of the DDPM CIFAR-10 U-Net's levels.
LEVELS = [(128, 32), (256, 16), (256, 8), (256, 4)]
# Bridges of the DDPM CIFAR-10 model: skip (C, R) -> middle (256, 4) and back.
BRIDGES = [((128, 32), (256, 4)), ((256, 16), (256, 4)), ((256, 8), (256, 4)),
           ((256, 4), (256, 32)), ((256, 4), (256, 16)), ((256, 4), (256, 8))]
# Targets: (op, device) -> (which row's speedup, minimum ratio, where).
TARGETS = {
    ("group_norm_silu", "cpu"): ("native", 1.3, "batch 8, 128 ch, 32×32"),
    ("bicubic_bridge", "cpu"): ("native", 1.5, "every bridge shape"),
    ("group_norm_silu", "cuda"): ("native", None, "≥ 85% of copy bandwidth at batch 64"),
    ("group_norm_silu_conv3x3", "cuda"): ("triton", 1.3, "vs native, batch 1–16 (bf16)"),
    ("bicubic_bridge", "cuda"): ("native", 3.0, "bridge shapes"),
}


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    ms: float
    baseline: str
    baseline_ms: float
    speedup: float
    gbps: float | None = None
    copy_share: float | None = None
    tflops: float | None = None
    notes: list[str] = field(default_factory=list)


def copy_bandwidth(device: str, measure: Callable) -> float:
    """Device copy bandwidth in GB/s (read + write of a 256 MiB / 64 MiB buffer)."""
    numel = (256 if device == "cuda" else 64) * 2**20 // 4
    src = torch.empty(numel, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / measure(lambda: dst.copy_(src))[0] / 1e6


def measure_on(backend: str, measure: Callable, *fns: Callable[[], object]) -> list[float]:
    """``measure(*fns)`` with every op forced onto ``backend`` (set once, outside the timing)."""
    ops.set_backend(backend)
    try:
        return measure(*fns)
    finally:
        ops.set_backend(None)


def backends_for(op: str, device: str) -> list[str]:
    return [b for b in ("native", "triton") if ops.available(op, b, device)]


def group_norm_inputs(batch: int, channels: int, resolution: int, device: str,
                      dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (batch, channels, resolution, resolution) and the GroupNorm's weight and bias."""
    x = torch.randn(batch, channels, resolution, resolution, device=device, dtype=dtype)
    return x, torch.randn(channels, device=device, dtype=dtype), torch.randn(channels, device=device, dtype=dtype)


def bench_group_norm_silu(device, dtype, batches, measure, bandwidth) -> list[Row]:
    rows = []
    for batch in batches:
        for channels, resolution in LEVELS:
            x, weight, bias = group_norm_inputs(batch, channels, resolution, device, dtype)
            minimum_bytes = 2 * x.numel() * x.element_size() + 2 * weight.numel() * weight.element_size()
            for backend in backends_for("group_norm_silu", device):
                baseline, ms = measure_on(
                    backend, measure,
                    lambda: F.silu(F.group_norm(x, GROUPS, weight, bias, EPS), inplace=True),
                    lambda: ops.group_norm_silu(x, weight, bias, GROUPS, EPS))
                gbps = minimum_bytes / ms / 1e6
                rows.append(Row("group_norm_silu", f"{batch}×{channels}×{resolution}²", str(dtype)[6:],
                                backend, ms, "silu(group_norm) inplace", baseline, baseline / ms,
                                gbps=gbps, copy_share=gbps / bandwidth))
    return rows


def bench_conv(device, dtype, batches, measure) -> list[Row]:
    rows = []
    for batch in batches:
        for channels, resolution in LEVELS:
            x, gn_w, gn_b = group_norm_inputs(batch, channels, resolution, device, dtype)
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device, dtype)
            add = torch.randn(batch, channels, device=device, dtype=dtype)
            args = (x, gn_w, gn_b, conv.weight.detach(), conv.bias.detach(), GROUPS, EPS, add, None)

            def composition():
                h = F.silu(F.group_norm(x, GROUPS, gn_w, gn_b, EPS), inplace=True)
                return F.conv2d(h, conv.weight, conv.bias, padding=1) + add[:, :, None, None]

            with torch.no_grad():
                flops = 2 * batch * resolution**2 * channels * channels * 9
                native = None
                for backend in backends_for("group_norm_silu_conv3x3", device):
                    baseline, ms = measure_on(backend, measure, composition,
                                              lambda: ops.group_norm_silu_conv3x3(*args))
                    native = ms if backend == "native" else native
                    row = Row("group_norm_silu_conv3x3", f"{batch}×{channels}×{resolution}²",
                              str(dtype)[6:], backend, ms, "silu(group_norm) → conv2d + add",
                              baseline, baseline / ms, tflops=flops / ms / 1e9)
                    if backend != "native" and native is not None:
                        row.notes.append(f"vs native: {native / ms:.2f}×")
                    rows.append(row)
    return rows


def bench_bridge(device, dtype, batches, measure, bandwidth) -> list[Row]:
    rows = []
    for batch in batches:
        for (c_in, r_in), (c_out, r_out) in BRIDGES:
            x = torch.randn(batch, c_in, r_in, r_in, device=device, dtype=dtype)
            weight = torch.randn(c_out, c_in, 1, 1, device=device, dtype=dtype) * 0.05
            bias = torch.randn(c_out, device=device, dtype=dtype)
            with torch.no_grad():
                minimum_bytes = (x.numel() + batch * c_out * r_out**2) * x.element_size()
                for backend in backends_for("bicubic_bridge", device):
                    baseline, ms = measure_on(
                        backend, measure,
                        lambda: F.conv2d(F.interpolate(x, size=(r_out, r_out), mode="bicubic",
                                                       align_corners=False), weight, bias),
                        lambda: ops.bicubic_bridge(x, r_out, r_out, weight, bias))
                    gbps = minimum_bytes / ms / 1e6
                    rows.append(Row("bicubic_bridge", f"{batch}×{c_in}×{r_in}² → {c_out}×{r_out}²",
                                    str(dtype)[6:], backend, ms, "interpolate(bicubic) → conv1x1",
                                    baseline, baseline / ms, gbps=gbps, copy_share=gbps / bandwidth))
    return rows


def markdown(meta: dict, rows: list[Row]) -> str:
    lines = [f"# Kernel benchmarks: {meta['device']}", "",
             f"torch {meta['torch']}, commit {meta['commit']}, {meta['date']}; copy bandwidth "
             f"{meta['copy_bandwidth_gbps']:.1f} GB/s. Speedup = baseline time / op time.", ""]
    if "cpu_model" in meta:
        lines += [f"CPU: {meta['cpu_model']}; torch's kernels: {meta['cpu_capability']}; ours: "
                  f"{meta['cpu_kernels']}.", ""]
    lines += [

             "| op | shape | dtype | backend | ms | baseline ms | speedup | GB/s (copy %) | TFLOP/s | notes |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        bandwidth = f"{r.gbps:.1f} ({r.copy_share:.0%})" if r.gbps is not None else ""
        tflops = f"{r.tflops:.2f}" if r.tflops is not None else ""
        lines.append(f"| {r.op} | {r.shape} | {r.dtype} | {r.backend} | {r.ms:.4f} | "
                     f"{r.baseline_ms:.4f} | {r.speedup:.2f}× | {bandwidth} | {tflops} | "
                     f"{'; '.join(r.notes)} |")
    lines += ["", "## Targets", ""] + [f"- {line}" for line in meta["targets"]]
    return "\n".join(lines) + "\n"


def check_targets(device: str, rows: list[Row]) -> list[str]:
    """One line per target of this device: the measured value and whether it is met."""
    lines = []
    for (op, target_device), (backend, ratio, where) in TARGETS.items():
        if target_device != device:
            continue
        if op == "group_norm_silu" and device == "cpu":
            picked = [r for r in rows if r.op == op and r.backend == backend and r.shape == "8×128×32²"]
        elif op == "group_norm_silu":
            picked = [r for r in rows if r.op == op and r.backend == backend and r.shape.startswith("64×")]
        elif op == "group_norm_silu_conv3x3":
            picked = [r for r in rows if r.op == op and r.backend == backend and r.dtype == "bfloat16"
                      and int(r.shape.split("×")[0]) <= 16]
        else:
            picked = [r for r in rows if r.op == op and r.backend == backend]
        if not picked:
            lines.append(f"{op} ({where}): not measured")
            continue
        if ratio is None:
            worst = min(r.copy_share for r in picked)
            lines.append(f"{op} ({where}): worst {worst:.0%} — {'met' if worst >= 0.85 else 'MISSED'}")
        elif op == "group_norm_silu_conv3x3":
            worst = min(float(r.notes[0].split()[-1].rstrip("×")) for r in picked if r.notes)
            lines.append(f"{op} ({where}): worst {worst:.2f}× — {'met' if worst >= ratio else 'MISSED'}")
        else:
            worst = min(r.speedup for r in picked)
            lines.append(f"{op} ({where}): worst {worst:.2f}× (target {ratio}×) — "
                         f"{'met' if worst >= ratio else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default: 1 8 on CPU; 1 8 64 128 on CUDA)")
    parser.add_argument("--repeats", type=int, default=30, help="CPU repeats per median")
    parser.add_argument("--ops", nargs="+", default=list(ops.OPS), choices=ops.OPS)
    args = parse(parser, argv)
    batches = args.batches or ([1, 8] if args.device == "cpu" else [1, 8, 64, 128])
    measure = timer(args.device, args.repeats)
    bandwidth = copy_bandwidth(args.device, measure)
    rows: list[Row] = []
    dtypes = [torch.float32] if args.device == "cpu" else [torch.float32, torch.bfloat16]
    for dtype in dtypes:
        if "group_norm_silu" in args.ops:
            rows += bench_group_norm_silu(args.device, dtype, batches, measure, bandwidth)
        if "group_norm_silu_conv3x3" in args.ops:
            conv_batches = batches + ([256] if args.device == "cuda" and dtype == torch.bfloat16 else [])
            rows += bench_conv(args.device, dtype, conv_batches, measure)
        if "bicubic_bridge" in args.ops:
            rows += bench_bridge(args.device, dtype, batches, measure, bandwidth)
    meta = {**metadata(args.device), "copy_bandwidth_gbps": bandwidth, "batches": batches}
    meta["targets"] = check_targets(args.device, rows)
    table = markdown(meta, rows)
    write_results(args.out, f"kernels-{args.device}", meta, [asdict(r) for r in rows], table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
