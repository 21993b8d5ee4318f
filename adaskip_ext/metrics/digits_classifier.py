"""A metric that runs anywhere: a small digits classifier, its features' Fréchet distance
("digits-FID") and its predictions' class coverage and confidence.

A proxy for small-scale work on the embedded digits (16×16 greyscale), not CIFAR-10 FID. The
classifier (``weights/digits_classifier.safetensors``) was trained with ``train_classifier`` on
the digits training split (scikit-learn's ``train_test_split``, 25% held out, random_state 0).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ..data import digits_images
from ..embedded import classifier_weights
from ..images import to_uint8
from ..io_utils import UserFacingError
from .frechet import Features, extract, frechet_distance, statistics

RESOLUTION = 16

FEATURES = 128

BATCH_SIZE = 500  # images per feature batch: bounds the memory a large sample set takes

class DigitsClassifier(nn.Module):
    """(B, 1, 16, 16) in [-1, 1] -> logits (B, 10); ``features`` gives the (B, 128) penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),   # 8×8
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),   # 4×4
            nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, held-out images, held-out labels): 75/25, random_state 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = digits_images(RESOLUTION), torch.from_numpy(load_digits().target)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=0)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]

def accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(images).argmax(1) == labels).float().mean().item()

def train_classifier(epochs: int = 30, seed: int = 0) -> tuple[DigitsClassifier, float]:
    """Adam on the training split with ±1-pixel shifts; returns (model, held-out accuracy)."""
    torch.manual_seed(seed)
    train_x, train_y, test_x, test_y = digits_split()
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(train_x), generator=generator).split(64):
            shift = [int(s) for s in torch.randint(-1, 2, (2,), generator=generator)]
            x = torch.roll(train_x[batch], shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(model(x), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), accuracy(model, test_x, test_y)

def load_classifier(device: torch.device | str = "cpu") -> DigitsClassifier:
    """The shipped classifier, in eval mode."""
    model = DigitsClassifier()
    model.load_state_dict(load_file(classifier_weights()))
    return model.to(device).eval()

def _as_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 16, 16, C) -> (B, 1, 16, 16) in [-1, 1] (RGB averaged to grey)."""
    if batch.shape[1:3] != (RESOLUTION, RESOLUTION):
        raise UserFacingError(f"the digits metric needs {RESOLUTION}×{RESOLUTION} images, got "
                              f"{tuple(batch.shape[1:3])}")
    x = batch.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.mean(dim=1, keepdim=True)

def classifier_features(model: DigitsClassifier, device: torch.device) -> Features:
    """uint8 (B, 16, 16, C) -> (B, 128) penultimate features of ``model`` (on ``device``)."""
    return lambda batch: model.features(_as_input(batch, device))

@dataclasses.dataclass(frozen=True)
class DigitsScore:
    """digits-FID against the real digits; classes present among the predictions (of 10); mean
    confidence (top softmax probability); the share of samples in each class."""

    fid: float
    coverage: int
    confidence: float
    class_shares: tuple[float, ...]

_REFERENCE: list[tuple[np.ndarray, np.ndarray]] = []

def reference_statistics() -> tuple[np.ndarray, np.ndarray]:
    """Feature statistics of all 1,797 real digits (computed once per process)."""
    if not _REFERENCE:
        cpu = torch.device("cpu")
        features = extract(to_uint8(digits_images(RESOLUTION)), classifier_features(load_classifier(cpu), cpu),
                           BATCH_SIZE, progress=False)
        _REFERENCE.append(statistics(features.astype(np.float64)))
    return _REFERENCE[0]

@torch.no_grad()
def score(images: np.ndarray, device: torch.device | str = "cpu", min_share: float = 0.01) -> DigitsScore:
    """Score uint8 (N, 16, 16, C) samples. A class counts as covered when at least ``min_share``
    of the samples are predicted as it."""
    device = torch.device(device)
    model = load_classifier(device)
    features = extract(images, classifier_features(model, device), BATCH_SIZE, progress=False)
    p = model.head(torch.from_numpy(features).to(device)).softmax(1).cpu()
    shares = torch.bincount(p.argmax(1), minlength=10).float() / len(p)
    mu, sigma = statistics(features.astype(np.float64))
    return DigitsScore(fid=frechet_distance(mu, sigma, *reference_statistics()),
                       coverage=int((shares >= min_share).sum()),
                       confidence=p.max(1).values.mean().item(),
                       class_shares=tuple(round(s, 4) for s in shares.tolist()))
