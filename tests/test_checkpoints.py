"""Checkpoints: our format, diffusers UNet2DModel folders both ways, DDIM .ckpt files, bad files."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from adaskip_ext import AdaptiveUNet, DiffusionConfig, UNetConfig, convert, load_model, save_model
from adaskip_ext.checkpoints import build_metadata
from adaskip_ext.checkpoints.ddim_format import infer_ddim_config
from adaskip_ext.checkpoints.diffusers_format import (config_from_diffusers, diffusers_config, diffusers_name,
                                          save_diffusers, to_diffusers_state_dict)
from adaskip_ext.io_utils import MissingFileError, UserFacingError
from conftest import perturb_

TIMESTEPS = torch.tensor([0, 999, 417])


def perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``module`` in eval mode with noise on every parameter, so that GroupNorm affines and
    zero-initialised convs matter."""
    perturb_(module, seed=seed)
    return module.eval()


def inputs(config: UNetConfig, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(TIMESTEPS), config.in_channels, config.resolution, config.resolution,
                       generator=generator)


def assert_same_output(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """float32 agreement to ~1e-5 relative to the output's scale."""
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())


def one_line_error(error: pytest.ExceptionInfo[UserFacingError], name: str) -> str:
    message = str(error.value)
    assert "\n" not in message and name in message, message
    return message


# ---------------------------------------------------------------------------------------------
# own format


def test_own_format_round_trip(tmp_path: Path) -> None:
    model = perturbed(AdaptiveUNet(UNetConfig.tiny(), "interpolate"))
    metadata = build_metadata(model, DiffusionConfig(num_timesteps=500), 1.5, "constant-k", True)
    save_model(model, tmp_path / "m.safetensors", metadata)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == model.config and loaded.skip_type == "interpolate"
    assert loaded.metadata["schedule"]["c"] == 1.5 and loaded.metadata["ema"] is True
    assert loaded.metadata["diffusion"]["num_timesteps"] == 500
    x = inputs(model.config)
    with torch.no_grad():
        for k in range(model.num_levels):
            torch.testing.assert_close(loaded(x, TIMESTEPS, k), model(x, TIMESTEPS, k), rtol=0, atol=0)


def test_skip_type_override_and_fresh_bridges(tmp_path: Path) -> None:
    model = perturbed(AdaptiveUNet(UNetConfig.tiny(), "zero"))
    save_model(model, tmp_path / "m.safetensors")
    duplicate = load_model(tmp_path / "m.safetensors", skip_type="duplicate")
    assert duplicate.skip_type == "duplicate" and duplicate.metadata["skip_type"] == "duplicate"
    with pytest.raises(UserFacingError, match="needs bridge weights.*fresh") as error:
        load_model(tmp_path / "m.safetensors", skip_type="interpolate")
    one_line_error(error, "m.safetensors")
    fresh = load_model(tmp_path / "m.safetensors", skip_type="interpolate", fresh_bridges=True)
    x = inputs(model.config)
    with torch.no_grad():  # fresh bridges end in a zero conv: they start as the zero skip
        torch.testing.assert_close(fresh(x, TIMESTEPS, 1), model(x, TIMESTEPS, 1))
    with pytest.raises(UserFacingError, match="skip type must be one of"):
        load_model(tmp_path / "m.safetensors", skip_type="bicubic")


# ---------------------------------------------------------------------------------------------
# diffusers UNet2DModel

