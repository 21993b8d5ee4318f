"""Training data as one tensor (N, C, R, R) in [-1, 1]: embedded digits, an image folder, CIFAR-10;
the data specs that name them, and the file readers the metrics' image sources share.

Nothing is downloaded. The digits are scikit-learn's copy of the UCI handwritten digits (1,797
images, 8×8, CC BY 4.0), upscaled bilinearly to the model's resolution.
CIFAR-10's python batches are read with a restricted unpickler that admits only numpy arrays.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Literal

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


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: ``digits`` (``path`` None), ``folder:PATH`` or ``cifar10:PATH``."""

    kind: Literal["digits", "folder", "cifar10"]
    path: Path | None


def parse_spec(spec: str) -> DataSpec | None:
    """``digits``, ``folder:PATH`` or ``cifar10:PATH``; None for anything else (callers word the error)."""
    kind, _, location = spec.partition(":")
    if kind == "digits" and not location:
        return DataSpec("digits", None)
    if kind == "folder" and location:
        return DataSpec("folder", Path(location))
    if kind == "cifar10" and location:
        return DataSpec("cifar10", Path(location))
    return None


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


def image_files(path: Path) -> list[Path]:
    """Every image file under ``path`` (recursively, by suffix), sorted."""
    if not path.is_dir():
        raise UserFacingError(f"{path}: not a directory of images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserFacingError(f"{path}: no image files found")
    return files


def read_image(file: Path, mode: str, size: int | None = None) -> np.ndarray:
    """One image converted to PIL ``mode`` (and resized bicubically to size×size): uint8 (H, W, C)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image = image.convert(mode)
            if size is not None:
                image = image.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserFacingError(f"{file}: not a readable image ({error})") from None
    return array.reshape(array.shape[0], array.shape[1], -1)


def folder_images(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Every image file under ``path`` (recursively), resized to R×R: (N, C, R, R) in [-1, 1]."""
    mode = "L" if channels == 1 else "RGB"
    arrays = np.stack([read_image(file, mode, resolution) for file in image_files(path)])
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _convert_channels(images, channels, str(path))


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
    except OSError as error:
        raise UserFacingError(f"{file}: cannot read it ({error.strerror or error})") from None
    except Exception as error:  # unpickling arbitrary bytes fails in many ways (fuzzed: OverflowError, …)
        raise UserFacingError(f"{file}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    data = content.get(b"data") if isinstance(content, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserFacingError(f"{file}: not a CIFAR-10 python batch (no (N, 3072) uint8 array under 'data')")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def cifar10_batches(path: Path) -> np.ndarray:
    """The 50,000 training images from ``data_batch_1`` … ``data_batch_5`` under ``path``:
    (N, 32, 32, 3) uint8."""
    files = [path / f"data_batch_{i}" for i in range(1, 6)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserFacingError(f"{missing[0]}: CIFAR-10 batch file not found (expected the python version)")
    return np.concatenate([read_cifar_batch(f) for f in files])


def cifar10_images(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """CIFAR-10's training images under ``path``, resized to R×R: (N, C, R, R) in [-1, 1]."""
    images = torch.from_numpy(cifar10_batches(path)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _convert_channels(_resize(images, resolution), channels, str(path))


def load_dataset(spec: str, resolution: int, channels: int) -> Dataset:
    """``digits``, ``folder:PATH`` or ``cifar10:PATH``."""
    data = parse_spec(spec)
    if data is None:
        raise UserFacingError(f"--data {spec!r}: expected 'digits', 'folder:PATH' or 'cifar10:PATH'")
    if data.path is None:  # digits
        images = _convert_channels(digits_images(resolution), channels, "digits")
        return Dataset(images, flip=False, name="digits")
    read = folder_images if data.kind == "folder" else cifar10_images
    return Dataset(read(data.path, resolution, channels), flip=True, name=spec)
