"""``python -m adaskip_ext.info [PATH]``: what kernels this install has and what each op runs on,
then, given PATH, a readable summary of a checkpoint in any format we read, from its metadata and
its weights' shapes (the header, where the format has one): the model is not built."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

import torch

from . import cli, ops
from .checkpoints.loading import Checkpoint, inspect_checkpoint
from .diffusion import DiffusionConfig
from .io_utils import UserFacingError
from .model import UNetConfig
from .sampling.plan import time_sequence
from .schedule import SkipSchedule

FORMAT_NAMES = {
    "adaskip": "adaskip .safetensors",
    "diffusers": "diffusers UNet2DModel folder",
    "torch": "torch pickle (DDIM .ckpt), read with weights_only=True",
}


def _yes_no(value: object) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def describe_model(c: UNetConfig) -> str:
    """One line: levels, channels, blocks, attention, image size."""
    attention = ", ".join(f"{r}×{r}" for r in c.attn_resolutions) or "none"
    blocks = "block" if c.num_res_blocks == 1 else "blocks"
    return (f"{c.num_levels} levels, ch {c.ch} × {c.ch_mult}, {c.num_res_blocks} res {blocks} per "
            f"level, attention at {attention}, {c.resolution}×{c.resolution} images, "
            f"{c.in_channels} → {c.out_channels} channels, GroupNorm {c.num_groups} groups, "
            f"dropout {c.dropout:g}")


def summary(path: Path, checkpoint: Checkpoint, steps: int, time_seq: str) -> list[tuple[str, str]]:
    """(label, value) rows describing the checkpoint at ``path``: its metadata, and parameter
    counts from the weights' shapes (the model has no buffers; it is never built)."""
    metadata = checkpoint.metadata
    diffusion = DiffusionConfig.from_dict(metadata.get("diffusion", DiffusionConfig().to_dict()))
    schedule_meta = metadata.get("schedule", {})
    c = float(schedule_meta.get("c", 0.0))
    kind = checkpoint.format
    format_name = FORMAT_NAMES[kind]
    if kind == "adaskip":
        format_name += f" (format version {metadata['format_version']})"
    rows = [("file", str(path)), ("format", format_name)]
    if kind == "adaskip" and "converted_from" in metadata:
        rows.append(("converted from", str(metadata["converted_from"])))
    if kind == "torch":
        rows.append(("contents", str(metadata["converted_from"])))

    sizes = {name: math.prod(shape) for name, shape in checkpoint.weights.shapes.items()}
    total = sum(sizes.values())
    bridges = sum(size for name, size in sizes.items() if name.startswith("bridges."))
    parameters = f"{total:,}" + (f" (of which bridges {bridges:,})" if bridges else "")
    try:
        timesteps = time_sequence(time_seq, steps, diffusion.num_timesteps)
    except ValueError as error:
        raise UserFacingError(f"--steps: {error}") from None
    shares = SkipSchedule(checkpoint.config.num_levels, c).shares(timesteps, diffusion.num_timesteps)
    rows += [
        ("model", describe_model(checkpoint.config)),
        ("parameters", parameters),
        ("skip type", checkpoint.skip_type),
        ("diffusion", f"T = {diffusion.num_timesteps}, {diffusion.beta_schedule} betas "
                      f"{diffusion.beta_start:g} … {diffusion.beta_end:g}, variance {diffusion.variance_type}"),
        ("schedule", f"c = {c:g}, t = {schedule_meta.get('normalisation', 'unknown')}"),
        (f"k shares (DDIM-{steps} {time_seq})",
         ", ".join(f"k={k} {share:.0%}" for k, share in shares.items())),
        ("training scheme", str(metadata.get("training_scheme", "unknown"))),
        ("EMA weights", _yes_no(metadata.get("ema"))),
    ]
    return rows


def kernel_report() -> list[tuple[str, str]]:
    """(label, value) rows: what was built, what is usable now, and each op's backend per device."""
    built = ops.build_info()
    if ops.native.LOAD_ERROR is not None:
        extension = f"not loaded ({ops.native.LOAD_ERROR})"
    elif built.get("cuda"):
        extension = (f"CPU + CUDA kernels, built with torch {built['torch']}, CUDA "
                     f"{built['cuda_version']}, arch {built['arch_list']}")
    else:
        extension = f"CPU kernels only, built with torch {built.get('torch', 'unknown')}"
    rows = [("extension", extension)]
    if ops.native.LOAD_ERROR is None:
        rows += build_rows(built)
    cuda = (f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
            if torch.cuda.is_available() else "no device")
    rows += [("torch", torch.__version__),
             ("CUDA now", cuda),
             ("triton", ops.backend.triton_version() or "not installed"),
             ("forced backend", ops.forced_backend() or "none (automatic)")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for op in ops.OPS:
        rows.append((op, ", ".join(f"{device}: {_backend_or_error(op, device)}"
                                    for device in devices)))
    return rows


def build_rows(built: dict) -> list[tuple[str, str]]:
    """What the build found (torch's CUDA, nvcc, why CUDA kernels are missing if they are) and
    which clone of the CPU kernels this CPU runs."""
    nvcc = built.get("nvcc")
    toolkit = f" ({built['toolkit']})" if built.get("toolkit") else ""
    rows = [("torch CUDA at build", built.get("torch_cuda") or "none (a CPU build of torch)"),
            ("nvcc at build", f"{nvcc}{toolkit}" if nvcc else "not used")]
    if built.get("cuda"):
        rows.append(("CUDA kernels", "built"))
    else:
        rows.append(("CUDA kernels", f"not built: {built.get('cuda_reason') or 'no reason recorded'}"))
    rows.append(("CPU kernels", ops.cpu_kernels() or "unknown"))
    return rows


def _backend_or_error(op: str, device: str) -> str:
    try:
        return ops.choose(op, device)
    except RuntimeError:  # a forced backend that cannot run here
        forced = ops.forced_backend()
        return f"{forced} unavailable: {ops.backend.reason_unavailable(forced, device)}"


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.info",
        description="Show the compiled kernels and the backend each fused op runs on "
                    "(ADASKIP_BACKEND=native|triton|reference forces one), and summarise a "
                    "U-Net checkpoint when PATH is given.")
    parser.add_argument("path", metavar="PATH", nargs="?",
                        help="adaskip .safetensors, diffusers UNet2DModel folder or DDIM .ckpt")
    parser.add_argument("--resolution", type=int, default=None,
                        help="image size of a DDIM .ckpt, which does not record it (default: 32)")
    parser.add_argument("--steps", type=int, default=100,
                        help="sampling steps for the k shares (default: 100)")
    parser.add_argument("--time-seq", choices=("uniform", "quad"), default="uniform",
                        help="time sequence for the k shares (default: uniform)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = kernel_report()
    except ValueError as error:  # a bad ADASKIP_BACKEND
        raise UserFacingError(str(error)) from None
    if args.path is not None:
        path = Path(args.path)
        checkpoint = inspect_checkpoint(path, resolution=args.resolution)
        print_rows(summary(path, checkpoint, args.steps, args.time_seq))
        print()
    print_rows(rows)
    return 0


if __name__ == "__main__":
    cli.run(main)
