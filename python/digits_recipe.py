"""The paper's experiments at digits scale, with the package's own CLIs (issue 5's recipe).

    python python/digits_recipe.py train [--runs runs/digits-recipe]

``train``: a plain model (``full``, scheme full), then six fine-tunes from its weights, all with
the same number of steps so every variant has seen the same training: ``full`` continued
(``full-extra``), ``zero``, ``duplicate`` and ``interpolate`` with the constant-k scheme at
c = 2, and ``zero-random`` with the random scheme. Every stage resumes where it stopped: run the
same command again after an interruption.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# The embedded model's recipe (README, "The embedded model"), for the plain model.
BASE = ["--preset", "digits", "--data", "digits", "--batch-size", "64", "--grad-clip", "1.0",
        "--ema-decay", "0.999", "--save-every", "500", "--log-every", "100", "--device", "cpu",
        "--seed", "0"]
FULL_STEPS = 10_000
FINE_TUNE_STEPS = 3_000
# name -> the flags of its fine-tune from the plain model
VARIANTS = {
    "full-extra": ["--scheme", "full"],
    "zero": ["--scheme", "constant-k", "--skip-type", "zero", "--c", "2"],
    "duplicate": ["--scheme", "constant-k", "--skip-type", "duplicate", "--c", "2"],
    "interpolate": ["--scheme", "constant-k", "--skip-type", "interpolate", "--c", "2"],
    "zero-random": ["--scheme", "random", "--skip-type", "zero", "--c", "2"],
}


def train(name: str, flags: list[str], runs: Path) -> Path:
    """Run (or resume) one training stage; returns its checkpoint."""
    out = runs / name
    command = [sys.executable, "-m", "adaskip_ext.train", *BASE, *flags, "--out", str(out)]
    if (out / "resume.pt").exists():
        command.append("--resume")
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return out / "last.safetensors"


def train_all(runs: Path) -> None:
    full = train("full", ["--scheme", "full", "--steps", str(FULL_STEPS), "--lr", "5e-4",
                          "--warmup", "500"], runs)
    for name, flags in VARIANTS.items():
        train(name, [*flags, "--init", str(full), "--steps", str(FINE_TUNE_STEPS), "--lr", "2e-4",
                     "--warmup", "100"], runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("train",))
    parser.add_argument("--runs", type=Path, default=Path("runs/digits-recipe"),
                        help="where the checkpoints go (default: runs/digits-recipe)")
    args = parser.parse_args(argv)
    try:
        train_all(args.runs)
    except subprocess.CalledProcessError as error:
        print(f"digits_recipe.py: a stage failed (exit status {error.returncode}); run the same "
              "command again to resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
