"""Shared pieces of the command-line tools: device parsing and one-line error reporting."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

import torch

from .io_utils import UserFacingError


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
