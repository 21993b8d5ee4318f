"""pytorch-fid's InceptionV3 (pool3, 2048 features) with the FID weights, from a local file or
pytorch-fid's download; and a random stand-in for smoke tests.

Its preprocessing (images in [0, 1], bilinear resize to 299×299 inside the network) is pytorch-fid's.
Greyscale becomes RGB by repeating the channel, as PIL's ``convert("RGB")`` does.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from ..io_utils import UserFacingError, atomic_path
from .frechet import Features

WEIGHTS_ENV = "ADASKIP_INCEPTION_WEIGHTS"

@contextlib.contextmanager
def _hub_cache_holding(weights: Path) -> Iterator[None]:
    """torch.hub's cache pointed at a temporary folder where ``weights`` has pytorch-fid's file
    name, so pytorch-fid loads it instead of downloading."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        (Path(hub) / "checkpoints").mkdir()
        (Path(hub) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[1]).symlink_to(weights.resolve())
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)

def inception(weights: Path | None, device: torch.device) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3, 2048 features) with the FID weights from ``weights``,
    else ``$ADASKIP_INCEPTION_WEIGHTS``, else pytorch-fid's download."""
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    if weights is None and os.environ.get(WEIGHTS_ENV):
        weights = Path(os.environ[WEIGHTS_ENV])
    block = [InceptionV3.BLOCK_INDEX_BY_DIM[2048]]
    if weights is not None:
        if not weights.is_file():
            raise UserFacingError(f"--inception-weights {weights}: no such file")
        try:
            with _hub_cache_holding(weights):
                model = InceptionV3(block)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise UserFacingError(f"{weights}: not pytorch-fid's InceptionV3 weights "
                                  f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    else:
        try:
            model = InceptionV3(block)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise UserFacingError(
                f"cannot download the FID InceptionV3 weights ({type(error).__name__}); fetch "
                f"{FID_WEIGHTS_URL} elsewhere and pass it with --inception-weights PATH or "
                f"{WEIGHTS_ENV}=PATH") from None
    return model.to(device).eval()

def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Write randomly initialised weights of pytorch-fid's FID InceptionV3 (its
    ``fid_inception_v3`` structure) to ``path``: a stand-in where the real file cannot be had
    (smoke tests, the recipes' ``--quick`` mode). Distances from it mean nothing."""
    from pytorch_fid import inception as fid_inception

    torch.manual_seed(seed)
    net = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    for name, width in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        setattr(net, name, fid_inception.FIDInceptionC(768, channels_7x7=width))
    net.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    for module in net.modules():  # torchvision's init lets activations vanish without trained BN
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return path

def inception_features(model: torch.nn.Module, device: torch.device) -> Features:
    """uint8 (B, H, W, C) -> pool3 features (B, 2048)."""
    def features(batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return model(x)[0].flatten(1)
    return features
