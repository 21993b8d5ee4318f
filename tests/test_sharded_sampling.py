"""Sampling in parts: sharded over torchrun ranks (gloo on CPU), resumed after kill -9, guarded
against mixing runs. The merged set must equal a single uninterrupted run's, sample for sample."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch


COMMON = ("--steps", "6", "--num-samples", "9", "--batch-size", "2", "--sampler", "ddpm", "--seed", "3")


def sample_command(checkpoint: Path, out: str, *extra: str) -> list[str]:
    return ["-m", "adaskip_ext.sample", "--checkpoint", str(checkpoint), *COMMON, "--out", out,
            "--device", "cpu", *extra]


# One thread everywhere: the comparisons below are exact.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=ENV)


def samples(folder: Path) -> np.ndarray:
    return np.load(folder / "samples.npz")["arr_0"]


@pytest.fixture(scope="module")
def reference(tiny_c2_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """One uninterrupted single-process run."""
    cwd = tmp_path_factory.mktemp("reference")
    result = run(sample_command(tiny_c2_checkpoint, "out"), cwd)
    assert result.returncode == 0, result.stderr
    assert not (cwd / "out" / "parts").exists()  # merged, then removed
    return samples(cwd / "out")


def test_two_ranks_give_the_single_process_samples(tiny_c2_checkpoint: Path, reference: np.ndarray, tmp_path: Path):
    result = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                  *sample_command(tiny_c2_checkpoint, "out")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stdout
    merged = samples(tmp_path / "out")
    assert merged.shape == reference.shape == (9, 8, 8, 3)
    np.testing.assert_array_equal(merged, reference)


def test_a_killed_run_resumes_without_gaps_or_duplicates(tiny_c2_checkpoint: Path, reference: np.ndarray,
                                                          tmp_path: Path):
    command = sample_command(tiny_c2_checkpoint, "out", "--steps", "60")  # slow enough to be caught mid-run
    slow_reference = run(sample_command(tiny_c2_checkpoint, "whole", "--steps", "60"), tmp_path)
    assert slow_reference.returncode == 0, slow_reference.stderr
    process = subprocess.Popen([sys.executable, *command], cwd=tmp_path, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "out" / "parts"
    deadline = time.monotonic() + 600
    while len(list(parts.glob("batch-*.npy"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    drawn = len(list(parts.glob("batch-*.npy")))
    assert 2 <= drawn < 5, "the run should have been killed part-way"
    assert not (tmp_path / "out" / "samples.npz").exists()
    resumed = run(command, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {drawn} of 5 batches were already drawn" in resumed.stdout
    np.testing.assert_array_equal(samples(tmp_path / "out"), samples(tmp_path / "whole"))


def test_parts_of_another_run_are_not_mixed_in(tiny_c2_checkpoint: Path, tmp_path: Path):
    parts = tmp_path / "out" / "parts"
    parts.mkdir(parents=True)
    (parts / "run.json").write_text('{"seed": 99}\n')
    refused = run(sample_command(tiny_c2_checkpoint, "out"), tmp_path)
    assert refused.returncode == 2
    assert "holds parts of a run with other settings" in refused.stderr and "seed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    redone = run(sample_command(tiny_c2_checkpoint, "out", "--overwrite"), tmp_path)
    assert redone.returncode == 0, redone.stderr
    assert not parts.exists()
