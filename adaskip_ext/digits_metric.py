"""``python -m adaskip_ext.digits_metric``: digits-FID, class coverage and confidence of samples.

    python -m adaskip_ext.digits_metric samples.npz
    python -m adaskip_ext.digits_metric --train   # retrain, report held-out accuracy, write weights

The classifier and the score are ``metrics.digits_classifier``'s.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from safetensors.torch import save_file

from . import cli
from .data import load_images
from .embedded import classifier_weights
from .io_utils import UserFacingError, atomic_path
from .metrics.digits_classifier import score, train_classifier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adaskip_ext.digits_metric",
                                     description="digits-FID, class coverage and confidence of "
                                                 "16×16 digit samples (a small-scale proxy, not FID)",
                                     formatter_class=cli.HelpFormatter)
    parser.add_argument("samples", nargs="?", help=".npz (uint8 'arr_0') or image folder")
    parser.add_argument("--train", action="store_true",
                        help="retrain the classifier and write its weights into the package")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train and args.samples is not None:
        raise UserFacingError("give either a samples .npz or image folder, or --train, not both")
    if args.train:
        model, held_out = train_classifier()
        with atomic_path(classifier_weights()) as tmp:
            save_file(model.state_dict(), str(tmp))
        print(f"held-out accuracy {held_out:.4f}; wrote {classifier_weights()}")
        return 0
    if args.samples is None:
        raise UserFacingError("give a samples .npz or image folder, or --train")
    result = score(load_images(args.samples))
    print(f"digits-FID {result.fid:.3f}, classes covered {result.coverage}/10, "
          f"mean confidence {result.confidence:.3f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
