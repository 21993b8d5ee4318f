"""Shared pieces of the command-line tools: help layout, device parsing and one-line error reporting."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import torch

from .io_utils import UserFacingError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: …)`` to an option's help once: not when the help already names its
    default (e.g. "default: the checkpoint's"), not for a switch (a flag taking no value, off
    unless given, or one of a pair whose help says which is the default) and not for a default
    of None (an unset value, which the help explains)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default is None or action.default is argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def resolve_device(name: str | None) -> torch.device:
    """``None``/``auto`` picks CUDA when present; an unavailable device is a user error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserFacingError(f"--device {name!r}: not a device name") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserFacingError(f"--device {name}: CUDA is not available on this machine")
    return device


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a CLI ``main``; user errors become one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
