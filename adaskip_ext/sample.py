"""``python -m adaskip_ext.sample``: draw images (the command is ``sampling.command``)."""
from . import cli
from .sampling.command import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    cli.run(main)
