"""The sample command (``python -m adaskip_ext.sample``): draw images with an adaptive U-Net
and report the time saved.

With no arguments: the embedded digits model, 64 samples, DDIM with 100 uniform steps and its
x0 prediction clipped to [-1, 1], the checkpoint's skip type and c; writes
``./samples/samples.png`` (a grid, each sample scaled up to 64 pixels wide) and
``./samples/samples.npz`` (uint8 NHWC under ``arr_0``, at the model's resolution).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .. import cli, distributed
from ..checkpoints import load_model
from ..diffusion import DiffusionConfig
from ..embedded import default_checkpoint
from ..images import GRID_CELL_WIDTH, grid, save_image_folder, save_npz, save_png, to_uint8
from ..io_utils import InvalidSetting, UserFacingError, check_writable
from ..model import SKIP_TYPES, AdaptiveUNet
from ..schedule import SkipSchedule, check_exponent, parse_skip_list
from .loop import prepare_model, run_plan
from .parts import PartStore
from .plan import SamplerConfig, SamplingPlan, checkpoint_schedule
from .runners import graphs_for

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_GRID_CELL_WIDTH = 1024  # pixels: a grid of 64 samples at this width is 8,210 pixels square


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.sample",
        description="Sample images, skipping the U-Net's deepest k levels at high-noise steps "
                    "(k(t) = min(N-1, floor(N - N (1-t)^c)), t = (timestep+1)/T).",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None,
                        help="adaskip .safetensors, diffusers UNet2DModel folder or DDIM .ckpt "
                             "(default: the embedded digits model)")
    parser.add_argument("--skip-type", choices=SKIP_TYPES, default=None,
                        help="what feeds the first active up block when levels are skipped "
                             "(default: the checkpoint's)")
    parser.add_argument("--fresh-bridges", action="store_true",
                        help="with --skip-type interpolate on a checkpoint without bridges: zero-initialised ones")
    parser.add_argument("--c", type=float, default=None,
                        help="schedule exponent, 0 = full network (default: the checkpoint's)")
    parser.add_argument("--skip-list", default=None,
                        help="explicit k per step, noisiest first, e.g. 2,2,1,0 "
                             "(default: k(t) from --c)")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim",
                        help="DDIM (deterministic at --eta 0) or DDPM ancestral steps")
    parser.add_argument("--steps", type=int, default=100, help="sampling steps")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1]")
    clipping = parser.add_mutually_exclusive_group()
    clipping.add_argument("--clip-x0", dest="clip_x0", action="store_true",
                          help="DDIM: clip the predicted x0 to [-1, 1] at every step, as "
                               "diffusers' clip_sample (the default; DDPM always clips)")
    clipping.add_argument("--no-clip-x0", dest="clip_x0", action="store_false",
                          help="DDIM: leave x0 unclipped, as the DDIM code whose published "
                               "FIDs are unclipped")
    parser.set_defaults(clip_x0=True)
    parser.add_argument("--time-seq", choices=("uniform", "quad"), default="uniform",
                        help="which timesteps the sampler visits")
    parser.add_argument("--num-samples", type=int, default=64, help="images to draw")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images drawn at once; with --seed it fixes every image")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of each batch's x_T and step noise")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … or auto (CUDA if present)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="model precision")
    parser.add_argument("--out", default="samples", help="output directory")
    parser.add_argument("--grid-cell-width", type=int, default=GRID_CELL_WIDTH, metavar="PX",
                        help="samples.png scales each sample up (nearest neighbour) to at least PX "
                             "pixels wide, 1 keeps its size; the .npz and --save-images keep the "
                             "model's resolution")
    parser.add_argument("--save-images", action="store_true", help="also write OUT/images/NNNNNN.png")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results in OUT")
    parser.add_argument("--no-graphs", action="store_true",
                        help="run every step op by op; by default a CUDA device replays one CUDA "
                             "graph per k (CPU runs are always eager)")
    parser.add_argument("--compare-full", action="store_true",
                        help="also time the same run at k = 0 and report the time saved")
    return parser


def output_paths(out: Path, save_images: bool) -> list[Path]:
    paths = [out / "samples.png", out / "samples.npz"]
    return paths + [out / "images"] if save_images else paths


def check_outputs(out: Path, save_images: bool, overwrite: bool) -> None:
    """Refuse to replace earlier results silently; fail early on an unwritable location
    (creating nothing: the folder appears with the first result)."""
    existing = [p for p in output_paths(out, save_images) if p.exists()]
    if existing and not overwrite:
        raise UserFacingError(f"{existing[0]} already exists; pass --overwrite to replace it")
    check_writable(out)


def build_schedule(args: argparse.Namespace, model: AdaptiveUNet) -> SkipSchedule:
    """--skip-list (parsed by ``check``) or Eq. 1 with --c, else the checkpoint's c."""
    if args.skip_list is not None:
        return SkipSchedule(model.num_levels, skip_list=parse_skip_list(args.skip_list))
    return checkpoint_schedule(model, args.c)


