"""adaskip: faster diffusion sampling by skipping the U-Net's deepest levels at high noise."""
from .checkpoints import load_model, save_model
from .diffusion import DiffusionConfig
from .model import AdaptiveUNet, UNetConfig
from .sampler import sample_images
from .schedule import SkipSchedule

__all__ = ["AdaptiveUNet", "DiffusionConfig", "SkipSchedule", "UNetConfig", "load_model",
           "sample_images", "save_model"]
__version__ = "0.1.0"
