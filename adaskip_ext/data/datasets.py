"""Training data as one tensor (N, C, R, R) in [-1, 1]: embedded digits, an image folder, CIFAR-10.

Nothing is downloaded. The digits are scikit-learn's copy of the UCI handwritten digits (1,797
images, 8×8, CC BY 4.0), upscaled bilinearly to the model's resolution.
CIFAR-10's python batches are read with a restricted unpickler that admits only numpy arrays.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io_utils import UserFacingError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclasses.dataclass
class Dataset:
    """Images (N, C, R, R) float32 in [-1, 1]; ``flip``: whether horizontal flips are valid."""

    images: torch.Tensor
    flip: bool
    name: str


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > resolution)


def digits_images(resolution: int = 16) -> torch.Tensor:
    """scikit-learn's digits, (1797, 1, R, R) in [-1, 1]."""
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    return (_resize(raw, resolution) * 2.0 - 1.0).clamp(-1.0, 1.0)


def _convert_channels(images: torch.Tensor, channels: int, source: str) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 1:
        return images.mean(dim=1, keepdim=True)
    if images.shape[1] == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    raise UserFacingError(f"{source}: images have {images.shape[1]} channels, the model needs {channels}")


def folder_images(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Every image file under ``path`` (recursively), resized to R×R: (N, C, R, R) in [-1, 1]."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise UserFacingError(f"{path}: not a directory of images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserFacingError(f"{path}: no image files found")
    mode = "L" if channels == 1 else "RGB"
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert(mode).resize((resolution, resolution), Image.Resampling.BICUBIC)
                array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise UserFacingError(f"{file}: not a readable image ({error})") from None
        images.append(torch.from_numpy(array.reshape(resolution, resolution, -1)).permute(2, 0, 1))
    return _convert_channels(torch.stack(images), channels, str(path))


def _dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    """``np.dtype`` taking the integer flags of old pickles (NumPy 2.4 deprecates them)."""
    return np.dtype(spec, align=bool(align), copy=bool(copy))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR-10's batches contain: numpy arrays and dtypes."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        if name == "_reconstruct":  # numpy 1 and 2 name its module differently; take it from an array
            return np.ndarray.__reduce__(np.zeros(0))[0]
        return _dtype if name == "dtype" else np.ndarray


def read_cifar_batch(file: Path) -> np.ndarray:
    """One CIFAR-10 python batch: (N, 32, 32, 3) uint8."""
    try:
        with open(file, "rb") as handle:
            content = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        data = content[b"data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError("'data' is not an (N, 3072) uint8 array")
    except OSError as error:
        raise UserFacingError(f"{file}: cannot read it ({error.strerror or error})") from None
    except Exception as error:  # unpickling arbitrary bytes fails in many ways (fuzzed: OverflowError, …)
        raise UserFacingError(f"{file}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def cifar10_images(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """The 50,000 training images from ``data_batch_1`` … ``data_batch_5`` under ``path``."""
    files = [path / f"data_batch_{i}" for i in range(1, 6)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserFacingError(f"{missing[0]}: CIFAR-10 batch file not found (expected the python version)")
    array = np.concatenate([read_cifar_batch(f) for f in files])
    images = torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _convert_channels(_resize(images, resolution), channels, str(path))


def load_dataset(spec: str, resolution: int, channels: int) -> Dataset:
    """``digits``, ``folder:PATH`` or ``cifar10:PATH``."""
    kind, _, location = spec.partition(":")
    if kind == "digits" and not location:
        images = _convert_channels(digits_images(resolution), channels, "digits")
        return Dataset(images, flip=False, name="digits")
    if kind == "folder" and location:
        return Dataset(folder_images(Path(location), resolution, channels), flip=True, name=spec)
    if kind == "cifar10" and location:
        return Dataset(cifar10_images(Path(location), resolution, channels), flip=True, name=spec)
    raise UserFacingError(f"--data {spec!r}: expected 'digits', 'folder:PATH' or 'cifar10:PATH'")
