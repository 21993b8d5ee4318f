"""What every benchmark shares: where results go, and the device, torch version and commit they name."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from adaskip_ext.io_utils import UserFacingError, check_writable
from adaskip_ext.ops import cpu_kernels

RESULTS = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    """``$ADASKIP_COMMIT`` when set (a lent GPU machine gets a copy of the tree whose history
    may be stale), else the short commit (``+changes`` when tracked files differ), else "unknown"."""
    if os.environ.get("ADASKIP_COMMIT"):
        return os.environ["ADASKIP_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, cwd=RESULTS.parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=RESULTS.parent).stdout.strip()
        return commit + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def metadata(device: str) -> dict:
    """Device, torch version, commit and date, for the head of every result file; on CPU also
    the model, torch's CPU capability (the ISA of its own kernels) and our kernels' clone."""
    meta = {"device": device_name(device), "torch": torch.__version__, "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device == "cpu":
        meta.update(cpu_model=cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                    cpu_kernels=cpu_kernels())
    return meta


def parser_for(doc: str, threads: int = 2) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc``, with the options every benchmark
    takes: --device, --threads (CPU threads per process, default ``threads``) and --out."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"CPU threads per process (default: {threads})")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"folder for the JSON and markdown results (default: {RESULTS})")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; refuse --device cuda without a device, --threads below 1 and an --out that cannot
    be written (one line, exit status 2; creating nothing: --out appears with the results); set
    the threads."""
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, f"{parser.prog}: --device cuda: no CUDA device is available\n")
    if args.threads < 1:
        parser.exit(2, f"{parser.prog}: --threads must be positive, got {args.threads}\n")
    try:
        check_writable(args.out)
    except UserFacingError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    torch.set_num_threads(args.threads)
    return args


def write_results(out: Path, stem: str, meta: dict, rows: list[dict], table: str) -> None:
    """``out/stem.json`` (meta + rows) and ``out/stem.md`` (the table)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
