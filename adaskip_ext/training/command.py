"""The train command (``python -m adaskip_ext.train``): train an adaptive U-Net with one of the
paper's schemes. The flags are the fields of ``TrainConfig``; ``Trainer`` does the work.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

import torch

from .. import cli, distributed
from ..io_utils import InvalidSetting
from ..model import PRESETS, SKIP_TYPES
from .draws import SCHEMES
from .trainer import TrainConfig, Trainer

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.train",
        description="Train a skip-aware DDPM U-Net (k = number of deepest levels skipped).",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULTS.preset, help="model size")
    parser.add_argument("--data", default=DEFAULTS.data,
                        help="'digits' (embedded), 'folder:PATH' or 'cifar10:PATH' (python batches)")
    parser.add_argument("--scheme", choices=SCHEMES, default=DEFAULTS.scheme,
                        help="full: k=0; random: k uniform per batch; constant-k: one k(t) per batch")
    parser.add_argument("--skip-type", choices=SKIP_TYPES, default=DEFAULTS.skip_type,
                        help="what feeds the first active up block when levels are skipped")
    parser.add_argument("--c", type=float, default=DEFAULTS.c,
                        help="exponent of the skip schedule k(t) (constant-k training; stored as the sampling default)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="total optimiser steps")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="global batch size")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate after warm-up")
    parser.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="linear LR warm-up steps")
    parser.add_argument("--grad-clip", type=float, default=DEFAULTS.grad_clip,
                        help="gradient norm clip (0 disables)")
    parser.add_argument("--ema-decay", type=float, default=DEFAULTS.ema_decay,
                        help="EMA decay (0 disables EMA)")
    parser.add_argument("--init", default=None,
                        help="start from this checkpoint's weights: adaskip, diffusers folder or DDIM "
                             ".ckpt (default: fresh weights of --preset)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT/resume.pt")
    parser.add_argument("--save-every", type=int, default=DEFAULTS.save_every,
                        help="checkpoint interval in steps")
    parser.add_argument("--log-every", type=int, default=DEFAULTS.log_every,
                        help="loss-log interval in steps")
    parser.add_argument("--out", default=DEFAULTS.out, help="output directory")
    parser.add_argument("--device", default=DEFAULTS.device,
                        help="cpu, cuda, cuda:1, … or auto (CUDA if present)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of every random draw")
    return parser


def check(args: argparse.Namespace) -> TrainConfig:
    """The configuration the flags describe; a bad value is reported against its flag."""
    try:
        return TrainConfig(**{field.name: getattr(args, field.name)
                              for field in dataclasses.fields(TrainConfig)})
    except InvalidSetting as error:
        raise error.as_flag() from None


def train_on_rank(config: TrainConfig, ranks: distributed.Ranks, device: torch.device) -> int:
    try:
        trainer = Trainer(config, device, ranks)
    except InvalidSetting as error:
        raise error.as_flag() from None
    trainer.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    config = check(build_parser().parse_args(argv))
    return distributed.run_on_ranks(train_on_rank, config, cli.resolve_device(config.device))

