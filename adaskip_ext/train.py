"""``python -m adaskip_ext.train``: train a model (the command is ``training.command``)."""
from . import cli
from .training.command import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    cli.run(main)
