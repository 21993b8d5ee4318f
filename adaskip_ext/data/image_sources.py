"""Images as the metrics read them: uint8 (N, H, W, C) from a samples ``.npz``, an image folder,
CIFAR-10's python batches or the embedded digits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import to_uint8
from ..io_utils import UserFacingError
from .datasets import IMAGE_SUFFIXES, digits_images, read_cifar_batch

def load_images(source: str) -> np.ndarray:
    """uint8 (N, H, W, C) from ``.npz`` (``arr_0``), an image folder, ``folder:PATH``,
    ``cifar10:PATH`` (the 50,000 training images) or ``digits`` (16×16)."""
    kind, _, location = source.partition(":")
    if kind == "digits" and not location:
        return to_uint8(digits_images(16))
    if kind == "cifar10" and location:
        files = [Path(location) / f"data_batch_{i}" for i in range(1, 6)]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise UserFacingError(f"{missing[0]}: CIFAR-10 batch file not found (expected the python version)")
        return np.concatenate([read_cifar_batch(f) for f in files])
    path = Path(location if kind == "folder" else source)
    if path.suffix == ".npz" and path.is_file():
        return _npz_images(path)
    if path.is_dir():
        return _folder_images(path)
    raise UserFacingError(f"{source}: not an .npz of samples, an image folder, 'cifar10:PATH' or 'digits'")

def _npz_images(path: Path) -> np.ndarray:
    try:
        with np.load(path) as data:
            images = data["arr_0"]
    except (OSError, ValueError, KeyError) as error:
        raise UserFacingError(f"{path}: cannot read samples under 'arr_0' ({error})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserFacingError(f"{path}: 'arr_0' must be uint8 (N, H, W, C) with C = 1 or 3, "
                              f"got {images.dtype} {images.shape}")
    return images

def _folder_images(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserFacingError(f"{path}: no image files found")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise UserFacingError(f"{file}: not a readable image ({error})") from None
        if images[-1].shape != images[0].shape:
            raise UserFacingError(f"{file}: {images[-1].shape[:2]} pixels, but {files[0].name} has "
                                  f"{images[0].shape[:2]}; FID needs one image size")
    return np.stack(images)