@dataclasses.dataclass(frozen=True)
class Run:
    """What one sample run draws: the sampler settings, the plan and the diffusion they use."""

    config: SamplerConfig
    schedule: SkipSchedule
    plan: SamplingPlan
    diffusion: DiffusionConfig

    @classmethod
    def build(cls, config: SamplerConfig, schedule: SkipSchedule, model: AdaptiveUNet) -> "Run":
        diffusion = DiffusionConfig.from_dict(model.metadata["diffusion"])
        return cls(config, schedule, SamplingPlan.build(config, schedule, diffusion.num_timesteps),
                   diffusion)


@torch.no_grad()
def warm_up(model: AdaptiveUNet, batch_size: int, skip_levels: set[int]) -> None:
    """Run each k once so one-time costs (allocation, algorithm choice) stay out of the timings."""
    c = model.config
    parameter = next(model.parameters())
    x = torch.zeros(batch_size, c.in_channels, c.resolution, c.resolution,
                    device=parameter.device, dtype=parameter.dtype)
    t = torch.zeros(batch_size, dtype=torch.long, device=parameter.device)
    for k in sorted(skip_levels):
        model(x, t, skip_levels=k)


def timed_sampling(model: AdaptiveUNet, args: argparse.Namespace, run: Run, device: torch.device,
                   batches: list[int], progress: bool = False) -> tuple[torch.Tensor, float]:
    """The samples of ``batches`` and the seconds they took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    samples = run_plan(model, run.plan, run.config, run.diffusion, args.num_samples, args.batch_size,
                       args.seed, batches, device, DTYPES[args.dtype], not args.no_graphs, progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return samples, time.perf_counter() - started


def run_settings(args: argparse.Namespace, checkpoint: Path, model: AdaptiveUNet, run: Run) -> dict:
    """What the images depend on: parts drawn under other settings must not be merged. The
    schedule is recorded as c and the k of every step, so two explicit lists differ."""
    schedule = {"c": run.schedule.c if run.schedule.skip_list is None else None,
                "skip_levels": run.plan.skip_levels}
    return {"checkpoint": str(checkpoint.resolve()), "skip_type": model.skip_type,
            "schedule": schedule, "sampler": args.sampler, "steps": args.steps,
            "eta": args.eta, "clip_x0": args.clip_x0, "time_seq": args.time_seq,
            "num_samples": args.num_samples, "batch_size": args.batch_size, "seed": args.seed,
            "dtype": args.dtype}


def open_parts(out: Path, settings: dict, num_batches: int, ranks: distributed.Ranks,
               overwrite: bool) -> PartStore:
    """The run's part store, emptied with --overwrite, checked against ``settings``."""
    store = PartStore(out / "parts", settings, num_batches)
    if ranks.main and overwrite:
        store.remove()
    distributed.barrier()
    store.prepare(ranks.main)
    distributed.barrier()
    store.check()
    return store


def draw_parts(model: AdaptiveUNet, args: argparse.Namespace, run: Run, device: torch.device,
               store: PartStore, mine: list[int], main: bool) -> float:
    """Draw this rank's unfinished batches, writing each as it finishes; returns the seconds.
    Progress (rank 0): per batch, or per step when there is one batch."""
    seconds = 0.0
    for b in tqdm(mine, desc="sampling", unit="batch", disable=not main or len(mine) == 1):
        samples, elapsed = timed_sampling(model, args, run, device, [b],
                                          progress=main and len(mine) == 1)
        store.write(b, to_uint8(samples))
        seconds += elapsed
    return seconds


