"""CIFAR-10 for a GPU user: a pretrained DDPM, skip fine-tuning, 50k samples, FID (issue 5).

    python python/cifar10_recipe.py --pretrained ddpm-cifar10-32 --cifar cifar-10-batches-py \\
        --inception-weights pt_inception-2015-12-05-6726825d.pth
    python python/cifar10_recipe.py --quick          # every stage on a tiny model, in a minute

Stages, each through the package's CLIs and each skipped when its output exists (run the same
command again to resume): convert the pretrained model (a diffusers ``UNet2DModel`` folder or
the DDIM code's ``.ckpt``, from a local path); fine-tune it with the constant-k scheme and the
zero skip at c = 2; write the training set's FID statistics; sample ``--samples`` images (DDIM
uniform) from the pretrained and the fine-tuned model at c = 0 and c = 2; FID of each against
the statistics, and the sampling time. Writes ``WORK/README.md`` with the table and commands.

``--quick`` stands in for everything a CI machine cannot have: random CIFAR-shaped data, a
pretrained model that is the tiny preset trained for a few steps (written as a diffusers folder,
so the conversion runs), and a randomly initialised InceptionV3 (distances mean nothing then).
"""
from __future__ import annotations

import argparse
import json
import pickle
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from adaskip_ext.io_utils import atomic_path
from adaskip_ext.metrics.inception import random_inception_weights

FULL = {"train_steps": 20_000, "samples": 50_000, "batch_size": 500, "ddim_steps": 100,
        "preset": "ddpm_cifar10", "train_batch": 128, "lr": "2e-5", "warmup": "1000", "ema": "0.9999"}
# DDIM's x0 prediction unclipped, as in the DDIM code, whose published CIFAR-10 FIDs these rows
# are read against (the sample CLI clips by default).
CLIP_X0 = False
QUICK = {"train_steps": 2, "samples": 16, "batch_size": 8, "ddim_steps": 4, "preset": "tiny",
         "train_batch": 8, "lr": "2e-4", "warmup": "1", "ema": "0"}


def run(*command: str, log: list[str]) -> None:
    """Run one CLI step (``python -m …``), recording it for the report."""
    log.append("python " + " ".join(shlex.quote(c) for c in command))
    print("$", log[-1], flush=True)
    subprocess.run([sys.executable, *command], check=True)


