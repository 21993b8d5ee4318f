"""Fuzzing the loaders and the CLIs' arguments (hypothesis). Every case must end in a loaded
model or a ``UserFacingError`` (CLIs: exit status 2 with no traceback); no other exception, no
hang, no code run, nothing overwritten. The number of cases tried is each test's max_examples;
they are derandomized (the same cases on every run); turn that off locally to hunt for new ones.
"""
from __future__ import annotations

import io
import json
import math
import pickle
import struct
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from adaskip_ext import AdaptiveUNet, UNetConfig, cli, save_model  # noqa: E402
from adaskip_ext.checkpoints import load_model  # noqa: E402
from adaskip_ext.checkpoints.diffusers_format import diffusers_config, save_diffusers  # noqa: E402
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


def load_or_refuse(path: Path) -> AdaptiveUNet | None:
    """load_model on ``path``: a model, or None after a one-line UserFacingError naming it."""
    try:
        return load_model(path)
    except UserFacingError as error:
        assert "\n" not in str(error) and path.name in str(error)
        return None


def load_bytes(data: bytes, folder: Path, suffix: str) -> None:
    """load_model on ``data``: fine, or a one-line UserFacingError naming the file."""
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    load_or_refuse(path)


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


# Declared versus stored: a file's config (metadata, config.json, or the shapes a DDIM config is
# inferred from) that disagrees with its tensors. Each is compared on the meta device before
# anything is built, so sizes far beyond memory are refused like any other misfit.
ODD = st.sampled_from([None, "8", 1.5, math.nan, [8], True, 2**31, 2**62, 10**30])
SIZE = st.integers(min_value=-2, max_value=9) | st.sampled_from([16, 32, 2048]) | ODD
UNET_CHANGES = st.fixed_dictionaries({}, optional={
    "in_channels": SIZE, "out_channels": SIZE, "ch": SIZE, "num_res_blocks": SIZE, "resolution": SIZE,
    "num_groups": SIZE, "ch_mult": st.lists(SIZE, max_size=5) | ODD,
    "attn_resolutions": st.lists(SIZE, max_size=3) | ODD, "dropout": st.floats(0, 1) | ODD,
    "skip_type": st.sampled_from(["zero", "duplicate", "interpolate", "bicubic"])})
DIFFUSERS_CHANGES = st.fixed_dictionaries({}, optional={
    "in_channels": SIZE, "out_channels": SIZE, "layers_per_block": SIZE, "norm_num_groups": SIZE,
    "sample_size": SIZE, "block_out_channels": st.lists(SIZE, min_size=3, max_size=3) | ODD})
# (which tensor: an index into the names, or one the DDIM config is inferred from; what to do)
EDITS = st.lists(st.tuples(
    st.integers(min_value=0, max_value=10**6) | st.sampled_from(
        ["conv_in.weight", "conv_out.weight", "down.0.block.0.conv1.weight", "down.1.block.0.conv1.weight"]),
    st.sampled_from(["drop", "flatten", "grow", "scalar", "extra", "wide", "broadcast"])), max_size=3)


def edited(tensors: dict[str, torch.Tensor],
           edits: list[tuple[int | str, str]]) -> dict[str, torch.Tensor]:
    """``tensors`` with some dropped, reshaped or added; ``wide`` gives 64× the channels as a 1×1
    kernel (a small tensor declaring a wide model), ``broadcast`` one stored zero at full shape."""
    tensors = dict(tensors)
    for which, edit in edits:
        name = which if isinstance(which, str) else sorted(tensors)[which % len(tensors)]
        if name not in tensors:  # dropped by an earlier edit, or not in this format
            continue
        value = tensors[name]
        if edit == "drop" and len(tensors) > 1:
            del tensors[name]
        elif edit == "flatten":
            tensors[name] = value.flatten()
        elif edit == "grow":
            tensors[name] = torch.zeros(value.numel() + 1)
        elif edit == "scalar":
            tensors[name] = torch.zeros(())
        elif edit == "extra":
            tensors[name + "_extra"] = torch.zeros(1)
        elif edit == "wide" and value.dim():
            tensors[name] = torch.zeros(value.shape[0] * 64, *[1] * (value.dim() - 1))
        elif edit == "broadcast":
            tensors[name] = torch.zeros(()).expand(value.shape)
    return tensors


@pytest.fixture(scope="module")
def tiny_tensors() -> dict[str, torch.Tensor]:
    return AdaptiveUNet(UNetConfig.tiny()).state_dict()


@pytest.fixture(scope="module")
def tiny_diffusers(tmp_path_factory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("diffusers") / "unet"
    save_diffusers(AdaptiveUNet(UNetConfig.tiny()), folder)
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def ddim_tensors() -> dict[str, torch.Tensor]:
    return AdaptiveUNet(UNetConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                                   resolution=16)).state_dict()


@settings(FAST, max_examples=150)
@given(changes=UNET_CHANGES, edits=EDITS)
def test_declared_model_against_stored_weights(tmp_path: Path, tiny_tensors: dict[str, torch.Tensor],
                                               changes: dict, edits: list):
    # safetensors stores no views, so no broadcast edits
    tensors = edited(tiny_tensors, [edit for edit in edits if edit[1] != "broadcast"])
    changes = dict(changes)
    metadata = {"format_version": 1, "skip_type": changes.pop("skip_type", "zero"),
                "model": {**UNetConfig.tiny().to_dict(), **changes},
                "diffusion": {"num_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}}
    path = tmp_path / "declared.safetensors"
    save_file({n: v.contiguous() for n, v in tensors.items()}, str(path),
              metadata={"adaskip": json.dumps(metadata)})
    model = load_or_refuse(path)
    if model is not None:  # then it holds exactly what the file stores
        assert model.skip_type == metadata["skip_type"]
        for name, value in model.state_dict().items():
            assert torch.equal(value, tensors[name]), name


@settings(FAST, max_examples=100)
@given(changes=DIFFUSERS_CHANGES, edits=EDITS)
def test_diffusers_config_against_stored_weights(tmp_path: Path, tiny_diffusers: dict[str, torch.Tensor],
                                                 changes: dict, edits: list):
    folder = tmp_path / "unet"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**diffusers_config(UNetConfig.tiny()), **changes}))
    tensors = edited(tiny_diffusers, [edit for edit in edits if edit[1] != "broadcast"])
    save_file({n: v.contiguous() for n, v in tensors.items()},
              str(folder / "diffusion_pytorch_model.safetensors"))
    load_or_refuse(folder)


@settings(FAST, max_examples=100)
@given(edits=EDITS)
def test_inferred_ddim_model_against_stored_weights(tmp_path: Path, ddim_tensors: dict[str, torch.Tensor],
                                                    edits: list):
    path = tmp_path / "model.ckpt"
    tensors = edited(ddim_tensors, edits)
    torch.save(tensors, path)
    model = load_or_refuse(path)
    if model is not None:
        for name, value in model.state_dict().items():
            assert torch.equal(value, tensors[name]), name


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
