"""Turning samples into files: uint8 arrays, a grid PNG, one PNG per sample, the ``.npz``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io_utils import atomic_directory, atomic_path


def to_uint8(samples: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 with ``round((x + 1) * 127.5)``, clipped."""
    values = torch.round((samples.float().cpu() + 1.0) * 127.5).clamp(0, 255)
    return values.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _pil(image: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 -> PIL image (greyscale for one channel)."""
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


GRID_CELL_WIDTH = 64  # pixels: a 16×16 digit is unreadable on a screen at its own size


def grid(images: np.ndarray, cell_width: int = GRID_CELL_WIDTH, padding: int = 2) -> np.ndarray:
    """(N, H, W, C) -> one (rows·(sH+p)+p, cols·(sW+p)+p, C) image, ⌈√N⌉ columns, black padding.

    Each image is scaled up by the integer factor s = ⌈cell_width / W⌉ (nearest neighbour, so
    pixels stay sharp squares); images at least ``cell_width`` wide keep their size.
    """
    if cell_width < 1:
        raise ValueError(f"cell_width must be positive, got {cell_width}")
    scale = -(-cell_width // images.shape[2])
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, height, width, channels = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * (height + padding) + padding, cols * (width + padding) + padding, channels),
                      dtype=np.uint8)
    for i, image in enumerate(images):
        top = padding + (i // cols) * (height + padding)
        left = padding + (i % cols) * (width + padding)
        canvas[top:top + height, left:left + width] = image
    return canvas


def save_png(image: np.ndarray, path: Path) -> None:
    """(H, W, C) uint8 to a PNG, atomically."""
    with atomic_path(path) as tmp:
        _pil(image).save(tmp, format="PNG")


def save_npz(images: np.ndarray, path: Path) -> None:
    """(N, H, W, C) uint8 under key ``arr_0``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, arr_0=images)


def save_image_folder(images: np.ndarray, folder: Path) -> None:
    """(N, H, W, C) uint8 -> one PNG per sample in ``folder``, which appears (or is replaced) whole."""
    with atomic_directory(folder) as staging:
        for i, image in enumerate(images):
            _pil(image).save(staging / f"{i:06d}.png")
