"""``python -m adaskip_ext.convert SRC DST``: rewrite a checkpoint in our format or as diffusers.

SRC may be an adaskip ``.safetensors``, a diffusers ``UNet2DModel`` folder or a DDIM /
pytorch_diffusion ``.ckpt``. DST is written atomically and never replaced without ``--overwrite``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from . import cli
from .checkpoints import load_model, save_model
from .checkpoints.diffusers_format import save_diffusers
from .io_utils import UserFacingError, check_new_output
from .model import SKIP_TYPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.convert",
        description="Convert a U-Net checkpoint to the adaskip format, or to a diffusers "
                    "UNet2DModel folder for full-network (k = 0) use.",
    )
    parser.add_argument("src", metavar="SRC",
                        help="adaskip .safetensors, diffusers UNet2DModel folder or DDIM .ckpt")
    parser.add_argument("dst", metavar="DST", help="output .safetensors file (or folder with --to diffusers)")
    parser.add_argument("--to", choices=("adaskip", "diffusers"), default="adaskip",
                        help="output format (default: adaskip)")
    parser.add_argument("--skip-type", choices=SKIP_TYPES, default=None,
                        help="set or override the skip type (default: the stored one, else 'zero')")
    parser.add_argument("--fresh-bridges", action="store_true",
                        help="with --skip-type interpolate: add zero-initialised bridges if SRC has none")
    parser.add_argument("--resolution", type=int, default=None,
                        help="image size of a DDIM .ckpt, which does not record it (default: 32)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """SRC is loaded (and every flag checked) before DST is looked at, so a bad input is
    reported as such and leaves nothing behind."""
    args = build_parser().parse_args(argv)
    if args.resolution is not None and args.resolution < 1:
        raise UserFacingError(f"--resolution must be positive, got {args.resolution}")
    model = load_model(args.src, skip_type=args.skip_type, fresh_bridges=args.fresh_bridges,
                       resolution=args.resolution)
    destination = Path(args.dst)
    check_new_output(destination, "DST", args.overwrite)
    if args.to == "adaskip" and destination.is_dir():
        raise UserFacingError(f"DST {destination}: is a folder; give a .safetensors file path")
    if args.to == "diffusers":
        if model.skip_type == "interpolate":
            print("note: diffusers' UNet2DModel runs the full network only (k = 0); "
                  "the interpolate bridges are dropped")
        save_diffusers(model, destination)
        print(f"wrote {destination} (diffusers UNet2DModel folder)")
    else:
        save_model(model, destination)
        print(f"wrote {destination} (adaskip checkpoint, skip type {model.skip_type})")
    return 0


if __name__ == "__main__":
    cli.run(main)
