"""Checkpoints: our own ``.safetensors`` format, the diffusers and DDIM readers, and
``load_model`` for all of them (``loading``); what the readers share is in ``readers``."""
from .loading import build_metadata, checkpoint_format, load_model, save_model

__all__ = ["build_metadata", "checkpoint_format", "load_model", "save_model"]
