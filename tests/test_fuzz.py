"""Fuzzing the loaders and the CLIs' arguments (hypothesis). Every case must end in a loaded
model or a ``UserFacingError`` (CLIs: exit status 2 with no traceback); no other exception, no
hang, no code run, nothing overwritten. The number of cases tried is each test's max_examples;
they are derandomized (the same cases on every run); turn that off locally to hunt for new ones.
"""
from __future__ import annotations

import io
import math
import pickle
import struct
from contextlib import redirect_stderr
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from adaskip_ext import AdaptiveUNet, UNetConfig, cli, save_model  # noqa: E402
from adaskip_ext.checkpoints import load_model  # noqa: E402
from adaskip_ext.data.datasets import read_cifar_batch  # noqa: E402
from adaskip_ext.io_utils import UserFacingError  # noqa: E402
from adaskip_ext.sampling import command as sample  # noqa: E402
from adaskip_ext.training import command as train  # noqa: E402

# derandomize: the same cases on every run, so CI cannot fail on a case nobody saw here.
FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "tiny.safetensors"
    save_model(AdaptiveUNet(UNetConfig.tiny()), path)
    return path.read_bytes()


def load_bytes(data: bytes, folder: Path, suffix: str) -> None:
    """load_model on ``data``: fine, or a one-line UserFacingError naming the file."""
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        load_model(path)
    except UserFacingError as error:
        assert "\n" not in str(error) and path.name in str(error)


@FAST
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".safetensors", ".ckpt", ".pt", ""]))
def test_random_bytes_as_a_checkpoint(tmp_path: Path, data: bytes, suffix: str):
    load_bytes(data, tmp_path, suffix)


@FAST
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_truncated_checkpoints(tmp_path: Path, good_file: bytes, cut: int):
    load_bytes(good_file[: cut % len(good_file)], tmp_path, ".safetensors")


@FAST
@given(header_length=st.integers(min_value=0, max_value=2**64 - 1))
def test_lying_safetensors_header_lengths(tmp_path: Path, good_file: bytes, header_length: int):
    load_bytes(struct.pack("<Q", header_length) + good_file[8:], tmp_path, ".safetensors")


@FAST
@given(flips=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.integers(1, 255)),
                      min_size=1, max_size=8))
def test_corrupted_bytes(tmp_path: Path, good_file: bytes, flips: list[tuple[int, int]]):
    data = bytearray(good_file)
    header_end = 8 + struct.unpack("<Q", good_file[:8])[0]
    for offset, mask in flips:  # mostly in the header, where corruption matters
        data[offset % header_end] ^= mask
    load_bytes(bytes(data), tmp_path, ".safetensors")


PICKLABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8),
                                                                inner, max_size=4),
    max_leaves=12)


@FAST
@given(content=PICKLABLE)
def test_cifar_batches_of_any_pickled_value(tmp_path: Path, content):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(UserFacingError, match="not a CIFAR-10 python batch"):
        read_cifar_batch(path)


@FAST
@given(data=st.binary(max_size=2048))
def test_cifar_batches_of_random_bytes(tmp_path: Path, data: bytes):
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    with pytest.raises(UserFacingError):
        read_cifar_batch(path)


NONSENSE = st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e400", "abc", "", "3.5", "--", "-0",
                            "1", "0.5", "1e-3", "7"])
VALUES = NONSENSE | st.text(max_size=12) | st.floats(allow_nan=True).map(repr) | st.integers().map(str)


def parse_then_check(module, argv: list[str]):
    """argparse rejects the value (exit 2), or the CLI's checks accept or reject it in one line;
    returns the parsed arguments when everything was accepted, else None."""
    try:
        args = module.build_parser().parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 2
        return None
    try:
        module.check(args)
    except UserFacingError as error:
        assert "\n" not in str(error)
        return None
    return args


@settings(max_examples=400, deadline=None, derandomize=True)
@given(flag=st.sampled_from(["--steps", "--batch-size", "--lr", "--warmup", "--grad-clip", "--ema-decay",
                             "--c", "--save-every", "--log-every", "--seed"]), value=VALUES)
def test_train_arguments(flag: str, value: str):
    with redirect_stderr(io.StringIO()):
        args = parse_then_check(train, [flag, value])
    if args is not None:  # accepted: then it is a usable number
        accepted = getattr(args, flag[2:].replace("-", "_"))
        assert math.isfinite(accepted)
        if flag not in ("--seed",):
            assert accepted >= 0
        if flag in ("--steps", "--batch-size", "--save-every", "--log-every"):
            assert accepted >= 1
        if flag == "--ema-decay":
            assert accepted < 1


@settings(max_examples=400, deadline=None, derandomize=True)
@given(flag=st.sampled_from(["--steps", "--num-samples", "--batch-size", "--eta", "--c", "--seed"]),
       value=VALUES)
def test_sample_arguments(flag: str, value: str):
    with redirect_stderr(io.StringIO()):
        args = parse_then_check(sample, [flag, value])
    if args is not None:
        accepted = getattr(args, flag[2:].replace("-", "_"))
        assert math.isfinite(accepted)
        if flag in ("--steps", "--num-samples", "--batch-size"):
            assert accepted >= 1
        if flag in ("--eta", "--c"):
            assert accepted >= 0 and (flag != "--eta" or accepted <= 1)


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path):
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
        cli.run(sample.main, ["--num-samples", "-3", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert stderr.getvalue() == "error: --num-samples must be positive, got -3\n"
    assert not (tmp_path / "x").exists()


def test_a_pickle_that_runs_code_is_refused_as_a_cifar_batch(tmp_path: Path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(UserFacingError, match="not a CIFAR-10 python batch"):
        read_cifar_batch(tmp_path / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("module", [train, sample])
def test_an_unwritable_output_fails_before_any_work(tmp_path: Path, module):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
        cli.run(module.main, ["--out", str(blocker / "out"), "--device", "cpu", "--steps", "1"])
    assert exit_.value.code == 2
    assert stderr.getvalue().startswith(f"error: --out {blocker / 'out'}: cannot write there")
    assert len(stderr.getvalue().splitlines()) == 1 and blocker.read_text() == "keep me"
