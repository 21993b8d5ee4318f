"""Time saved by the skip schedule (the paper's Table 2): each skip type × c, against c = 0.

    python benchmarks/speedup.py --quick          # CPU-sized: DDIM-20 and strided DDPM-20, batch 1
    python benchmarks/speedup.py --device cuda    # DDIM 100 uniform steps and DDPM 1000 steps

The DDPM CIFAR-10 U-Net with random weights (time does not depend on them). For every skip type,
sampler and c, whole sampling runs at c and at c = 0 are timed in turn and the medians compared
within the run. Beside each measured saving stand the three ideals of ``adaskip_ext.costs`` for
that schedule (FLOP, op-count and parameter shares). On CUDA every run replays the CUDA graphs
of ``adaskip_ext.sampling.runners`` (``--no-graphs``: eager). Writes
benchmarks/results/speedup-<device>.{json,md} (or --out DIR) naming the device, torch version and commit.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

from adaskip_ext import costs
from adaskip_ext.model import SKIP_TYPES, AdaptiveUNet, UNetConfig
from adaskip_ext.sampling import SamplerConfig, SamplingPlan, sample_images
from adaskip_ext.schedule import SkipSchedule
from adaskip_ext.timing import medians_in_turn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import metadata, parse, parser_for, write_results  # noqa: E402

C_VALUES = (1.0, 2.0, 3.0, 5.0)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sample(model: AdaptiveUNet, sampler: str, steps: int, c: float, batch: int, device: str,
           dtype: torch.dtype, graphs: bool, clip_x0: bool) -> None:
    """One whole sampling run of ``batch`` images at c."""
    sample_images(model, batch, sampler=sampler, steps=steps, batch_size=batch, device=device,
                  dtype=dtype, graphs=graphs, clip_x0=clip_x0,
                  schedule=SkipSchedule(model.num_levels, c=c), progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="20 steps for both samplers (the k shares of a uniform sequence "
                             "do not depend much on its length)")
    parser.add_argument("--ddim-steps", type=int, default=None, help="default: 100 (--quick: 20)")
    parser.add_argument("--ddpm-steps", type=int, default=None, help="default: 1000 (--quick: 20)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32"])
    parser.add_argument("--no-graphs", action="store_true", help="CUDA: run the steps eagerly")
    parser.add_argument("--batch", type=int, default=1, help="images per run (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting")
    parser.add_argument("--skip-types", nargs="+", default=list(SKIP_TYPES), choices=SKIP_TYPES)
    clipping = parser.add_mutually_exclusive_group()
    clipping.add_argument("--clip-x0", dest="clip_x0", action="store_true",
                          help="DDIM clips its x0 prediction, as the sample CLI by default (the default)")
    clipping.add_argument("--no-clip-x0", dest="clip_x0", action="store_false",
                          help="DDIM leaves x0 unclipped, as the DDIM code")
    parser.set_defaults(clip_x0=True)
    args = parse(parser, argv)
    for flag, value in {"--batch": args.batch, "--repeats": args.repeats,
                        "--ddim-steps": args.ddim_steps or 1, "--ddpm-steps": args.ddpm_steps or 1}.items():
        if value < 1:
            parser.exit(2, f"{parser.prog}: {flag} must be positive, got {value}\n")
    quick = 20 if args.quick else None
    samplers = {"ddim": args.ddim_steps or quick or 100, "ddpm": args.ddpm_steps or quick or 1000}
    graphs = args.device == "cuda" and not args.no_graphs
    rows = []
    for skip_type in args.skip_types:
        torch.manual_seed(0)
        model = AdaptiveUNet(UNetConfig.ddpm_cifar10(), skip_type).to(args.device).eval()
        share = costs.shares(costs.depth_costs(model))
        for dtype in args.dtypes:
            model = model.to(dtype=DTYPES[dtype])  # in place: the graphs stay with this model
            for sampler, steps in samplers.items():
                for c in C_VALUES:
                    runs = [functools.partial(sample, model, sampler, steps, c_run, args.batch,
                                              args.device, DTYPES[dtype], graphs, args.clip_x0)
                            for c_run in (0.0, c)]
                    # The warm-up run of each also captures its CUDA graphs.
                    full, skipped = medians_in_turn(runs, args.repeats, warmup=1, device=args.device)
                    plan = SamplingPlan.build(SamplerConfig(sampler, steps, clip_x0=args.clip_x0),
                                              SkipSchedule(model.num_levels, c=c), 1000)
                    ideal = costs.ideal_savings(share, list(plan.skip_levels))
                    rows.append({"skip_type": skip_type, "dtype": dtype, "sampler": sampler,
                                 "steps": steps, "c": c, "full_s": full, "skipped_s": skipped,
                                 "saved": 1 - skipped / full,
                                 **{f"ideal_{name}": value for name, value in ideal.items()}})
                    print(f"{skip_type:<11} {dtype} {sampler}-{steps:<4} c={c:g}: saved "
                          f"{rows[-1]['saved']:6.1%} (ideals: FLOPs {ideal['flops']:.1%}, ops "
                          f"{ideal['ops']:.1%}, params {ideal['params']:.1%})", flush=True)
    meta = {**metadata(args.device), "batch": args.batch, "graphs": graphs,
            "repeats": args.repeats, "clip_x0": args.clip_x0}
    lines = [f"# Time saved by the skip schedule: {meta['device']}", "",
             f"torch {meta['torch']}, commit {meta['commit']}, {meta['date']}; DDPM CIFAR-10 U-Net, "
             f"batch {args.batch}, {'CUDA graphs' if graphs else 'eager'}, DDIM x0 clipping "
             f"{'on' if args.clip_x0 else 'off'}, median of {args.repeats} runs at c "
             "and at c = 0 taken in turn. "
             "Ideals: the time saved if time followed the FLOP, op-count or parameter share of "
             "each step's k.", "",
             "| skip type | dtype | sampler | c | c = 0 (s) | c (s) | saved | ideal FLOPs | ideal ops | ideal params |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['skip_type']} | {r['dtype']} | {r['sampler']}-{r['steps']} | {r['c']:g} | {r['full_s']:.3f} | "
                     f"{r['skipped_s']:.3f} | {r['saved']:.1%} | {r['ideal_flops']:.1%} | "
                     f"{r['ideal_ops']:.1%} | {r['ideal_params']:.1%} |")
    write_results(args.out, f"speedup-{args.device}", meta, rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
