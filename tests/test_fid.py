"""FID: the distance against closed forms and pytorch-fid, image sources, the feature network's
weights (a random stand-in: these machines cannot download the real file) and the CLI."""
from __future__ import annotations

import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytorch_fid", reason="pytorch-fid not installed")

from adaskip_ext.data.image_sources import load_images  # noqa: E402
from adaskip_ext.metrics import frechet, inception  # noqa: E402
from adaskip_ext.io_utils import UserFacingError  # noqa: E402


def diagonal_fid(mu1, var1, mu2, var2) -> float:
    """FID of two Gaussians with diagonal covariances, in closed form."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2)))


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    value = frechet.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(diagonal_fid(mu1, var1, mu2, var2), rel=1e-9)
    assert frechet.frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_gives_pytorch_fids_value_on_near_singular_covariances():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    low_rank = rng.normal(size=(8, 2))  # rank 2 in 8 dimensions: singular product
    sigma1, sigma2 = low_rank @ low_rank.T, np.diag(np.r_[rng.uniform(1, 2, 2), np.zeros(6)])
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    ours = frechet.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(calculate_frechet_distance(mu1, sigma1, mu2, sigma2), rel=1e-12)


def test_frechet_distance_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="statistics do not match"):
        frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_statistics_are_mean_and_unbiased_covariance():
    features = np.random.default_rng(2).normal(size=(50, 4))
    mu, sigma = frechet.statistics(features)
    np.testing.assert_allclose(mu, features.mean(0))
    np.testing.assert_allclose(sigma, (features - mu).T @ (features - mu) / 49)
    with pytest.raises(UserFacingError, match="at least 2 images"):
        frechet.statistics(features[:1])


def random_images(n: int, size: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def test_image_sources_npz_folder_cifar_and_digits(tmp_path: Path):
    images = random_images(3)
    np.savez(tmp_path / "s.npz", arr_0=images)
    np.testing.assert_array_equal(load_images(str(tmp_path / "s.npz")), images)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    np.testing.assert_array_equal(load_images(str(folder)), images)
    np.testing.assert_array_equal(load_images(f"folder:{folder}"), images)
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rows = random_images(2, 32)
    for i in range(1, 6):
        with open(cifar / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": rows.transpose(0, 3, 1, 2).reshape(2, -1)}, handle)
    loaded = load_images(f"cifar10:{cifar}")
    assert loaded.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(loaded[:2], rows)
    digits = load_images("digits")
    assert digits.shape == (1797, 16, 16, 1) and digits.dtype == np.uint8


def test_bad_image_sources_give_one_line_errors(tmp_path: Path):
    with pytest.raises(UserFacingError, match="not an .npz of samples"):
        load_images(str(tmp_path / "missing"))
    np.savez(tmp_path / "floats.npz", arr_0=np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(UserFacingError, match="'arr_0' must be uint8"):
        load_images(str(tmp_path / "floats.npz"))
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(random_images(1, 8)[0]).save(folder / "a.png")
    Image.fromarray(random_images(1, 9)[0]).save(folder / "b.png")
    with pytest.raises(UserFacingError, match="FID needs one image size"):
        load_images(str(folder))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    return inception.random_inception_weights(tmp_path_factory.mktemp("inception") / "random.pth")


def test_inception_loads_given_weights_and_gives_2048_features(random_weights: Path):
    model = inception.inception(random_weights, torch.device("cpu"))
    features = frechet.extract(random_images(3, 16, 1), inception.inception_features(model, torch.device("cpu")),
                           batch_size=2, progress=False)
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    assert torch.hub.get_dir() != ""  # the hub cache is restored (not left on a deleted folder)
    assert not Path(torch.hub.get_dir()).name.startswith("tmp")


def test_weight_errors_say_what_to_pass(tmp_path: Path, monkeypatch):
    with pytest.raises(UserFacingError, match="no such file"):
        inception.inception(tmp_path / "none.pth", torch.device("cpu"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserFacingError, match="not pytorch-fid's InceptionV3 weights"):
        inception.inception(tmp_path / "junk.pth", torch.device("cpu"))
    import pytorch_fid.inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", offline)
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(UserFacingError, match="--inception-weights PATH or ADASKIP_INCEPTION_WEIGHTS"):
        inception.inception(None, torch.device("cpu"))


def run_fid(*args: str, cwd: Path, env_weights: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_weights is not None:
        env[inception.WEIGHTS_ENV] = str(env_weights)
    return subprocess.run([sys.executable, "-m", "adaskip_ext.fid", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_stats_then_compute_equals_compute_on_images(tmp_path: Path, random_weights: Path):
    np.savez(tmp_path / "a.npz", arr_0=random_images(6, 16, seed=1))
    np.savez(tmp_path / "b.npz", arr_0=random_images(6, 16, seed=2))
    stats = run_fid("stats", "b.npz", "b-stats.npz", "--inception-weights", str(random_weights), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    direct = run_fid("compute", "a.npz", "b.npz", cwd=tmp_path, env_weights=random_weights)
    via_stats = run_fid("compute", "a.npz", "b-stats.npz", cwd=tmp_path, env_weights=random_weights)
    assert direct.returncode == 0 and via_stats.returncode == 0, direct.stderr + via_stats.stderr
    value = float(direct.stdout.strip().splitlines()[-1].split()[-1])
    assert value > 0
    assert via_stats.stdout.strip().splitlines()[-1] == direct.stdout.strip().splitlines()[-1]
    again = run_fid("stats", "b.npz", "b-stats.npz", cwd=tmp_path, env_weights=random_weights)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_cli_digits_metric_of_the_digits_themselves_is_zero(tmp_path: Path):
    result = run_fid("compute", "digits", "digits", "--metric", "digits", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout.strip().splitlines()[-1].split()[-1])) < 1e-6
