"""End-to-end tests of ``python -m adaskip_ext.sample`` on a tiny model and on the embedded default."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaskip_ext import AdaptiveUNet, UNetConfig, save_model
from adaskip_ext.metrics import digits_classifier


def run_sample(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adaskip_ext.sample", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.tiny(), "zero")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(model, path, {"schedule": {"c": 2.0, "normalisation": "(timestep + 1) / T"}})
    return path


def test_writes_grid_npz_and_images(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run_sample("--checkpoint", str(tiny_checkpoint), "--steps", "6", "--num-samples", "5",
                        "--batch-size", "3", "--save-images", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "out" / "samples.npz")["arr_0"]
    assert images.dtype == np.uint8 and images.shape == (5, 8, 8, 3)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    first = np.asarray(Image.open(tmp_path / "out" / "images" / "000000.png"))
    np.testing.assert_array_equal(first, images[0])
    # ⌈√5⌉ = 3 columns, 2 rows, 2-px padding; each 8×8 sample scaled 8× to the default 64 pixels
    grid = np.asarray(Image.open(tmp_path / "out" / "samples.png"))
    assert grid.shape == (2 * 66 + 2, 3 * 66 + 2, 3)
    np.testing.assert_array_equal(grid[2:66, 2:66], images[0].repeat(8, axis=0).repeat(8, axis=1))
    # the table: c = 2 over 6 uniform steps of T = 1000 on a 3-level net
    assert "time" in result.stdout and "  2 " in result.stdout


def test_grid_cell_width_scales_only_the_grid(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run_sample("--checkpoint", str(tiny_checkpoint), "--steps", "2", "--num-samples", "4",
                        "--grid-cell-width", "20", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "out" / "samples.npz")["arr_0"]
    assert images.shape == (4, 8, 8, 3)  # the model's resolution: FID input
    grid = np.asarray(Image.open(tmp_path / "out" / "samples.png"))
    assert grid.shape == (2 * 26 + 2, 2 * 26 + 2, 3)  # ⌈20 / 8⌉ = 3×: 24-px cells
    np.testing.assert_array_equal(grid[28:52, 28:52], images[3].repeat(3, axis=0).repeat(3, axis=1))


def test_same_seed_same_images_and_batch_size_independent_of_device_path(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    common = ("--checkpoint", str(tiny_checkpoint), "--steps", "4", "--num-samples", "4",
              "--sampler", "ddpm", "--batch-size", "4")
    assert run_sample(*common, "--out", "a", cwd=tmp_path).returncode == 0
    assert run_sample(*common, "--out", "b", cwd=tmp_path).returncode == 0
    a = np.load(tmp_path / "a" / "samples.npz")["arr_0"]
    b = np.load(tmp_path / "b" / "samples.npz")["arr_0"]
    np.testing.assert_array_equal(a, b)
    assert run_sample(*common, "--seed", "1", "--out", "c", cwd=tmp_path).returncode == 0
    assert not np.array_equal(a, np.load(tmp_path / "c" / "samples.npz")["arr_0"])


def test_refuses_to_overwrite(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ("--checkpoint", str(tiny_checkpoint), "--steps", "2", "--num-samples", "2", "--out", "o")
    assert run_sample(*args, cwd=tmp_path).returncode == 0
    before = (tmp_path / "o" / "samples.npz").read_bytes()
    refused = run_sample(*args, "--seed", "3", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--overwrite" in refused.stderr and "Traceback" not in refused.stderr
    assert (tmp_path / "o" / "samples.npz").read_bytes() == before
    assert run_sample(*args, "--seed", "3", "--overwrite", cwd=tmp_path).returncode == 0
    assert (tmp_path / "o" / "samples.npz").read_bytes() != before


@pytest.mark.parametrize("flags, fragment", [
    (("--skip-list", "2,1"), "--skip-list"),           # 2 values for 3 steps
    (("--skip-list", "0,5,0"), "--skip-list"),         # k out of range
    (("--c", "-1"), "--c"),
    (("--eta", "2"), "--eta"),
    (("--steps", "0"), "--steps"),
    (("--checkpoint", "missing.safetensors"), "missing.safetensors"),
    (("--skip-type", "interpolate"), "bridge"),
    (("--grid-cell-width", "0"), "--grid-cell-width"),
])
def test_bad_input_gives_one_line_error(tiny_checkpoint: Path, tmp_path: Path,
                                        flags: tuple[str, ...], fragment: str) -> None:
    args = ["--checkpoint", str(tiny_checkpoint), "--steps", "3", "--num-samples", "1", *flags]
    result = run_sample(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert not (tmp_path / "samples").exists()


def test_skip_list_and_compare_full(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run_sample("--checkpoint", str(tiny_checkpoint), "--steps", "3", "--num-samples", "2",
                        "--skip-list", "2,2,0", "--compare-full", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
            if line.strip()[:1].isdigit() and len(line.split()) == 3}
    assert rows == {"0": 1, "1": 0, "2": 2}
    wall = float(re.search(r"wall time: ([\d.]+) s", result.stdout).group(1))
    full, saved = re.search(r"at k = 0: ([\d.]+) s; time saved: (-?[\d.]+)%", result.stdout).groups()
    assert float(saved) == pytest.approx(100 * (1 - wall / float(full)), abs=0.1 + 100 * 0.01 / float(full))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_no_graphs_gives_the_same_images(tiny_checkpoint: Path, tmp_path: Path) -> None:
    common = ("--checkpoint", str(tiny_checkpoint), "--steps", "8", "--num-samples", "5",
              "--batch-size", "4", "--sampler", "ddpm", "--device", "cuda", "--compare-full")
    graphed = run_sample(*common, "--out", "graphed", cwd=tmp_path)
    assert graphed.returncode == 0, graphed.stderr
    eager = run_sample(*common, "--no-graphs", "--out", "eager", cwd=tmp_path)
    assert eager.returncode == 0, eager.stderr
    a, b = (np.load(tmp_path / name / "samples.npz")["arr_0"].astype(int) for name in ("graphed", "eager"))
    assert np.abs(a - b).max() <= 1  # uint8 images from float samples equal to ~1e-6


@pytest.mark.slow
def test_default_run_draws_all_ten_digits(tmp_path: Path) -> None:
    result = run_sample(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "samples" / "samples.npz")["arr_0"]
    assert images.shape == (64, 16, 16, 1)
    assert (tmp_path / "samples" / "samples.png").exists()
    # the shipped classifier (held-out accuracy >= 0.97, tests/test_digits_metric.py): every
    # digit among the predictions of the 64 samples
    assert digits_classifier.score(images, min_share=1 / 64).coverage == 10


def test_outputs_get_normal_permissions(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run_sample("--checkpoint", str(tiny_checkpoint), "--steps", "2", "--num-samples", "2",
                        "--save-images", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    mask = os.umask(0)
    os.umask(mask)
    for path in ("samples.npz", "samples.png", "images/000000.png"):
        assert (tmp_path / "o" / path).stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert (tmp_path / "o" / "images").stat().st_mode & 0o777 == 0o777 & ~mask


def roughness(images: np.ndarray) -> np.ndarray:
    """Per image of uint8 (N, H, W, C): the mean absolute difference, on [0, 1], between each pixel
    and its right and lower neighbours: (N,). Strokes on a plain ground are smooth; speckle and
    noise are rough."""
    x = images.astype(np.float64) / 255.0
    horizontal = np.abs(np.diff(x, axis=2)).reshape(len(x), -1)
    vertical = np.abs(np.diff(x, axis=1)).reshape(len(x), -1)
    return np.concatenate([horizontal, vertical], axis=1).mean(axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_run_is_no_rougher_than_the_roughest_real_digit(seed: int, tmp_path: Path) -> None:
    """Unclipped DDIM leaves a few speckled or pure-noise samples per 64 (rougher than any real
    digit); the default, which clips x0, leaves none."""
    from adaskip_ext import sample
    from adaskip_ext.data import digits_images
    from adaskip_ext.images import to_uint8

    assert sample.main(["--seed", str(seed), "--out", str(tmp_path / "out")]) == 0
    samples = np.load(tmp_path / "out" / "samples.npz")["arr_0"]
    assert samples.shape == (64, 16, 16, 1)
    real = roughness(to_uint8(digits_images(16)))  # the 1,797 digits as the package makes them
    assert roughness(samples).max() <= real.max(), (roughness(samples).max(), real.max())
