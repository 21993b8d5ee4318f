"""``python -m adaskip_ext.convert`` and ``python -m adaskip_ext.info`` end to end, on tiny models."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaskip_ext import AdaptiveUNet, DiffusionConfig, UNetConfig, convert, info, load_model, save_model
from adaskip_ext.checkpoints import build_metadata
from adaskip_ext.io_utils import UserFacingError

TESTS = Path(__file__).resolve().parent


def run_module(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    # Run from tests/, not the clone's root, so `-m` imports the installed package (with its
    # compiled extension) rather than the source folder.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"adaskip_ext.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=TESTS)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tiny_checkpoint(path: Path, skip_type: str = "zero") -> AdaptiveUNet:
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.tiny(), skip_type)
    save_model(model, path, build_metadata(model, DiffusionConfig(), 2.0, "constant-k", True))
    return model


def test_convert_skip_type_then_info(tmp_path: Path) -> None:
    model = tiny_checkpoint(tmp_path / "src.safetensors")
    result = run_module("convert", tmp_path / "src.safetensors", tmp_path / "dst.safetensors",
                        "--skip-type", "duplicate")
    assert result.returncode == 0, result.stderr
    assert "dst.safetensors" in result.stdout
    converted = load_model(tmp_path / "dst.safetensors")
    assert converted.skip_type == "duplicate" and converted.metadata["schedule"]["c"] == 2.0
    for name, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[name], value)

    result = run_module("info", tmp_path / "dst.safetensors")
    assert result.returncode == 0, result.stderr
    summary = {line.split("  ")[0]: line.split("  ", 1)[1].strip()
               for line in result.stdout.splitlines() if line.strip()}
    assert summary["format"] == "adaskip .safetensors (format version 1)"
    assert summary["skip type"] == "duplicate"
    assert summary["schedule"].startswith("c = 2,")
    assert summary["parameters"] == f"{sum(p.numel() for p in model.parameters()):,}"
    # Eq. 1, N = 3, c = 2: k >= 1 from t = 1 - sqrt(2/3) = 0.184, k = 2 from t = 1 - sqrt(1/3) = 0.423;
    # t = (timestep + 1) / 1000 over timesteps 0, 10, …, 990
    assert summary["k shares (DDIM-100 uniform)"] == "k=0 19%, k=1 24%, k=2 57%"
    assert summary["training scheme"] == "constant-k" and summary["EMA weights"] == "yes"
    assert summary["diffusion"].startswith("T = 1000, linear betas 0.0001 … 0.02")


def test_convert_to_diffusers_refuses_to_overwrite(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "src.safetensors", skip_type="interpolate")
    result = run_module("convert", tmp_path / "src.safetensors", tmp_path / "unet", "--to", "diffusers")
    assert result.returncode == 0, result.stderr
    assert "bridges are dropped" in result.stdout
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
    before = (tmp_path / "unet" / "config.json").stat().st_mtime_ns

    result = run_module("convert", tmp_path / "src.safetensors", tmp_path / "unet", "--to", "diffusers")
    assert_one_line_error(result, "unet", "--overwrite")
    assert (tmp_path / "unet" / "config.json").stat().st_mtime_ns == before

    assert convert.main([str(tmp_path / "src.safetensors"), str(tmp_path / "unet"), "--to",
                         "diffusers", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors", "unet"]


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_malicious_checkpoint_cli(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"conv_in.weight": _Payload(marker)}, protocol=2))
    result = run_module("convert", tmp_path / "evil.ckpt", tmp_path / "out.safetensors")
    assert_one_line_error(result, "evil.ckpt", "refused to unpickle")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_truncated_checkpoint_cli(tmp_path: Path) -> None:
    data = tiny_checkpoint(tmp_path / "good.safetensors").state_dict()
    torch.save(data, tmp_path / "cut.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "cut.ckpt").read_bytes()[:1000])
    result = run_module("info", tmp_path / "cut.ckpt")
    assert_one_line_error(result, "cut.ckpt", "damaged")


def test_missing_checkpoint_cli(tmp_path: Path) -> None:
    result = run_module("convert", tmp_path / "nowhere.ckpt", tmp_path / "out.safetensors")
    assert_one_line_error(result, "nowhere.ckpt", "no such file")


@pytest.mark.parametrize("argv, fragments", [
    (["{src}", "{tmp}/out.safetensors", "--skip-type", "interpolate"], ["--fresh-bridges"]),
    (["{tmp}/m.ckpt", "{tmp}/out.safetensors"], ["m.ckpt", "shape"]),
    (["{src}", "{tmp}", "--overwrite"], ["is a folder"]),
    (["{src}", "{tmp}/out.safetensors", "--resolution", "16"], ["records resolution 8"]),
])
def test_cli_user_errors_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    argv: list[str], fragments: list[str]) -> None:
    from adaskip_ext import cli

    tiny_checkpoint(tmp_path / "src.safetensors")
    state = AdaptiveUNet(UNetConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=())).state_dict()
    state["up.0.block.0.conv1.weight"] = state["up.0.block.0.conv1.weight"][:, :-1]
    torch.save(state, tmp_path / "m.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        cli.run(convert.main, [a.format(src=tmp_path / "src.safetensors", tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    for fragment in fragments:
        assert fragment in error, error
    assert not (tmp_path / "out.safetensors").exists()


def test_fresh_bridges_and_ddim_resolution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_checkpoint(tmp_path / "src.safetensors")
    assert convert.main([str(tmp_path / "src.safetensors"), str(tmp_path / "i.safetensors"),
                         "--skip-type", "interpolate", "--fresh-bridges"]) == 0
    assert load_model(tmp_path / "i.safetensors").skip_type == "interpolate"

    config = UNetConfig(in_channels=1, out_channels=1, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        attn_resolutions=(8,), resolution=16)
    torch.save([AdaptiveUNet(config).state_dict(), {}, 1, 10], tmp_path / "ckpt.pth")
    assert convert.main([str(tmp_path / "ckpt.pth"), str(tmp_path / "d.safetensors"),
                         "--resolution", "16"]) == 0
    assert load_model(tmp_path / "d.safetensors").config == config
    capsys.readouterr()
    assert info.main([str(tmp_path / "ckpt.pth"), "--resolution", "16", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "DDIM training checkpoint (training weights, no EMA copy)" in out
    assert "k shares (DDIM-10 uniform)  k=0 100%, k=1 0%" in out
    with pytest.raises(UserFacingError, match="--steps"):
        info.main([str(tmp_path / "ckpt.pth"), "--steps", "5000"])


def test_info_without_path_reports_kernels() -> None:
    result = run_module("info")
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip()
            for line in result.stdout.splitlines() if line.strip()}
    assert rows["extension"].startswith(("CPU + CUDA kernels", "CPU kernels only"))
    assert rows["torch"] == torch.__version__
    for op in ("group_norm_silu", "group_norm_silu_conv3x3", "bicubic_bridge"):
        assert rows[op].startswith("cpu: native")


def test_info_rejects_unknown_backend() -> None:
    env = {**os.environ, "ADASKIP_BACKEND": "fastest"}
    result = subprocess.run([sys.executable, "-m", "adaskip_ext.info"], capture_output=True,
                            text=True, timeout=300, env=env, cwd=TESTS)
    assert_one_line_error(result, "ADASKIP_BACKEND", "fastest")