DIFFUSERS_CASES = {
    "2-level-attn-top-grey": dict(in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                  layers_per_block=1, norm_num_groups=4, sample_size=8,
                                  down_block_types=("AttnDownBlock2D", "DownBlock2D"),
                                  up_block_types=("UpBlock2D", "AttnUpBlock2D")),
    "3-level-attn-middle": dict(in_channels=3, out_channels=3, block_out_channels=(8, 16, 16),
                                layers_per_block=2, norm_num_groups=4, sample_size=8,
                                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    "3-level-attn-deepest": dict(in_channels=3, out_channels=3, block_out_channels=(16, 16, 32),
                                 layers_per_block=1, norm_num_groups=8, sample_size=8,
                                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
    "2-level-no-attn": dict(in_channels=3, out_channels=1, block_out_channels=(8, 24),
                            layers_per_block=2, norm_num_groups=8, sample_size=4,
                            down_block_types=("DownBlock2D", "DownBlock2D"),
                            up_block_types=("UpBlock2D", "UpBlock2D")),
}
# What every UNet2DModel that matches our U-Net sets (the google/ddpm-cifar10-32 values).
DDPM_SETTINGS = dict(freq_shift=1, flip_sin_to_cos=False, downsample_padding=0, norm_eps=1e-6,
                     attention_head_dim=None, act_fn="silu")


def diffusers_unet(**settings: Any) -> Any:
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed")
    return perturbed(diffusers.UNet2DModel(**{**DDPM_SETTINGS, **settings}))


def diffusers_output(unet: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return unet(x, TIMESTEPS).sample


@pytest.mark.parametrize("case", sorted(DIFFUSERS_CASES))
def test_diffusers_folder_to_ours(tmp_path: Path, case: str) -> None:
    unet = diffusers_unet(**DIFFUSERS_CASES[case])
    unet.save_pretrained(tmp_path / "unet")
    model = load_model(tmp_path / "unet")
    x = inputs(model.config)
    with torch.no_grad():
        assert_same_output(model(x, TIMESTEPS), diffusers_output(unet, x))
    assert model.skip_type == "zero"
    assert model.metadata["converted_from"] == "diffusers UNet2DModel"
    assert model.metadata["schedule"]["c"] == 0.0 and model.metadata["training_scheme"] == "full"
    assert model.config.dropout == 0.0


@pytest.mark.parametrize("config", [
    UNetConfig.tiny(),
    UNetConfig(in_channels=1, out_channels=1, ch=8, ch_mult=(1, 2), num_res_blocks=2,
               attn_resolutions=(8,), dropout=0.1, resolution=8, num_groups=4),
    UNetConfig(ch=16, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(8, 2), dropout=0.0,
               resolution=8, num_groups=8),
], ids=["tiny", "2-level-grey", "3-level-two-attn"])
def test_ours_to_diffusers(tmp_path: Path, config: UNetConfig) -> None:
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed")
    model = perturbed(AdaptiveUNet(config, "interpolate"))
    save_model(model, tmp_path / "m.safetensors")
    assert convert.main([str(tmp_path / "m.safetensors"), str(tmp_path / "out"), "--to", "diffusers"]) == 0
    unet = diffusers.UNet2DModel.from_pretrained(str(tmp_path / "out")).eval()
    x = inputs(config)
    with torch.no_grad():
        assert_same_output(diffusers_output(unet, x), model(x, TIMESTEPS))
    scheduler = diffusers.DDPMScheduler.from_pretrained(str(tmp_path / "out"))
    assert scheduler.config.variance_type == "fixed_large" and scheduler.config.clip_sample
    assert scheduler.config.beta_schedule == "linear" and scheduler.config.num_train_timesteps == 1000
    back = load_model(tmp_path / "out")  # and back again, bridges gone
    assert back.config == config and back.skip_type == "zero"


def test_diffusers_legacy_attention_names_and_scheduler(tmp_path: Path) -> None:
    unet = diffusers_unet(**DIFFUSERS_CASES["3-level-attn-middle"])
    unet.save_pretrained(tmp_path)
    weights_file = tmp_path / "diffusion_pytorch_model.safetensors"
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for name, value in load_file(str(weights_file)).items():
        for new, old in legacy.items():
            name = name.replace(f".{new}.", f".{old}.")
        renamed[name] = value
    assert any(".proj_attn." in name for name in renamed)
    save_file(renamed, str(weights_file))
    (tmp_path / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "DDPMScheduler", "num_train_timesteps": 400, "beta_start": 0.0002,
        "beta_end": 0.03, "beta_schedule": "linear", "variance_type": "fixed_large"}))
    model = load_model(weights_file)  # the weights file inside the folder works too
    x = inputs(model.config)
    with torch.no_grad():
        assert_same_output(model(x, TIMESTEPS), diffusers_output(unet, x))
    assert model.metadata["diffusion"] == DiffusionConfig(400, 0.0002, 0.03).to_dict()


def test_diffusers_pipeline_layout(tmp_path: Path) -> None:
    model = perturbed(AdaptiveUNet(UNetConfig.tiny()))
    save_diffusers(model, tmp_path / "pipe" / "unet")
    (tmp_path / "pipe" / "scheduler").mkdir()
    (tmp_path / "pipe" / "unet" / "scheduler_config.json").rename(
        tmp_path / "pipe" / "scheduler" / "scheduler_config.json")
    loaded = load_model(tmp_path / "pipe")
    x = inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, TIMESTEPS), model(x, TIMESTEPS))
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"variance_type": "fixed_small"}))
    with pytest.raises(UserFacingError, match="variance_type"):
        load_model(tmp_path / "pipe")