def check(args: argparse.Namespace) -> SamplerConfig:
    """The checks that need no checkpoint, run before anything loads: the sampler settings
    (``SamplerConfig``'s own checks), the counts, c, the skip list's syntax and the grid's cell
    width. Returns the sampler settings."""
    for flag, value in {"--num-samples": args.num_samples, "--batch-size": args.batch_size}.items():
        if value < 1:
            raise UserFacingError(f"{flag} must be positive, got {value}")
    if not 1 <= args.grid_cell_width <= MAX_GRID_CELL_WIDTH:
        raise UserFacingError(f"--grid-cell-width must lie in [1, {MAX_GRID_CELL_WIDTH}] pixels, "
                              f"got {args.grid_cell_width}")
    try:
        if args.c is not None:
            check_exponent(args.c)
        if args.skip_list is not None:
            parse_skip_list(args.skip_list)
        return SamplerConfig(args.sampler, args.steps, args.eta, args.time_seq, args.clip_x0)
    except InvalidSetting as error:
        raise error.as_flag() from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.sampler_config = check(args)
    return distributed.run_on_ranks(sample_main, args, cli.resolve_device(args.device))


def sample_main(args: argparse.Namespace, ranks: distributed.Ranks, device: torch.device) -> int:
    """Inputs first (flags, checkpoint, schedule), then the outputs: a bad input is reported as
    such, whatever OUT holds, and leaves nothing behind."""
    if args.compare_full and ranks.world > 1:
        raise UserFacingError("--compare-full times the whole run in one process; run it without torchrun")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    model = load_model(checkpoint, skip_type=args.skip_type, fresh_bridges=args.fresh_bridges)
    try:
        run = Run.build(args.sampler_config, build_schedule(args, model), model)
    except InvalidSetting as error:
        raise error.as_flag() from None
    plan = run.plan
    out = Path(args.out)
    check_outputs(out, args.save_images, args.overwrite)
    num_batches = -(-args.num_samples // args.batch_size)
    store = open_parts(out, run_settings(args, checkpoint, model, run), num_batches, ranks,
                       args.overwrite)
    done = store.done()
    mine = [b for b in range(ranks.rank, num_batches, ranks.world) if b not in done]
    model = prepare_model(model, device, DTYPES[args.dtype], args.batch_size)
    levels = set(plan.skip_levels) | ({0} if args.compare_full else set())
    capture = None
    if mine:
        warm_up(model, args.batch_size, levels)
        if device.type == "cuda" and not args.no_graphs:
            capture = graphs_for(model, run.config, levels, args.batch_size, DTYPES[args.dtype],
                                 device).report
    if ranks.main:
        clipping = f" (x0 clipping {'on' if args.clip_x0 else 'off'})" if args.sampler == "ddim" else ""
        print(f"{checkpoint}: skip type {model.skip_type}, {model.num_levels} levels, "
              f"schedule {run.schedule.describe()}, {args.sampler} {args.steps} {args.time_seq} steps"
              f"{clipping}, {args.num_samples} samples on {device} ({args.dtype})"
              + (f", {ranks.world} processes" if ranks.world > 1 else ""))
        if done:
            print(f"resuming: {len(done)} of {num_batches} batches were already drawn ({store.folder})")

    seconds = draw_parts(model, args, run, device, store, mine, ranks.main)
    distributed.barrier()
    if not ranks.main:
        return 0
    images = store.merge(args.num_samples)
    save_npz(images, out / "samples.npz")
    save_png(grid(images, args.grid_cell_width), out / "samples.png")
    if args.save_images:
        save_image_folder(images, out / "images")
    store.remove()

    counts = {k: plan.skip_levels.count(k) for k in range(model.num_levels)}
    print("  k  steps  share")
    for k, count in counts.items():
        print(f"  {k}  {count:5d}  {count / len(plan.skip_levels):5.1%}")
    drawn = len(mine) * args.batch_size
    print(f"wall time: {seconds:.2f} s for {len(mine)} batches" + (
        f" ({min(drawn, args.num_samples) / seconds:.1f} samples/s)" if seconds > 0 else "")
        + (" on rank 0" if ranks.world > 1 else ""))
    print(f"execution: {capture.describe() if capture else 'eager (no CUDA graphs)'}")
    if args.compare_full and mine:
        full = Run.build(run.config, SkipSchedule(model.num_levels, c=0.0), model)
        _, full_seconds = timed_sampling(model, args, full, device, mine)
        print(f"same run at k = 0: {full_seconds:.2f} s; time saved: {1 - seconds / full_seconds:.1%}")
    print(f"wrote {', '.join(str(p) for p in output_paths(out, args.save_images))}")
    return 0

