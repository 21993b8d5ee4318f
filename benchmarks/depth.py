"""Forward time of the DDPM CIFAR-10 U-Net at each k (levels skipped), per skip type and mode.

    python benchmarks/depth.py                  # CPU: batches 1 and 8, fp32
    python benchmarks/depth.py --device cuda    # batches 1, 16, 128; fp32 and bf16

Modes: ``reference`` (PyTorch eager, plain layers, NCHW: the baseline), ``fused`` (the
extension's fused ops, eager, in the sampler's layout: channels_last on CUDA at small batches) and, on CUDA,
``graphs`` (fused ops, the forward replayed as one CUDA graph per k). Beside each time stand that k's FLOPs, op count and parameter share of k = 0
(``adaskip_ext.costs``): if time followed one of them, t_k / t_0 would equal that share. One more
baseline: ``torch.compile(mode="reduce-overhead")`` of the reference model at k = 0 in the first
dtype (compiling every k, batch and dtype would take minutes), at the batches ``--compile-batches``
names.
Writes benchmarks/results/depth-<device>.{json,md} (or --out DIR).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Callable

import torch

from adaskip_ext import costs
from adaskip_ext.model import SKIP_TYPES, AdaptiveUNet, UNetConfig, preferred_memory_format
from adaskip_ext.sampling import SamplerConfig, SamplingPlan
from adaskip_ext.sampling.runners import capture_graphs
from adaskip_ext.schedule import SkipSchedule
from adaskip_ext.timing import timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import metadata, parse, parser_for, write_results  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The k of each of DDPM's 1000 steps under c = 2 (the 4-level CIFAR-10 model).
C2_LEVELS = SamplingPlan.build(SamplerConfig("ddpm", 1000), SkipSchedule(4, c=2.0), 1000).skip_levels


def inputs(model: AdaptiveUNet, batch: int, dtype: torch.dtype, device: str):
    c = model.config
    generator = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, c.in_channels, c.resolution, c.resolution, generator=generator)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    return x.to(device, dtype), t.to(device)


def graphed_forward(model: AdaptiveUNet, x: torch.Tensor, t: torch.Tensor, k: int) -> Callable[[], object]:
    """The forward at k captured as one CUDA graph, as the sampler captures its steps."""
    return capture_graphs({k: lambda: model(x, t, skip_levels=k)}, warmup=2)[k].replay


def modes_for(models: dict[str, AdaptiveUNet], x, t, k: int, device: str) -> dict[str, Callable[[], object]]:
    fns = {"reference": lambda: models["reference"](x, t, skip_levels=k),
           "fused": lambda: models["fused"](x, t, skip_levels=k)}
    if device == "cuda":
        fns["graphs"] = graphed_forward(models["fused"], x, t, k)
    return fns


@torch.no_grad()
def bench(skip_type: str, dtype_name: str, batches: list[int], device: str, measure) -> list[dict]:
    torch.manual_seed(0)
    fused = AdaptiveUNet(UNetConfig.ddpm_cifar10(), skip_type).to(device).eval()
    depth = costs.depth_costs(fused)
    share = costs.shares(depth)
    fused = fused.to(dtype=DTYPES[dtype_name])
    # The reference is plain PyTorch as a user would run it (NCHW); ours runs as the sampler does.
    models = {"reference": copy.deepcopy(fused).use_fused_ops(False), "fused": fused}
    rows = []
    for batch in batches:
        fused.to(memory_format=preferred_memory_format(torch.device(device), batch))
        x, t = inputs(fused, batch, DTYPES[dtype_name], device)
        times = {}
        for k in range(fused.num_levels):
            fns = modes_for(models, x, t, k, device)
            for mode, ms in zip(fns, measure(*fns.values())):
                times[mode, k] = ms
        for (mode, k), ms in times.items():
            rows.append({"skip_type": skip_type, "dtype": dtype_name, "batch": batch, "k": k,
                         "mode": mode, "ms": ms, "fraction": ms / times[mode, 0],
                         "gflops": depth[k].flops * batch / 1e9, "ops": depth[k].ops,
                         **{f"{name}_share": share[name][k] for name in costs.SHARES}})
        print(f"{skip_type:<11} {dtype_name} batch {batch:<3}: " + ", ".join(
            f"{mode} k=0 {times[mode, 0]:.3f} ms" for mode in ("reference", "fused", "graphs")
            if (mode, 0) in times), flush=True)
    return rows


@torch.no_grad()
def compile_baseline(dtype_name: str, batch: int, device: str, measure) -> dict:
    """torch.compile(mode="reduce-overhead") of the reference model at k = 0."""
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.ddpm_cifar10(), "zero").to(device, DTYPES[dtype_name]).eval()
    model.use_fused_ops(False)
    x, t = inputs(model, batch, DTYPES[dtype_name], device)
    compiled = torch.compile(model, mode="reduce-overhead")
    (ms,) = measure(lambda: compiled(x, t, skip_levels=0))
    print(f"torch.compile reduce-overhead, k=0, {dtype_name} batch {batch}: {ms:.3f} ms", flush=True)
    return {"dtype": dtype_name, "batch": batch, "k": 0, "mode": "compile", "ms": ms}


def schedule_savings(rows: list[dict]) -> list[dict]:
    """For every (skip type, dtype, batch, mode): the time c = 2 saves over ``C2_LEVELS``,
    measured (per-k times) and ideal (per-k shares)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        groups.setdefault((r["skip_type"], r["dtype"], r["batch"], r["mode"]), {})[r["k"]] = r
    out = []
    for (skip_type, dtype, batch, mode), by_k in sorted(groups.items()):
        def saved(field: str) -> float:
            return 1.0 - sum(by_k[k][field] for k in C2_LEVELS) / (len(C2_LEVELS) * by_k[0][field])
        out.append({"skip_type": skip_type, "dtype": dtype, "batch": batch, "mode": mode,
                    "saved": saved("ms"), **{f"ideal_{name}": saved(f"{name}_share")
                                             for name in costs.SHARES}})
    return out


