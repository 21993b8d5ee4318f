"""``python -m adaskip_ext.fid``: FID between sample files, image sets and statistics.

    python -m adaskip_ext.fid compute samples.npz cifar10-train-stats.npz
    python -m adaskip_ext.fid stats cifar10:cifar-10-batches-py cifar10-train-stats.npz

pytorch-fid's InceptionV3 features and Fréchet distance (``metrics``). Images travel as uint8
(N, H, W, C), as pytorch-fid reads PNG files. ``--metric digits`` uses the shipped digits
classifier's features instead (``metrics.digits_classifier``): a proxy for small-scale work, not
comparable with CIFAR-10 FID.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import cli
from .data import load_images
from .io_utils import UserFacingError, check_new_output
from .metrics.digits_classifier import classifier_features, load_classifier
from .metrics.frechet import (Features, extract, frechet_distance, is_statistics, load_statistics,
                              save_statistics, statistics)
from .metrics.inception import WEIGHTS_ENV, inception, inception_features


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.fid",
        description="Fréchet Inception Distance with pytorch-fid's InceptionV3, between samples "
                    "(.npz with uint8 'arr_0', or an image folder) and reference statistics or "
                    "a second image set.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("command", choices=("compute", "stats"),
                        help="compute A B: FID between A and B (each images or statistics); "
                             "stats SOURCE OUT: write SOURCE's statistics to OUT.npz")
    parser.add_argument("paths", nargs=2, metavar="PATH",
                        help="images: .npz, image folder, folder:PATH, cifar10:PATH, digits; "
                             "statistics: .npz with mu and sigma")
    parser.add_argument("--metric", choices=("inception", "digits"), default="inception",
                        help="features: pytorch-fid's InceptionV3, or the shipped digits "
                             "classifier (digits-FID, a small-scale proxy)")
    parser.add_argument("--inception-weights", type=Path, default=None,
                        help=f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: "
                             f"${WEIGHTS_ENV}, else pytorch-fid downloads it)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per feature batch")
    parser.add_argument("--num-images", type=int, default=None,
                        help="use the first N images of each image set only (default: all)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, … or auto (CUDA if present)")
    parser.add_argument("--overwrite", action="store_true", help="stats: replace OUT")
    return parser


def feature_function(args: argparse.Namespace, device: torch.device) -> Features:
    if args.metric == "digits":
        return classifier_features(load_classifier(device), device)
    return inception_features(inception(args.inception_weights, device), device)


def read_source(source: str, args: argparse.Namespace) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``source``'s statistics (mu, sigma) if it holds them, else its uint8 (N, H, W, C) images
    (the first ``--num-images``)."""
    if is_statistics(source):
        return load_statistics(Path(source))
    images = load_images(source)[: args.num_images]
    if len(images) < 2:
        raise UserFacingError(f"{source}: FID needs at least 2 images, got {len(images)}")
    print(f"{source}: {len(images)} images of {images.shape[1]}×{images.shape[2]}×{images.shape[3]}")
    return images


def source_statistics(source: np.ndarray | tuple[np.ndarray, np.ndarray], args: argparse.Namespace,
                      features: Callable[[], Features]) -> tuple[np.ndarray, np.ndarray]:
    """Statistics as read, or those of the images' features."""
    if isinstance(source, tuple):
        return source
    return statistics(extract(source, features(), args.batch_size).astype(np.float64))


def main(argv: Sequence[str] | None = None) -> int:
    """Every input (both paths, the feature network) is read before OUT is looked at."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or (args.num_images is not None and args.num_images < 2):
        raise UserFacingError("--batch-size must be positive and --num-images at least 2")
    device = cli.resolve_device(args.device)
    cache: list[Features] = []

    def features() -> Features:  # built once, and only when images need it
        if not cache:
            cache.append(feature_function(args, device))
        return cache[0]

    if args.command == "stats":
        source, out = read_source(args.paths[0], args), Path(args.paths[1])
        if not isinstance(source, tuple):
            features()  # the feature network's weights are an input too: load them before OUT
        check_new_output(out, "OUT", args.overwrite)
        mu, sigma = source_statistics(source, args, features)
        save_statistics(mu, sigma, out)
        print(f"wrote {out} ({mu.shape[0]} features)")
        return 0
    sources = [read_source(p, args) for p in args.paths]
    (mu1, sigma1), (mu2, sigma2) = (source_statistics(s, args, features) for s in sources)
    try:
        value = frechet_distance(mu1, sigma1, mu2, sigma2)
    except ValueError as error:
        raise UserFacingError(f"FID: {error}") from None
    print(f"{'digits-FID' if args.metric == 'digits' else 'FID'}: {value:.4f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
