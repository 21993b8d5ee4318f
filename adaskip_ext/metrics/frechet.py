"""Fréchet distance between feature statistics, and batched feature extraction (pytorch-fid's
computation; any feature network: InceptionV3 for FID, the digits classifier for digits-FID).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io_utils import UserFacingError, atomic_path

Features = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, H, W, C) -> (B, D) float

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½): pytorch-fid's computation (which adds εI to both
    covariances when their product is near singular). mu: (D,); sigma: (D, D)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics do not match: mu {mu1.shape} and {mu2.shape}, "
                         f"sigma {sigma1.shape} and {sigma2.shape}")
    return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))

def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and covariance (D, D), float64, as pytorch-fid computes them."""
    if features.shape[0] < 2:
        raise UserFacingError(f"FID needs at least 2 images, got {features.shape[0]}")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)

@torch.no_grad()
def extract(images: np.ndarray, features: Features, batch_size: int = 50,
            progress: bool = True) -> np.ndarray:
    """Features of uint8 (N, H, W, C) images in batches: (N, D) float32."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", unit="batch",
                      disable=not progress):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        out.append(features(batch).float().cpu().numpy())
    return np.concatenate(out)

def load_statistics(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` and ``sigma`` from a pytorch-fid statistics ``.npz``."""
    try:
        with np.load(path) as data:
            return data["mu"], data["sigma"]
    except (OSError, ValueError, KeyError) as error:
        raise UserFacingError(f"{path}: not FID statistics with 'mu' and 'sigma' ({error})") from None

def save_statistics(mu: np.ndarray, sigma: np.ndarray, path: Path) -> None:
    """pytorch-fid's layout (``mu``, ``sigma``), written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, mu=mu, sigma=sigma)

def is_statistics(source: str) -> bool:
    """Whether ``source`` is an ``.npz`` holding ``mu`` and ``sigma`` (an unreadable one is not:
    reading it as images then names the problem)."""
    if not source.endswith(".npz") or not Path(source).is_file():
        return False
    try:
        with np.load(source) as data:
            return "mu" in data.files and "sigma" in data.files
    except (OSError, ValueError):
        return False
