"""What a sampling run does to the model and to its records: one preparation shared by the CLI and
``sample_images`` (no relayout between them), one reduced-precision copy kept per model, and parts
on disk that record the whole skip list."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adaskip_ext import AdaptiveUNet, UNetConfig, sample_images
from adaskip_ext.sampling import command, loop, runners
from adaskip_ext.sampling.parts import PartStore


def addresses(model: AdaptiveUNet) -> list[int]:
    return [t.data_ptr() for t in (*model.parameters(), *model.buffers())]


def test_the_cli_prepares_the_model_once_for_sample_images(tiny_c2_checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With channels_last preferred (as on CUDA at small batches), the weights the CLI warms up
    (and captures graphs on) are the very tensors ``sample_images`` runs: no relayout between."""
    monkeypatch.setattr(loop, "preferred_memory_format", lambda device, batch: torch.channels_last)
    seen: dict[str, list[int]] = {}
    warm_up, runner_for = command.warm_up, loop.runner_for

    def recording_warm_up(model, *args):
        seen["prepared"] = addresses(model)
        assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        return warm_up(model, *args)

    def recording_runner_for(model, *args):
        seen["sampled"] = addresses(model)
        return runner_for(model, *args)

    monkeypatch.setattr(command, "warm_up", recording_warm_up)
    monkeypatch.setattr(loop, "runner_for", recording_runner_for)
    assert command.main(["--checkpoint", str(tiny_c2_checkpoint), "--steps", "2", "--num-samples", "2",
                         "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    assert seen["prepared"] == seen["sampled"]


def test_a_reduced_precision_copy_is_kept_until_the_weights_change(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.tiny(), "zero").eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    used: list[AdaptiveUNet] = []
    runner_for = loop.runner_for

    def recording_runner_for(run_model, *args):
        used.append(run_model)
        return runner_for(run_model, *args)

    monkeypatch.setattr(loop, "runner_for", recording_runner_for)
    settings = dict(steps=2, batch_size=2, device="cpu", dtype=torch.bfloat16, progress=False)
    first = sample_images(model, 2, **settings)
    second = sample_images(model, 2, **settings)
    assert used[1] is used[0] and used[0] is not model
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model as it was
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)

    with torch.no_grad():
        model.conv_in.weight.mul_(2.0)  # an in-place update: the copy must be made anew
    sample_images(model, 2, **settings)
    assert used[2] is not used[0]
    torch.testing.assert_close(used[2].conv_in.weight, model.conv_in.weight.to(torch.bfloat16))


def test_parts_drawn_with_another_skip_list_are_refused(tiny_c2_checkpoint: Path, tmp_path: Path) -> None:
    """Two explicit lists of the same length are two schedules: resuming must not merge them."""
    out = tmp_path / "out"
    common = ["--checkpoint", str(tiny_c2_checkpoint), "--steps", "3", "--num-samples", "4",
              "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    args = command.build_parser().parse_args([*common, "--skip-list", "2,1,0"])
    args.sampler_config = command.check(args)
    model = command.load_model(tiny_c2_checkpoint)
    run = command.Run.build(args.sampler_config, command.build_schedule(args, model), model)
    store = PartStore(out / "parts", command.run_settings(args, tiny_c2_checkpoint, model, run), 2)
    store.prepare(main=True)
    store.write(0, np.zeros((2, 8, 8, 3), np.uint8))
    assert json.loads((out / "parts" / "run.json").read_text())["schedule"]["skip_levels"] == [2, 1, 0]

    with pytest.raises(command.UserFacingError, match=r"other settings \(schedule\)"):
        command.main([*common, "--skip-list", "2,2,0"])
    assert command.main([*common, "--skip-list", "2,1,0"]) == 0  # the same list resumes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_cli_captures_each_k_once(tiny_c2_checkpoint: Path, tmp_path: Path) -> None:
    """At batch ≤ 4 (channels_last on CUDA) every k is captured once: before the fix, the first
    batch recaptured all of them after the relayout."""
    runners.captures.clear()
    assert command.main(["--checkpoint", str(tiny_c2_checkpoint), "--steps", "6", "--num-samples", "8",
                         "--batch-size", "4", "--device", "cuda", "--compare-full",
                         "--out", str(tmp_path / "out")]) == 0
    assert runners.captures and set(runners.captures.values()) == {1}
