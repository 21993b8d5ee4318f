"""Checkpoints: our own ``.safetensors`` format (``adaskip_format``), the diffusers and DDIM
readers, and ``load_model`` for all of them (``loading``); what the readers share is in ``readers``."""
from .adaskip_format import build_metadata, save_model
from .loading import checkpoint_format, inspect_checkpoint, load_model

__all__ = ["build_metadata", "checkpoint_format", "inspect_checkpoint", "load_model", "save_model"]
