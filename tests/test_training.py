"""Training: what each scheme draws, determinism of the draws, sharding, EMA, exact resume and the
train CLI's refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adaskip_ext import cli, train
from adaskip_ext.schedule import skip_levels_at
from adaskip_ext.training import EMA, BatchDrawer

T = 1000
NUM_LEVELS = 4
DRAWS = 2000
# c = 2, N = 4: k = 0 covers timesteps 0..132, k = 1 133..291, k = 2 292..498, k = 3 499..999
# (boundaries worked by hand in test_schedule.py::test_hand_computed_values).
SHARES_C2 = {0: 133 / T, 1: 159 / T, 2: 207 / T, 3: 501 / T}


def make_drawer(scheme: str, c: float = 2.0, batch_size: int = 8, seed: int = 0, flip: bool = True,
                dataset_size: int = 50) -> BatchDrawer:
    return BatchDrawer(scheme, NUM_LEVELS, c, T, dataset_size=dataset_size, batch_size=batch_size,
                       image_shape=(1, 2, 2), flip=flip, seed=seed)


def draw_many(drawer: BatchDrawer, steps: int = DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """(steps,) k per batch and (steps, B) timesteps."""
    batches = [drawer.draw(s) for s in range(steps)]
    return (np.array([b.skip_levels for b in batches]),
            np.stack([b.timesteps.numpy() for b in batches]))


@pytest.fixture
def stats():
    """scipy.stats, for the goodness-of-fit tests (only those are skipped without scipy)."""
    return pytest.importorskip("scipy.stats", reason="scipy not installed")


def assert_uniform_timesteps(stats, timesteps: np.ndarray, bins: int = 10) -> None:
    """Chi-square on one timestep per batch (batches are independent; samples inside a
    constant-k batch are not, so pooling them would overstate the evidence)."""
    counts = np.bincount(timesteps * bins // T, minlength=bins)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def assert_frequencies(stats, ks: np.ndarray, shares: dict[int, float]) -> None:
    counts = np.bincount(ks, minlength=NUM_LEVELS)
    expected = np.array([shares[k] for k in range(NUM_LEVELS)]) * len(ks)
    assert stats.chisquare(counts, expected).pvalue > 1e-3, (counts, expected)


@pytest.fixture(scope="module")
def constant_k_draws():
    return draw_many(make_drawer("constant-k"))


def test_constant_k_batches_hold_one_k(constant_k_draws):
    ks, timesteps = constant_k_draws
    for k, batch in zip(ks, timesteps):
        assert {skip_levels_at(int(t), NUM_LEVELS, 2.0, T) for t in batch} == {k}


def test_constant_k_timesteps_uniform_overall(stats, constant_k_draws):
    _, timesteps = constant_k_draws
    assert_uniform_timesteps(stats, timesteps[:, 0])
    assert_uniform_timesteps(stats, timesteps[:, -1])


def test_constant_k_frequencies_follow_timestep_shares(stats, constant_k_draws):
    ks, timesteps = constant_k_draws
    assert_frequencies(stats, ks, SHARES_C2)
    # inside its pool, each k's timesteps are spread over the whole pool
    for k, (low, high) in {0: (0, 132), 3: (499, 999)}.items():
        pool = timesteps[ks == k].ravel()
        assert pool.min() == low and pool.max() == high


def test_random_scheme_draws_every_k_uniformly(stats):
    ks, timesteps = draw_many(make_drawer("random"))
    assert set(ks) == set(range(NUM_LEVELS))
    assert_frequencies(stats, ks, {k: 1 / NUM_LEVELS for k in range(NUM_LEVELS)})
    assert_uniform_timesteps(stats, timesteps[:, 0])
    # timesteps do not depend on k: the deepest and shallowest k both see the whole range
    for k in (0, NUM_LEVELS - 1):
        assert timesteps[ks == k].min() < 50 and timesteps[ks == k].max() > 950


def test_full_scheme_is_plain_ddpm(stats):
    ks, timesteps = draw_many(make_drawer("full"), steps=500)
    assert set(ks) == {0}
    assert_uniform_timesteps(stats, timesteps[:, 0], bins=5)


def test_constant_k_with_c0_is_plain_ddpm():
    ks, _ = draw_many(make_drawer("constant-k", c=0.0), steps=200)
    assert set(ks) == {0}


def test_draws_depend_only_on_seed_and_step():
    first, again = make_drawer("constant-k", seed=5), make_drawer("constant-k", seed=5)
    for step in (0, 1, 17):
        a, b = first.draw(step), again.draw(step)
        assert a.skip_levels == b.skip_levels
        for name in ("indices", "timesteps", "noise", "flips"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    base = first.draw(3)
    for other in (first.draw(4), make_drawer("constant-k", seed=6).draw(3)):
        assert not torch.equal(base.noise, other.noise)
        assert not torch.equal(base.timesteps, other.timesteps)


def test_draw_contents():
    batch = make_drawer("random", batch_size=64, dataset_size=10).draw(0)
    assert batch.noise.shape == (64, 1, 2, 2)
    assert batch.indices.min() >= 0 and batch.indices.max() < 10
    assert 0 < batch.flips.sum() < 64
    assert not make_drawer("random", flip=False).draw(0).flips.any()


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_shards_partition_the_global_batch(world_size):
    batch = make_drawer("constant-k", batch_size=8).draw(11)
    shards = [batch.shard(rank, world_size) for rank in range(world_size)]
    for shard in shards:
        assert shard.skip_levels == batch.skip_levels
        assert shard.indices.shape[0] == 8 // world_size
    for name in ("indices", "timesteps", "noise", "flips"):
        assert torch.equal(torch.cat([getattr(s, name) for s in shards]), getattr(batch, name)), name


@pytest.mark.parametrize("rank, world_size", [(0, 3), (2, 2), (-1, 2)])
def test_shard_rejects_uneven_or_missing_ranks(rank, world_size):
    with pytest.raises(ValueError):
        make_drawer("full", batch_size=8).draw(0).shard(rank, world_size)


def test_bad_scheme():
    with pytest.raises(ValueError, match="scheme"):
        make_drawer("curriculum")


def test_ema_update():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.75)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ema.shadow[name], 0.75 * start[name] + 0.25 * value)


# ---------------------------------------------------------------------------------------------
# The train CLI (subprocesses: the real entry point)


def run_train(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    # One intra-op thread: the tiny model gains nothing from more, and a loaded machine thrashes.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "adaskip_ext.train", *flags], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def train_flags(image_folder: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", f"folder:{image_folder}", "--steps", str(steps),
            "--batch-size", "4", "--save-every", "3", "--log-every", "1", "--warmup", "2",
            "--ema-decay", "0.9", "--device", "cpu", "--seed", "3", "--out", str(out), *extra]


def assert_identical(a, b, where: str = "") -> None:
    """Every tensor equal in dtype, shape and value; containers and other values equal."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def read_log(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())]


