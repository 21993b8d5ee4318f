"""torchrun training (2 gloo processes on CPU) against one process, resume, and kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from adaskip_ext.training import BatchDrawer

TRAIN = ("-m", "adaskip_ext.train", "--preset", "tiny", "--data", "digits", "--scheme", "constant-k",
         "--batch-size", "8", "--ema-decay", "0", "--lr", "1e-3", "--warmup", "1", "--device", "cpu",
         "--save-every", "1", "--log-every", "1", "--seed", "0")


# One thread everywhere: float sums in another order would differ in the last bit, and the
# comparisons below are exact.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=ENV)


def torchrun(port: int, *args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), *args]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "resume.pt", weights_only=True)["model"]


def test_the_steps_skip_levels():
    """The 3 steps below include skipped levels, so DDP meets parameters without gradients."""
    drawer = BatchDrawer("constant-k", 3, 2.0, 1000, 1797, 8, (3, 8, 8), False, 0)
    assert any(drawer.draw(s).skip_levels > 0 for s in range(3))


def test_two_ranks_match_one_process_and_each_other(tmp_path: Path):
    single = run([*TRAIN, "--steps", "3", "--out", "single"], tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = run(torchrun(29531, *TRAIN, "--steps", "3", "--out", "ddp"), tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 ranks agree: largest parameter difference 0" in ddp.stdout
    one, two = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    logs = [(tmp_path / d / "log.jsonl").read_text().splitlines() for d in ("single", "ddp")]
    assert len(logs[0]) == len(logs[1]) == 3


def test_a_distributed_run_resumes_exactly(tmp_path: Path):
    whole = run(torchrun(29532, *TRAIN, "--steps", "3", "--out", "whole"), tmp_path)
    first = run(torchrun(29533, *TRAIN, "--steps", "2", "--out", "parts"), tmp_path)
    assert whole.returncode == 0 and first.returncode == 0, whole.stderr[-2000:] + first.stderr[-2000:]
    resumed = run(torchrun(29534, *TRAIN, "--steps", "3", "--out", "parts", "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_uneven_batch_is_a_clear_error(tmp_path: Path):
    result = run(torchrun(29535, *TRAIN, "--batch-size", "7", "--steps", "1", "--out", "x"), tmp_path)
    assert result.returncode != 0
    assert "--batch-size 7 must divide evenly over 2 processes" in result.stderr


def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path: Path):
    steps = ["--steps", "200", "--save-every", "5"]
    whole = run([*TRAIN, *steps, "--out", "whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([sys.executable, *TRAIN, *steps, "--out", "killed"], cwd=tmp_path,
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 12:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = torch.load(tmp_path / "killed" / "resume.pt", weights_only=True)  # never corrupt
    assert 10 <= int(state["step"]) < 200
    resumed = run([*TRAIN, *steps, "--out", "killed", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (tmp_path / "killed" / "log.jsonl").read_text().count("\n") == 200


def test_ddp_benchmark_variants_average_the_same_gradients(tmp_path: Path):
    """benchmarks/ddp_unused.py at a tiny size: every variant timed, and DDP with
    find_unused_parameters ends where one manual all-reduce of the present gradients does."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ddp_unused.py"
    done = run([str(script), "--preset", "tiny", "--batch", "8", "--steps", "5", "--out", str(tmp_path)],
               tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "ddp-tiny-cpu.json").read_text())
    assert [row["variant"] for row in result["rows"]] == ["ddp-static", "ddp-find", "ddp-find-k",
                                                          "manual-k", "local-k"]
    assert all(row["ms_per_step"] > 0 for row in result["rows"])
    assert any(k > 0 for k in result["levels"])  # the constant-k steps did skip levels
    assert result["ddp_vs_manual_max_difference"] == 0.0
