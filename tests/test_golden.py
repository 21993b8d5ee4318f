"""Golden outputs: the default sample run and a 3-step training run reproduce the files saved before
the package was reorganised (`tests/golden/`).

They were written on an Intel Sapphire Rapids host (AVX-512 clone of the CPU kernels), one thread:

    OMP_NUM_THREADS=1 python -m adaskip_ext.sample --steps 5 --num-samples 8 --out OUT
    OMP_NUM_THREADS=1 python -m adaskip_ext.train --steps 3 --batch-size 16 --warmup 1 \\
        --ema-decay 0.5 --skip-type interpolate --c 2 --save-every 3 --log-every 1 --out OUT --device cpu

On that host a rerun is bit-identical (`cmp`); another CPU may round differently, so the comparison
allows float32 rounding: weights to 1e-5 relative, samples (uint8) off by at most one level.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).parent / "golden"


def run_module(module: str, *args: str, cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def test_default_sample_run_matches_golden(tmp_path: Path) -> None:
    run_module("adaskip_ext.sample", "--steps", "5", "--num-samples", "8", "--out", "out",
               cwd=tmp_path)
    expected = np.load(GOLDEN / "sample_steps5_n8.npz")["arr_0"]
    produced = np.load(tmp_path / "out" / "samples.npz")["arr_0"]
    assert produced.shape == expected.shape and produced.dtype == expected.dtype
    difference = np.abs(produced.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01


def test_three_step_training_matches_golden(tmp_path: Path) -> None:
    run_module("adaskip_ext.train", "--steps", "3", "--batch-size", "16", "--warmup", "1",
               "--ema-decay", "0.5", "--skip-type", "interpolate", "--c", "2", "--save-every", "3",
               "--log-every", "1", "--out", "out", "--device", "cpu", cwd=tmp_path)
    expected = load_file(GOLDEN / "train_digits_3steps.safetensors")
    produced = load_file(tmp_path / "out" / "last.safetensors")
    assert produced.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(produced[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