def read_weights(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(file), "pt") as handle:
        metadata = handle.metadata()
    return load_file(str(file)), metadata


@pytest.mark.slow
def test_resume_is_bit_identical(image_folder, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    # the log of a run stopped before its first checkpoint: a fresh run must drop it
    straight.mkdir()
    (straight / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 9.0, "lr": 0.0, "elapsed_s": 0.0}) + "\n")
    result = run_train(*train_flags(image_folder, straight, 6), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    result = run_train(*train_flags(image_folder, split, 3), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    halfway = torch.load(split / "resume.pt", weights_only=True)
    assert int(halfway["step"]) == 3
    # a line logged after the checkpoint by a run that then died: resuming must drop it
    with open(split / "log.jsonl", "a") as log:
        log.write(json.dumps({"step": 4, "loss": 123.0, "lr": 0.0, "elapsed_s": 0.0}) + "\n")

    refused = run_train(*train_flags(image_folder, split, 6, "--resume", "--lr", "1e-3"), cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: --lr") and "Traceback" not in refused.stderr

    result = run_train(*train_flags(image_folder, split, 6, "--resume"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "from step 3 to 6" in result.stdout

    assert_identical(torch.load(split / "resume.pt", weights_only=True),
                     torch.load(straight / "resume.pt", weights_only=True), "resume.pt")
    assert_identical(read_weights(split / "last.safetensors"), read_weights(straight / "last.safetensors"),
                     "last.safetensors")
    assert read_log(split) == read_log(straight)
    assert [step for step, _ in read_log(straight)] == [1, 2, 3, 4, 5, 6]
    # the run trained: the second half moved the weights
    final = torch.load(straight / "resume.pt", weights_only=True)
    assert not torch.equal(final["model"]["conv_in.weight"], halfway["model"]["conv_in.weight"])


def bad_runs(tmp_path: Path, image_folder: Path) -> dict[str, tuple[list[str], str]]:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "resume.pt").write_bytes(b"")
    empty = tmp_path / "empty"
    return {
        "steps-0": (train_flags(image_folder, tmp_path / "a", 0), "--steps must be positive"),
        "resume-nothing": (train_flags(image_folder, empty, 6, "--resume"), "nothing to resume"),
        "out-holds-a-run": (train_flags(image_folder, existing, 6), "already holds a run"),
    }


@pytest.mark.parametrize("case", ["steps-0", "resume-nothing", "out-holds-a-run"])
def test_cli_refuses_with_one_line(case, tmp_path, image_folder):
    flags, message = bad_runs(tmp_path, image_folder)[case]
    result = run_train(*flags, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "empty").exists()  # refused before writing anything


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--c", "-1"], "--c"),
    (["--lr", "nan"], "--lr"),
    (["--data", "folder:/no/such/folder"], "not a directory"),
])
def test_cli_refusals_in_process(flags, message, tmp_path, capsys):
    """Same path as ``python -m adaskip_ext.train`` (cli.run around main), without a subprocess."""
    argv = ["--preset", "tiny", "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "out"), *flags]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(train.main, argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


# The trainer from Python: a configuration object, no argparse


def test_trainer_runs_from_a_configuration_object_as_the_cli_does(tmp_path):
    from adaskip_ext import TrainConfig, Trainer, load_model

    settings = dict(preset="tiny", scheme="random", skip_type="interpolate", steps=3, batch_size=4,
                    warmup=1, ema_decay=0.5, save_every=3, log_every=1, device="cpu", seed=5)
    written = Trainer(TrainConfig(**settings, out=str(tmp_path / "python"))).run()
    assert written == tmp_path / "python" / "last.safetensors"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(train.main, [*flags, "--out", str(tmp_path / "cli")])
    assert exit_info.value.code == 0
    from_python, from_cli = load_model(written), load_model(tmp_path / "cli" / "last.safetensors")
    assert from_python.metadata == from_cli.metadata
    assert from_python.metadata["training_scheme"] == "random"
    for name, value in from_cli.state_dict().items():
        torch.testing.assert_close(from_python.state_dict()[name], value, rtol=0, atol=0)
    log = (tmp_path / "python" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3]


@pytest.mark.parametrize("field, value", [("steps", 0), ("ema_decay", 1.0), ("lr", float("nan")),
                                          ("scheme", "sometimes"), ("preset", "huge")])
def test_a_bad_configuration_names_its_field(field, value):
    from adaskip_ext import TrainConfig

    with pytest.raises(ValueError, match=f"^{field} "):
        TrainConfig(**{field: value})
