"""FID: pytorch-fid's InceptionV3 features and Fréchet distance, on sample files and data sets.

    python -m adaskip_ext.fid compute samples.npz cifar10-train-stats.npz
    python -m adaskip_ext.fid stats cifar10:cifar-10-batches-py cifar10-train-stats.npz

The feature network, its preprocessing (images in [0, 1], bilinear resize to 299×299 inside the
network) and the distance are pytorch-fid's; this module feeds them images and statistics.
Images travel as uint8 (N, H, W, C), as pytorch-fid reads PNG files; greyscale becomes RGB by
repeating the channel, as PIL's ``convert("RGB")`` does. ``--metric digits`` uses the shipped
digits classifier's features instead (``digits_metric.py``): a proxy for small-scale work, not
comparable with CIFAR-10 FID.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import cli
from .data import IMAGE_SUFFIXES, digits_images, read_cifar_batch
from .images import to_uint8
from .io_utils import UserFacingError, atomic_path, check_new_output

WEIGHTS_ENV = "ADASKIP_INCEPTION_WEIGHTS"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.fid",
        description="Fréchet Inception Distance with pytorch-fid's InceptionV3, between samples "
                    "(.npz with uint8 'arr_0', or an image folder) and reference statistics or "
                    "a second image set.",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("command", choices=("compute", "stats"),
                        help="compute A B: FID between A and B (each images or statistics); "
                             "stats SOURCE OUT: write SOURCE's statistics to OUT.npz")
    parser.add_argument("paths", nargs=2, metavar="PATH",
                        help="images: .npz, image folder, folder:PATH, cifar10:PATH, digits; "
                             "statistics: .npz with mu and sigma")
    parser.add_argument("--metric", choices=("inception", "digits"), default="inception",
                        help="features: pytorch-fid's InceptionV3, or the shipped digits "
                             "classifier (digits-FID, a small-scale proxy)")
    parser.add_argument("--inception-weights", type=Path, default=None,
                        help=f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: "
                             f"${WEIGHTS_ENV}, else pytorch-fid downloads it)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per feature batch")
    parser.add_argument("--num-images", type=int, default=None,
                        help="use the first N images of each image set only (default: all)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, … or auto (CUDA if present)")
    parser.add_argument("--overwrite", action="store_true", help="stats: replace OUT")
    return parser


def feature_function(args: argparse.Namespace, device: torch.device) -> Features:
    if args.metric == "digits":
        from .digits_metric import classifier_features

        return classifier_features(device)
    return inception_features(inception(args.inception_weights, device), device)


def read_source(source: str, args: argparse.Namespace) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``source``'s statistics (mu, sigma) if it holds them, else its uint8 (N, H, W, C) images
    (the first ``--num-images``)."""
    if is_statistics(source):
        return load_statistics(Path(source))
    images = load_images(source)[: args.num_images]
    if len(images) < 2:
        raise UserFacingError(f"{source}: FID needs at least 2 images, got {len(images)}")
    print(f"{source}: {len(images)} images of {images.shape[1]}×{images.shape[2]}×{images.shape[3]}")
    return images


def source_statistics(source: np.ndarray | tuple[np.ndarray, np.ndarray], args: argparse.Namespace,
                      features: Callable[[], Features]) -> tuple[np.ndarray, np.ndarray]:
    """Statistics as read, or those of the images' features."""
    if isinstance(source, tuple):
        return source
    return statistics(extract(source, features(), args.batch_size).astype(np.float64))


def main(argv: Sequence[str] | None = None) -> int:
    """Every input (both paths, the feature network) is read before OUT is looked at."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or (args.num_images is not None and args.num_images < 2):
        raise UserFacingError("--batch-size must be positive and --num-images at least 2")
    device = cli.resolve_device(args.device)
    cache: list[Features] = []

    def features() -> Features:  # built once, and only when images need it
        if not cache:
            cache.append(feature_function(args, device))
        return cache[0]

    if args.command == "stats":
        source, out = read_source(args.paths[0], args), Path(args.paths[1])
        if not isinstance(source, tuple):
            features()  # the feature network's weights are an input too: load them before OUT
        check_new_output(out, "OUT", args.overwrite)
        mu, sigma = source_statistics(source, args, features)
        save_statistics(mu, sigma, out)
        print(f"wrote {out} ({mu.shape[0]} features)")
        return 0
    sources = [read_source(p, args) for p in args.paths]
    (mu1, sigma1), (mu2, sigma2) = (source_statistics(s, args, features) for s in sources)
    try:
        value = frechet_distance(mu1, sigma1, mu2, sigma2)
    except ValueError as error:
        raise UserFacingError(f"FID: {error}") from None
    print(f"{'digits-FID' if args.metric == 'digits' else 'FID'}: {value:.4f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