def write_diffusers_config(folder: Path, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
    config = {**diffusers_config(UNetConfig.tiny()), **changes}
    for key in drop:
        del config[key]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, key", [
    ({"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]}, "down_block_types"),
    ({"up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D"]}, "up_block_types"),
    ({"up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}, "up_block_types"),
    ({"act_fn": "gelu"}, "act_fn"),
    ({"flip_sin_to_cos": True}, "flip_sin_to_cos"),
    ({"freq_shift": 0}, "freq_shift"),
    ({"downsample_padding": 1}, "downsample_padding"),
    ({"attention_head_dim": 4}, "attention_head_dim"),
    ({"time_embedding_type": "fourier"}, "time_embedding_type"),
    ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift"),
    ({"center_input_sample": True}, "center_input_sample"),
    ({"class_embed_type": "timestep"}, "class_embed_type"),
    ({"num_class_embeds": 10}, "num_class_embeds"),
    ({"mid_block_scale_factor": 2}, "mid_block_scale_factor"),
    ({"mid_block_type": None}, "mid_block_type"),
    ({"add_attention": False}, "add_attention"),
    ({"norm_eps": 1e-5}, "norm_eps"),
    ({"block_out_channels": [8, 12, 16]}, "block_out_channels"),
    ({"block_out_channels": [8, 16]}, "block_out_channels"),
    ({"time_embedding_dim": 64}, "time_embedding_dim"),
    ({"attn_norm_num_groups": 2}, "attn_norm_num_groups"),
    ({"upsample_type": "resnet"}, "upsample_type"),
    ({"_class_name": "UNet2DConditionModel"}, "_class_name"),
    ({"layers_per_block": [1, 1, 1]}, "layers_per_block"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_unsupported_diffusers_configs(tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    write_diffusers_config(tmp_path, changes)
    with pytest.raises(UserFacingError, match=f"unsupported UNet2DModel configuration: {key}") as error:
        load_model(tmp_path)
    one_line_error(error, "config.json")


def test_diffusers_defaults_apply_to_absent_keys(tmp_path: Path) -> None:
    write_diffusers_config(tmp_path, {}, drop=("freq_shift",))  # UNet2DModel's default is 0
    with pytest.raises(UserFacingError, match="freq_shift = 0"):
        load_model(tmp_path)
    write_diffusers_config(tmp_path, {}, drop=("dropout",))
    with pytest.raises(UserFacingError, match="no diffusion_pytorch_model.safetensors"):
        load_model(tmp_path)  # the config passes; the weights are missing


@pytest.mark.parametrize("scheduler, key", [
    ({"beta_schedule": "squaredcos_cap_v2"}, "beta_schedule"),
    ({"beta_schedule": "scaled_linear"}, "beta_schedule"),
    ({"variance_type": "fixed_small"}, "variance_type"),
    ({"variance_type": "learned_range"}, "variance_type"),
    ({"prediction_type": "v_prediction"}, "prediction_type"),
    ({"trained_betas": [0.1, 0.2]}, "trained_betas"),
])
def test_unsupported_schedulers(tmp_path: Path, scheduler: dict[str, Any], key: str) -> None:
    save_diffusers(AdaptiveUNet(UNetConfig.tiny()), tmp_path / "unet")
    (tmp_path / "unet" / "scheduler_config.json").write_text(json.dumps(scheduler))
    with pytest.raises(UserFacingError, match=f"scheduler_config.json: {key} = .* is not supported") as error:
        load_model(tmp_path / "unet")
    one_line_error(error, "scheduler_config.json")


def test_diffusers_weights_that_do_not_fit(tmp_path: Path) -> None:
    save_diffusers(perturbed(AdaptiveUNet(UNetConfig.tiny())), tmp_path)
    weights_file = tmp_path / "diffusion_pytorch_model.safetensors"
    weights = load_file(str(weights_file))
    del weights["mid_block.attentions.0.to_q.bias"]
    save_file(weights, str(weights_file))
    with pytest.raises(UserFacingError, match="missing mid_block.attentions.0.to_q.bias") as error:
        load_model(tmp_path)
    one_line_error(error, "diffusion_pytorch_model.safetensors")


def test_to_diffusers_needs_level_zero_multiplier_one() -> None:
    config = UNetConfig(ch=8, ch_mult=(2, 2), num_res_blocks=1, attn_resolutions=(), resolution=8,
                        num_groups=4)
    with pytest.raises(UserFacingError, match=r"ch_mult\[0\] = 1"):
        diffusers_config(config)
    assert not any("bridges" in name for name in to_diffusers_state_dict(AdaptiveUNet(
        UNetConfig.tiny(), "interpolate")))


# ---------------------------------------------------------------------------------------------
# DDIM / pytorch_diffusion .ckpt

DDIM_CONFIG = UNetConfig(in_channels=1, out_channels=1, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                         attn_resolutions=(8,), dropout=0.1, resolution=16, num_groups=32)


def test_ddim_state_dict(tmp_path: Path) -> None:
    model = perturbed(AdaptiveUNet(DDIM_CONFIG))
    torch.save(model.state_dict(), tmp_path / "model-790000.ckpt")
    loaded = load_model(tmp_path / "model-790000.ckpt", resolution=16)
    assert loaded.config == DDIM_CONFIG
    assert loaded.metadata["ema"] is None and loaded.metadata["training_scheme"] == "full"
    x = inputs(DDIM_CONFIG)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, TIMESTEPS), model(x, TIMESTEPS), rtol=0, atol=0)
    at_default = load_model(tmp_path / "model-790000.ckpt")  # the resolution is not in the file
    assert at_default.config.resolution == 32 and at_default.config.attn_resolutions == (16,)


@pytest.mark.parametrize("with_ema", [True, False])
def test_ddim_training_list(tmp_path: Path, with_ema: bool) -> None:
    model = perturbed(AdaptiveUNet(DDIM_CONFIG), seed=1)
    ema = perturbed(AdaptiveUNet(DDIM_CONFIG), seed=2)
    optimizer = torch.optim.Adam(model.parameters())
    model(inputs(DDIM_CONFIG), TIMESTEPS).square().mean().backward()
    optimizer.step()
    states = [{f"module.{name}": value for name, value in model.state_dict().items()},
              optimizer.state_dict(), 3, 1234]
    if with_ema:
        states.append(ema.state_dict())
    torch.save(states, tmp_path / "ckpt.pth")
    loaded = load_model(tmp_path / "ckpt.pth", resolution=16)
    expected = ema if with_ema else model
    assert loaded.metadata["ema"] is with_ema
    x = inputs(DDIM_CONFIG)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, TIMESTEPS), expected(x, TIMESTEPS), rtol=0, atol=0)


def test_ddim_round_trip_through_diffusers(tmp_path: Path) -> None:
    model = perturbed(AdaptiveUNet(DDIM_CONFIG))
    torch.save(model.state_dict(), tmp_path / "model.ckpt")
    save_diffusers(load_model(tmp_path / "model.ckpt", resolution=16), tmp_path / "unet")
    save_model(load_model(tmp_path / "unet"), tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == DDIM_CONFIG
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# bad files: one line naming the file, never code execution


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("how", ["torch.save", "pickle-2", "pickle-4", "in-training-list"])
def test_malicious_pickle_runs_no_code(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "marker"
    file = tmp_path / "evil.ckpt"
    payload = {"conv_in.weight": _Payload(marker)}
    if how == "torch.save":
        torch.save(payload, file)
    elif how == "in-training-list":
        torch.save([{}, {}, 0, 0, payload], file)
    else:
        file.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    with pytest.raises(UserFacingError, match="refused to unpickle") as error:
        load_model(file)
    one_line_error(error, "evil.ckpt")
    assert not marker.exists()


def _own_file(tmp_path: Path) -> Path:
    save_model(AdaptiveUNet(UNetConfig.tiny()), tmp_path / "good.safetensors")
    return tmp_path / "good.safetensors"


def _make_bad_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A bad input of the given kind and a pattern its error message must match."""
    target = tmp_path / "bad.ckpt"
    if kind == "missing":
        return target, "no such file"
    if kind == "truncated-safetensors":
        data = _own_file(tmp_path).read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return target, "not a readable safetensors file"
    if kind == "truncated-torch":
        torch.save(AdaptiveUNet(UNetConfig.tiny()).state_dict(), target)
        target.write_bytes(target.read_bytes()[:300])
        return target, "damaged checkpoint"
    if kind == "text":
        target.write_text("hello, I am not a checkpoint")
        return target, "unknown or damaged checkpoint"
    if kind == "empty":
        target.write_bytes(b"")
        return target, "unknown or damaged checkpoint"
    if kind == "foreign-safetensors":
        save_file({"x": torch.zeros(2)}, str(target))
        return target, "without adaskip metadata"
    if kind == "bad-metadata":
        save_file({"x": torch.zeros(2)}, str(target), metadata={"adaskip": "{not json"})
        return target, "bad adaskip metadata"
    if kind == "future-version":
        model = AdaptiveUNet(UNetConfig.tiny())
        save_model(model, target, {**build_metadata(model, DiffusionConfig(), 0.0, "full", False),
                                   "format_version": 99})
        return target, "format version 99 is not supported"
    if kind == "wrong-shape":
        tensors = load_file(str(_own_file(tmp_path)))
        metadata = {"adaskip": json.dumps(load_model(tmp_path / "good.safetensors").metadata)}
        tensors["conv_in.weight"] = torch.zeros(8, 3, 5, 5)
        save_file(tensors, str(target), metadata=metadata)
        return target, r"conv_in.weight has shape \(8, 3, 5, 5\)"
    if kind == "wrong-keys":
        state = AdaptiveUNet(DDIM_CONFIG).state_dict()
        state["extra.weight"] = torch.zeros(1)
        torch.save(state, target)
        return target, "unexpected"
    if kind == "not-a-unet":
        torch.save({"weight": torch.zeros(3)}, target)
        return target, "not a DDIM U-Net state dict"
    if kind == "short-list":
        torch.save([{"a": torch.zeros(1)}, 3], target)
        return target, "not a DDIM training checkpoint"
    if kind == "non-tensors":
        torch.save({"a": 1, "b": [2]}, target)
        return target, "not a state dict of named tensors"
    if kind == "empty-folder":
        target.mkdir()
        return target, "without config.json"
    raise AssertionError(kind)


BAD_KINDS = ["missing", "truncated-safetensors", "truncated-torch", "text", "empty",
             "foreign-safetensors", "bad-metadata", "future-version", "wrong-shape", "wrong-keys",
             "not-a-unet", "short-list", "non-tensors", "empty-folder"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_give_one_line_errors(tmp_path: Path, kind: str) -> None:
    path, pattern = _make_bad_file(tmp_path, kind)
    with pytest.raises(UserFacingError, match=pattern) as error:
        load_model(path)
    one_line_error(error, "bad.ckpt")


def test_resolution_only_where_not_recorded(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError, match="records resolution 8"):
        load_model(_own_file(tmp_path), resolution=16)
    assert load_model(tmp_path / "good.safetensors", resolution=8).config.resolution == 8


# The UNet2DModel config.json of google/ddpm-cifar10-32 (the DDPM CIFAR-10 model, non-EMA).
GOOGLE_DDPM_CIFAR10 = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def test_google_ddpm_cifar10_layout() -> None:
    """The full-size model: configs both ways, DDIM shape inference, and the name mapping
    checked name by name and shape by shape on the meta device."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers not installed")
    config = config_from_diffusers(GOOGLE_DDPM_CIFAR10, Path("config.json"), None)
    assert config == UNetConfig(**{**UNetConfig.ddpm_cifar10().to_dict(), "dropout": 0.0})
    written = diffusers_config(UNetConfig.ddpm_cifar10())
    assert {key: written[key] for key in GOOGLE_DDPM_CIFAR10} == GOOGLE_DDPM_CIFAR10
    with torch.device("meta"):
        ours = AdaptiveUNet(config).state_dict()
        theirs = diffusers.UNet2DModel(**GOOGLE_DDPM_CIFAR10).state_dict()
    assert len(ours) == len(theirs) == 328
    assert infer_ddim_config(ours, None, Path("model-790000.ckpt")) == UNetConfig.ddpm_cifar10()
    for name, value in ours.items():
        target = theirs[diffusers_name(name, config.num_levels)]
        assert value.numel() == target.numel() and value.shape[:2] == target.shape[:2], name


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file") as error:
        load_model(tmp_path / "nowhere.safetensors")
    assert isinstance(error.value, ValueError) and isinstance(error.value, MissingFileError)
    one_line_error(error, "nowhere.safetensors")


# ---------------------------------------------------------------------------------------------
# crafted files: what a file declares is checked against what it holds before anything is built

TESTS = Path(__file__).resolve().parent
# 93 G parameters (372 GB in float32), declared by files of a few kB.
HUGE = UNetConfig(ch=2048, ch_mult=(1, 2, 4, 8), num_res_blocks=4)


def _huge_declaration(tmp_path: Path, kind: str) -> Path:
    """A small file (or folder) whose declared or inferred model is HUGE."""
    if kind == "own":
        path = tmp_path / "huge.safetensors"
        metadata = {"format_version": 1, "model": HUGE.to_dict(), "skip_type": "zero",
                    "diffusion": DiffusionConfig().to_dict()}
        save_file({"conv_in.weight": torch.zeros(1)}, str(path), metadata={"adaskip": json.dumps(metadata)})
        return path
    if kind == "diffusers":
        path = tmp_path / "huge-unet"
        path.mkdir()
        (path / "config.json").write_text(json.dumps(diffusers_config(HUGE)))
        with torch.device("meta"):  # every weight the config names, each of one element
            names = [diffusers_name(name, HUGE.num_levels) for name in AdaptiveUNet(HUGE).state_dict()]
        save_file({name: torch.zeros(1) for name in names},
                  str(path / "diffusion_pytorch_model.safetensors"))
        return path
    path = tmp_path / "huge.ckpt"
    if kind == "ddim":  # only the weights the config is inferred from, as 1×1 kernels
        levels = [HUGE.ch * m for m in HUGE.ch_mult]
        state = {"conv_in.weight": torch.zeros(HUGE.ch, 3, 1, 1),
                 "conv_out.weight": torch.zeros(3, HUGE.ch, 1, 1),
                 **{f"down.{i}.block.0.conv1.weight": torch.zeros(c, 1, 1, 1) for i, c in enumerate(levels)},
                 **{f"down.0.block.{j}.conv1.weight": torch.zeros(HUGE.ch, 1, 1, 1)
                    for j in range(1, HUGE.num_res_blocks)}}
    else:  # every weight at its full shape, each a broadcast view of one stored zero
        with torch.device("meta"):
            shapes = {name: value.shape for name, value in AdaptiveUNet(HUGE).state_dict().items()}
        state = {name: torch.zeros(()).expand(shape) for name, shape in shapes.items()}
    torch.save(state, path)
    return path


# Imports first (torch alone maps gigabytes of address space), then at most 2 GB more.
LIMITED = """
import resource, sys
from adaskip_ext import cli
from adaskip_ext.checkpoints import load_model
from adaskip_ext.info import main as info
from adaskip_ext.sampling.command import main as sample

def load(argv):
    load_model(argv[0])
    return 0

with open("/proc/self/statm") as statm:
    mapped = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 2 * 2**30, resource.RLIM_INFINITY))
cli.run({"load_model": load, "info": info, "sample": sample}[sys.argv[1]], sys.argv[2:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.parametrize("kind, entry", [
    ("own", "load_model"), ("own", "sample"), ("own", "info"),
    ("diffusers", "info"), ("ddim", "load_model"), ("ddim-broadcast", "sample"),
])
def test_a_huge_declared_model_is_refused_before_allocation(tmp_path: Path, kind: str, entry: str) -> None:
    path = _huge_declaration(tmp_path, kind)
    argv = {"load_model": [path], "info": [path],
            "sample": ["--checkpoint", path, "--device", "cpu", "--steps", "1", "--num-samples", "1",
                       "--out", tmp_path / "out"]}[entry]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", LIMITED, entry, *map(str, argv)], capture_output=True,
                            text=True, timeout=300, env=env, cwd=TESTS)
    elapsed = time.monotonic() - start
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), result.stderr
    assert elapsed < 60 and not (tmp_path / "out").exists()
