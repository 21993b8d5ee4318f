"""What every command-line tool promises: each flag's help gives its meaning and shows its
default at most once, and bad input is reported before the output is looked at, in one line,
leaving nothing behind."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaskip_ext import (AdaptiveUNet, UNetConfig, cli, convert, digits_metric, fid, info, sample,
                         save_model, train)

CLIS = {"sample": sample, "train": train, "convert": convert, "fid": fid,
        "digits_metric": digits_metric, "info": info}
ROOT = Path(__file__).resolve().parents[1]


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of one action as ``--help`` prints it (defaults expanded), on one line."""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split()) if action.help else ""


@pytest.mark.parametrize("name", sorted(CLIS))
def test_every_flag_has_help_showing_its_default_at_most_once(name: str) -> None:
    parser = CLIS[name].build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = rendered_help(parser, action)
        label = "/".join(action.option_strings) or action.dest
        assert text.strip(), f"{name} {label}: no help"
        assert text.lower().count("default") <= 1, f"{name} {label}: {text!r}"
        assert "(default: None)" not in text, f"{name} {label}: {text!r}"
        if action.option_strings and action.nargs != 0 and action.default is not None:
            assert "default" in text.lower(), f"{name} {label}: its default {action.default!r} is not shown"


def test_sample_help_names_the_clipping_default() -> None:
    text = sample.build_parser().format_help()
    assert "--no-clip-x0" in text and "--grid-cell-width PX" in text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(AdaptiveUNet(UNetConfig.tiny(), "zero"), path)
    return path


# For each CLI: arguments with a bad input, the fragment its error names, the output path the
# arguments name (under the working directory), and the file whose presence makes that output
# "already exist".
BAD_INPUTS = {
    "sample-checkpoint": (sample, ["--checkpoint", "nowhere.safetensors", "--steps", "2"],
                          "nowhere.safetensors", "samples", "samples/samples.png"),
    "sample-flag": (sample, ["--checkpoint", "{ckpt}", "--steps", "2", "--skip-list", "1"],
                    "--skip-list", "samples", "samples/samples.png"),
    "train-init": (train, ["--init", "nowhere.safetensors", "--steps", "1"], "nowhere.safetensors",
                   "runs/train", "runs/train/resume.pt"),
    "train-data": (train, ["--preset", "tiny", "--data", "folder:no-such-folder", "--steps", "1"],
                   "no-such-folder", "runs/train", "runs/train/resume.pt"),
    "convert-src": (convert, ["nowhere.ckpt", "fresh/out.safetensors"], "nowhere.ckpt",
                    "fresh", "fresh/out.safetensors"),
    "convert-flag": (convert, ["{ckpt}", "fresh/out.safetensors", "--resolution", "0"],
                     "--resolution", "fresh", "fresh/out.safetensors"),
    "fid-stats": (fid, ["stats", "nowhere.npz", "fresh/stats.npz"], "nowhere.npz", "fresh",
                  "fresh/stats.npz"),
    "digits_metric": (digits_metric, ["nowhere.npz"], "nowhere.npz", None, None),
    "info": (info, ["nowhere.safetensors"], "nowhere.safetensors", None, None),
}


def run_in(folder: Path, module, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``cli.run(module.main, argv)`` in ``folder``; returns stderr after checking exit status 2."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.run(module.main, argv)
    finally:
        os.chdir(cwd)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def listing(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_in_one_line_and_leaves_nothing(case: str, tmp_path: Path, checkpoint: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    module, argv, fragment, _, _ = BAD_INPUTS[case]
    argv = [a.format(ckpt=checkpoint) for a in argv] + (["--device", "cpu"] if module in (sample, train) else [])
    error = run_in(tmp_path, module, argv, capsys)
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], error
    assert listing(tmp_path) == set()  # no output folder, no stray file


@pytest.mark.parametrize("case", sorted(c for c, v in BAD_INPUTS.items() if v[4] is not None))
def test_bad_input_is_reported_even_when_the_output_exists(case: str, tmp_path: Path, checkpoint: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    module, argv, fragment, _, existing = BAD_INPUTS[case]
    argv = [a.format(ckpt=checkpoint) for a in argv] + (["--device", "cpu"] if module in (sample, train) else [])
    (tmp_path / existing).parent.mkdir(parents=True)
    (tmp_path / existing).write_bytes(b"an earlier result")
    before = listing(tmp_path)
    error = run_in(tmp_path, module, argv, capsys)
    assert fragment in error and "already" not in error, error
    assert listing(tmp_path) == before and (tmp_path / existing).read_bytes() == b"an earlier result"


def test_unwritable_output_is_reported_without_creating_it(tmp_path: Path, checkpoint: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("keep me")
    error = run_in(tmp_path, convert, [str(checkpoint), "a-file/sub/out.safetensors"], capsys)
    assert error.startswith("error: DST a-file/sub/out.safetensors: cannot write there"), error
    assert listing(tmp_path) == {Path("a-file")}


@pytest.mark.parametrize("script, argv, fragment", [
    ("python/digits_recipe.py", ["table1", "--samples", "0"], "--samples"),
    ("python/cifar10_recipe.py", ["--pretrained", "nowhere", "--cifar", "nowhere",
                                  "--inception-weights", "nowhere"], "--pretrained nowhere"),
    ("benchmarks/speedup.py", ["--batch", "0"], "--batch"),
])
def test_scripts_check_flags_before_creating_outputs(tmp_path: Path, script: str, argv: list[str],
                                                     fragment: str) -> None:
    outputs = {"python/digits_recipe.py": ["--runs", "fresh/runs", "--out", "fresh/out"],
               "python/cifar10_recipe.py": ["--work", "fresh/work"],
               "benchmarks/speedup.py": ["--out", "fresh/results"]}[script]
    result = subprocess.run([sys.executable, str(ROOT / script), *argv, *outputs], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and listing(tmp_path) == set()


def test_check_writable_creates_nothing(tmp_path: Path) -> None:
    from adaskip_ext.io_utils import UserFacingError, check_writable

    check_writable(tmp_path / "a" / "b")
    assert listing(tmp_path) == set()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserFacingError, match=r"^--out .*: cannot write there \(.*file is not a folder\)"):
        check_writable(tmp_path / "file" / "sub")
    with pytest.raises(UserFacingError, match="is not a folder"):
        check_writable(tmp_path / "file")
