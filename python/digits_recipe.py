"""The paper's Tables 1–3 at digits scale, with the package's own CLIs and metric (issue 5).

    python python/digits_recipe.py all                    # train, the three tables, the report
    python python/digits_recipe.py train|table1|table2|table3|report

``train``: a plain model (``full``, scheme full), then five fine-tunes from its weights with the
same number of steps, so every variant has seen the same training: the plain model continued
(``full-extra``), ``zero``, ``duplicate`` and ``interpolate`` with the constant-k scheme at
c = 2, and ``zero-random`` with the random scheme. ``table1``: digits-FID
(``adaskip_ext.metrics.digits_classifier``) of every fine-tuned variant × c ∈ {0, 1, 2, 3, 5}, DDIM uniform steps with x0 unclipped (as the
DDIM code, and the committed results). ``table2``: time saved by each c, whole sampling runs at
c and at c = 0 timed in turn, beside the ideals of ``adaskip_ext.costs``. ``table3``: the zero model at c = 2 and the plain model at c = 0 under
DDIM at several step counts × η. ``report``: markdown tables and PNG plots in ``--out``.

Every stage resumes where it stopped: a finished training run or table cell is kept (its JSON
under ``--runs``), so after an interruption run the same command again.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from adaskip_ext import costs
from adaskip_ext.metrics import digits_classifier
from adaskip_ext.checkpoints import load_model
from adaskip_ext.images import grid, save_png, to_uint8
from adaskip_ext.io_utils import atomic_path
from adaskip_ext.model import AdaptiveUNet
from adaskip_ext.sampling import SamplerConfig, SamplingPlan, sample_images
from adaskip_ext.schedule import SkipSchedule
from adaskip_ext.timing import medians_in_turn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_report  # noqa: E402  (python/report.py: the tables and plots)

C_VALUES = (0.0, 1.0, 2.0, 3.0, 5.0)
SKIP_VARIANTS = ("zero", "duplicate", "interpolate")
# name -> the flags of its fine-tune from the plain model ("full")
VARIANTS = {
    "full-extra": ["--scheme", "full"],
    "zero": ["--scheme", "constant-k", "--skip-type", "zero", "--c", "2"],
    "duplicate": ["--scheme", "constant-k", "--skip-type", "duplicate", "--c", "2"],
    "interpolate": ["--scheme", "constant-k", "--skip-type", "interpolate", "--c", "2"],
    "zero-random": ["--scheme", "random", "--skip-type", "zero", "--c", "2"],
}
SEED = 0
# DDIM's x0 prediction stays unclipped, as in the DDIM paper's code and in the committed results
# (docs/results/digits), which were drawn before the package's sampler clipped by default.
CLIP_X0 = False


def train(name: str, flags: list[str], args: argparse.Namespace) -> Path:
    """Run (or resume) one training stage with the train CLI; returns its checkpoint."""
    out = args.runs / name
    command = [sys.executable, "-m", "adaskip_ext.train", "--preset", "digits", "--data", "digits",
               "--batch-size", "64", "--grad-clip", "1.0", "--ema-decay", "0.999",
               "--save-every", "500", "--log-every", "100", "--device", "cpu", "--seed", str(SEED),
               *flags, "--out", str(out)]
    if (out / "resume.pt").exists():
        command.append("--resume")
    print("$", " ".join(["python", *command[1:]]), flush=True)
    subprocess.run(command, check=True)
    return out / "last.safetensors"


def train_all(args: argparse.Namespace) -> None:
    full = train("full", ["--scheme", "full", "--steps", str(args.full_steps), "--lr", "5e-4",
                          "--warmup", "500"], args)
    for name, flags in VARIANTS.items():
        train(name, [*flags, "--init", str(full), "--steps", str(args.fine_tune_steps),
                     "--lr", "2e-4", "--warmup", "100"], args)


def cell(path: Path, compute: Callable[[], dict]) -> dict:
    """A finished cell's JSON, or compute it and write it (the unit the tables resume by)."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    return result


def sample_and_score(variant: str, c: float, steps: int, eta: float, args: argparse.Namespace,
                     grid_png: Path | None = None) -> dict:
    """``args.samples`` DDIM samples of one variant at one schedule, timed and scored."""
    model = load_model(args.runs / variant / "last.safetensors")
    started = time.perf_counter()
    samples = sample_images(model, args.samples, sampler="ddim", steps=steps, eta=eta, clip_x0=CLIP_X0,
                            schedule=SkipSchedule(model.num_levels, c=c), batch_size=args.batch_size,
                            seed=SEED, device="cpu", progress=False)
    seconds = time.perf_counter() - started
    images = to_uint8(samples)
    if grid_png is not None:
        save_png(grid(images[:64]), grid_png)
    score = digits_classifier.score(images)
    print(f"{variant:<12} c={c:g} DDIM-{steps} η={eta:g}: digits-FID {score.fid:7.2f}, "
          f"{score.coverage}/10 classes, {seconds:.0f} s", flush=True)
    return {"variant": variant, "c": c, "steps": steps, "eta": eta, "clip_x0": CLIP_X0,
            "samples": args.samples, "seconds": seconds, "fid": score.fid, "coverage": score.coverage,
            "confidence": score.confidence, "class_shares": score.class_shares}