def fake_cifar(folder: Path, images_per_batch: int = 20) -> Path:
    """Five CIFAR-10 python batches of random images (the --quick mode's data)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        data = rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8)
        with open(folder / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": data, b"labels": [0] * images_per_batch}, handle)
    return folder


def quick_inputs(work: Path, log: list[str]) -> tuple[Path, Path, Path]:
    """(pretrained diffusers folder, CIFAR folder, Inception weights) for --quick."""
    cifar = fake_cifar(work / "fake-cifar")  # also creates WORK
    weights = work / "random-inception.pth"
    if not weights.exists():
        random_inception_weights(weights)
    pretrained = work / "pretrained-diffusers"
    if not pretrained.exists():
        run("-m", "adaskip_ext.train", "--preset", "tiny", "--data", f"cifar10:{cifar}", "--scheme", "full",
            "--steps", "2", "--batch-size", "8", "--device", "cpu", "--out", str(work / "pretrain"), log=log)
        run("-m", "adaskip_ext.convert", str(work / "pretrain" / "last.safetensors"), str(pretrained),
            "--to", "diffusers", log=log)
    return pretrained, cifar, weights


def last_value(output: str) -> float:
    return float(output.strip().splitlines()[-1].split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", type=Path, help="diffusers UNet2DModel folder or DDIM .ckpt")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 python batches (cifar-10-batches-py)")
    parser.add_argument("--inception-weights", type=Path, help="pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("--work", type=Path, default=Path("runs/cifar10-recipe"))
    parser.add_argument("--quick", action="store_true", help="tiny model, random data and features")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    inputs = (("--pretrained", args.pretrained), ("--cifar", args.cifar),
              ("--inception-weights", args.inception_weights))
    if not args.quick:  # checked before anything is written under --work
        missing = [flag for flag, value in inputs if value is None]
        if missing:
            parser.error(f"{', '.join(missing)} needed (or --quick)")
        for flag, value in inputs:
            if not value.exists():
                parser.error(f"{flag} {value}: no such file or folder")
    size = QUICK if args.quick else FULL
    work = args.work
    log: list[str] = []
    if args.quick:
        args.pretrained, args.cifar, args.inception_weights = quick_inputs(work, log)
    device = ["--device", args.device] if not args.quick else ["--device", "cpu"]
    try:
        converted = work / "pretrained.safetensors"
        if not converted.exists():
            run("-m", "adaskip_ext.convert", str(args.pretrained), str(converted), log=log)
        tuned = work / "zero-c2"
        run("-m", "adaskip_ext.train", "--preset", size["preset"], "--data", f"cifar10:{args.cifar}",
            "--scheme", "constant-k", "--skip-type", "zero", "--c", "2", "--init", str(converted),
            "--steps", str(size["train_steps"]), "--batch-size", str(size["train_batch"]),
            "--lr", size["lr"], "--warmup", size["warmup"], "--ema-decay", size["ema"],
            "--out", str(tuned), *device,
            *(["--resume"] if (tuned / "resume.pt").exists() else []), log=log)
        stats = work / "cifar10-train-stats.npz"
        if not stats.exists():
            run("-m", "adaskip_ext.fid", "stats", f"cifar10:{args.cifar}", str(stats),
                "--inception-weights", str(args.inception_weights), *device, log=log)
        rows = []
        for name, checkpoint in (("pretrained", converted), ("zero-c2", tuned / "last.safetensors")):
            for c in (0, 2):
                rows.append(evaluate(name, checkpoint, c, stats, size, args, device, log))
    except subprocess.CalledProcessError as error:
        print(f"cifar10_recipe.py: a stage failed (exit status {error.returncode}); run the same "
              "command again to resume", file=sys.stderr)
        return 1
    write_table(work, rows, size, log)
    return 0


def evaluate(name: str, checkpoint: Path, c: int, stats: Path, size: dict, args: argparse.Namespace,
             device: list[str], log: list[str]) -> dict:
    """Sample (timed) and score one (model, c); the result is kept in WORK/results/."""
    result_file = args.work / "results" / f"{name}-c{c}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    out = args.work / "samples" / f"{name}-c{c}"
    started = time.perf_counter()
    run("-m", "adaskip_ext.sample", "--checkpoint", str(checkpoint), "--c", str(c),
        "--steps", str(size["ddim_steps"]), "--num-samples", str(size["samples"]),
        "--batch-size", str(size["batch_size"]), "--clip-x0" if CLIP_X0 else "--no-clip-x0",
        "--out", str(out), "--overwrite", *device, log=log)
    seconds = time.perf_counter() - started
    log.append(f"python -m adaskip_ext.fid compute {out / 'samples.npz'} {stats} "
               f"--inception-weights {args.inception_weights}")
    scored = subprocess.run([sys.executable, "-m", "adaskip_ext.fid", "compute", str(out / "samples.npz"),
                             str(stats), "--inception-weights", str(args.inception_weights), *device],
                            check=True, capture_output=True, text=True)
    row = {"model": name, "c": c, "samples": size["samples"], "clip_x0": CLIP_X0, "seconds": seconds,
           "fid": last_value(scored.stdout)}
    with atomic_path(result_file) as tmp:  # a cell cut off half-written would stop the resume
        tmp.write_text(json.dumps(row) + "\n")
    print(f"{name} c={c}: FID {row['fid']:.3f} in {seconds:.0f} s", flush=True)
    return row


def write_table(work: Path, rows: list[dict], size: dict, log: list[str]) -> None:
    lines = ["# CIFAR-10 recipe", "",
             f"{size['samples']} samples per row, DDIM-{size['ddim_steps']} uniform, seed 0, x0 "
             f"clipping: {'on' if CLIP_X0 else 'off (as the DDIM code)'}; FID against the training "
             "set's statistics; seconds include start-up.", "",
             "| model | c | FID | sampling s |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['c']} | {r['fid']:.3f} | {r['seconds']:.0f} |" for r in rows]
    lines += ["", "Commands run in this invocation (earlier stages were kept):", "", "```",
              *log, "```", ""]
    (work / "README.md").write_text("\n".join(lines))
    print(f"wrote {work / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
