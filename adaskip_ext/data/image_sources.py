"""Images as the metrics read them: uint8 (N, H, W, C) from a samples ``.npz``, an image folder,
CIFAR-10's python batches or the embedded digits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import to_uint8
from ..io_utils import UserFacingError
from .datasets import cifar10_batches, digits_images, image_files, parse_spec, read_image


def load_images(source: str) -> np.ndarray:
    """uint8 (N, H, W, C) from ``.npz`` (``arr_0``), an image folder, ``folder:PATH``,
    ``cifar10:PATH`` (the 50,000 training images) or ``digits`` (16×16)."""
    data = parse_spec(source)
    if data is None:  # a plain path
        path = Path(source)
    elif data.path is None:  # digits
        return to_uint8(digits_images(16))
    elif data.kind == "cifar10":
        return cifar10_batches(data.path)
    else:
        path = data.path
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
    """Every image under ``path`` as RGB, at its own size (FID needs them all alike)."""
    files = image_files(path)
    images = []
    for file in files:
        images.append(read_image(file, "RGB"))
        if images[-1].shape != images[0].shape:
            raise UserFacingError(f"{file}: {images[-1].shape[:2]} pixels, but {files[0].name} has "
                                  f"{images[0].shape[:2]}; FID needs one image size")
    return np.stack(images)