def table1(args: argparse.Namespace) -> list[dict]:
    grids = args.out / "grids"
    grids.mkdir(parents=True, exist_ok=True)
    return [cell(args.runs / "table1" / f"{variant}-c{c:g}.json",
                 lambda v=variant, c=c: sample_and_score(v, c, args.ddim_steps, 0.0, args,
                                                         grids / f"{v}-c{c:g}.png"))
            for variant in VARIANTS for c in C_VALUES]


def timing_run(model: AdaptiveUNet, c: float, args: argparse.Namespace) -> None:
    """One of Table 2's timed sampling runs: ``--timing-batch`` images at c."""
    sample_images(model, args.timing_batch, sampler="ddim", steps=args.ddim_steps, clip_x0=CLIP_X0,
                  schedule=SkipSchedule(model.num_levels, c=c), batch_size=args.timing_batch,
                  seed=SEED, device="cpu", progress=False)


def time_saved(variant: str, c: float, args: argparse.Namespace) -> dict:
    """Median time at c and at c = 0, runs taken in turn, with the ideals of that schedule."""
    model = load_model(args.runs / variant / "last.safetensors")
    share = costs.shares(costs.depth_costs(model))
    full, skipped = medians_in_turn([lambda: timing_run(model, 0.0, args),
                                     lambda: timing_run(model, c, args)], args.repeats)
    plan = SamplingPlan.build(SamplerConfig("ddim", args.ddim_steps, clip_x0=CLIP_X0), SkipSchedule(model.num_levels, c=c), 1000)
    saved = 1 - skipped / full
    print(f"{variant:<12} c={c:g}: {saved:.1%} saved", flush=True)
    return {"variant": variant, "c": c, "clip_x0": CLIP_X0, "full_s": full, "skipped_s": skipped,
            "saved": saved,
            **{f"ideal_{k}": v for k, v in costs.ideal_savings(share, list(plan.skip_levels)).items()}}


def table2(args: argparse.Namespace) -> list[dict]:
    return [cell(args.runs / "table2" / f"{variant}-c{c:g}.json", lambda v=variant, c=c: time_saved(v, c, args))
            for variant in SKIP_VARIANTS for c in C_VALUES[1:]]


def table3(args: argparse.Namespace) -> list[dict]:
    rows = []
    for variant, c in (("zero", 2.0), ("full-extra", 0.0)):
        for steps in args.table3_steps:
            for eta in (0.0, 0.5, 1.0):
                rows.append(cell(args.runs / "table3" / f"{variant}-c{c:g}-s{steps}-eta{eta:g}.json",
                                 lambda v=variant, c=c, s=steps, e=eta: sample_and_score(v, c, s, e, args)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("train", "table1", "table2", "table3", "report", "all"))
    parser.add_argument("--runs", type=Path, default=Path("runs/digits-recipe"),
                        help="checkpoints and finished cells (default: runs/digits-recipe)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/digits"),
                        help="tables and plots (default: docs/results/digits)")
    parser.add_argument("--full-steps", type=int, default=10_000, help="plain model's training steps")
    parser.add_argument("--fine-tune-steps", type=int, default=3_000, help="each fine-tune's steps")
    parser.add_argument("--samples", type=int, default=1_000, help="samples per table cell")
    parser.add_argument("--batch-size", type=int, default=500, help="sampling batch size")
    parser.add_argument("--ddim-steps", type=int, default=100, help="DDIM steps of Tables 1 and 2")
    parser.add_argument("--table3-steps", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--timing-batch", type=int, default=64, help="Table 2's batch")
    parser.add_argument("--repeats", type=int, default=3, help="Table 2's timed runs per setting")
    args = parser.parse_args(argv)
    counts = {"--full-steps": args.full_steps, "--fine-tune-steps": args.fine_tune_steps,
              "--samples": args.samples, "--batch-size": args.batch_size, "--ddim-steps": args.ddim_steps,
              "--timing-batch": args.timing_batch, "--repeats": args.repeats,
              "--table3-steps": min(args.table3_steps)}
    for flag, value in counts.items():  # before any stage writes under --runs or --out
        if value < 1:
            parser.error(f"{flag} must be positive, got {value}")
    torch.set_num_threads(2)
    try:
        if args.stage in ("train", "all"):
            train_all(args)
        results = {}
        for name, stage in (("table1", table1), ("table2", table2), ("table3", table3)):
            if args.stage in (name, "all", "report"):
                results[name] = stage(args)
        if args.stage in ("report", "all"):
            write_report(args, results, machine=f"{platform.processor() or platform.machine()}, "
                                                f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    except subprocess.CalledProcessError as error:
        print(f"digits_recipe.py: a training stage failed (exit status {error.returncode}); run "
              "the same command again to resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