def markdown(meta: dict, rows: list[dict], compiled: list[dict]) -> str:
    lines = [f"# Forward time per k: {meta['device']}", "",
             f"torch {meta['torch']}, commit {meta['commit']}, {meta['date']}. DDPM CIFAR-10 U-Net "
             "(random weights). t_k/t_0: time at k over time at k = 0 in the same mode; the "
             "shares are what that ratio would be if time followed FLOPs, ops or parameters.", "",
             "| skip type | dtype | batch | k | mode | ms | t_k/t_0 | FLOP share | op share | param share | GFLOP | ops |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["skip_type"], r["dtype"], r["batch"], r["mode"], r["k"])):
        lines.append(f"| {r['skip_type']} | {r['dtype']} | {r['batch']} | {r['k']} | {r['mode']} | "
                     f"{r['ms']:.3f} | {r['fraction']:.3f} | {r['flops_share']:.3f} | "
                     f"{r['ops_share']:.3f} | {r['params_share']:.3f} | {r['gflops']:.2f} | {r['ops']} |")
    lines += ["", f"## Time saved at c = 2 over DDPM's {len(C2_LEVELS)} timesteps, from the per-k times", "",
              "Saved = 1 − Σ_i t_{k_i} / (steps · t_0), the schedule's k_i weighting the times "
              "above; the ideals weight the shares the same way.", "",
              "| skip type | dtype | batch | mode | saved | ideal FLOPs | ideal ops | ideal params |",
              "|---|---|---:|---|---:|---:|---:|---:|"]
    for s in schedule_savings(rows):
        lines.append(f"| {s['skip_type']} | {s['dtype']} | {s['batch']} | {s['mode']} | {s['saved']:.1%} | "
                     f"{s['ideal_flops']:.1%} | {s['ideal_ops']:.1%} | {s['ideal_params']:.1%} |")
    lines += ["", "## Full depth (k = 0) against the baselines", "",
              "| dtype | batch | reference eager ms | fused ms | graphs ms | compile ms | eager / best ours | compile / best ours |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    full = {(r["dtype"], r["batch"], r["mode"]): r["ms"] for r in rows
            if r["k"] == 0 and r["skip_type"] == rows[0]["skip_type"]}
    full.update({(r["dtype"], r["batch"], "compile"): r["ms"] for r in compiled})
    for dtype, batch in sorted({(d, b) for d, b, _ in full}):
        get = lambda mode: full.get((dtype, batch, mode))  # noqa: E731
        ours = min(v for v in (get("fused"), get("graphs")) if v is not None)
        compile_ms = get("compile")
        lines.append(f"| {dtype} | {batch} | {get('reference'):.3f} | {get('fused'):.3f} | "
                     f"{get('graphs') or float('nan'):.3f} | {compile_ms or float('nan'):.3f} | "
                     f"{get('reference') / ours:.2f}× | "
                     f"{(compile_ms / ours if compile_ms else float('nan')):.2f}× |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default: 1 8 on CPU; 1 16 128 on CUDA)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=None,
                        help="default: fp32 on CPU; fp32 bf16 on CUDA")
    parser.add_argument("--skip-types", nargs="+", default=list(SKIP_TYPES), choices=SKIP_TYPES)
    parser.add_argument("--compile-batches", type=int, nargs="*", default=[1],
                        help="batches for the torch.compile baseline (none: skip it)")
    parser.add_argument("--repeats", type=int, default=10, help="CPU repeats per median")
    args = parse(parser, argv)
    batches = args.batches or ([1, 8] if args.device == "cpu" else [1, 16, 128])
    dtypes = args.dtypes or (["fp32"] if args.device == "cpu" else ["fp32", "bf16"])
    measure = timer(args.device, args.repeats, rep_ms=40)  # 200+ timings: keep each short
    meta = {**metadata(args.device), "batches": batches, "dtypes": dtypes}
    rows = [row for skip_type in args.skip_types for dtype in dtypes
            for row in bench(skip_type, dtype, batches, args.device, measure)]
    write_results(args.out, f"depth-{args.device}", meta, rows, markdown(meta, rows, []))
    # Last, and written again: a compile that runs out of time leaves the measurements above.
    compiled = [compile_baseline(dtypes[0], batch, args.device, measure) for batch in args.compile_batches]
    table = markdown(meta, rows, compiled)
    meta.update(compile=compiled, c2_savings=schedule_savings(rows))
    write_results(args.out, f"depth-{args.device}", meta, rows, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
