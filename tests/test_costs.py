"""Per-k cost shares and the ideal savings of a schedule, against the issue's figures for the
DDPM CIFAR-10 U-Net (from the model itself, not hard-coded into the code under test)."""
from __future__ import annotations

import pytest
import torch

from adaskip_ext import costs
from adaskip_ext.model import AdaptiveUNet, UNetConfig
from adaskip_ext.schedule import SkipSchedule

from conftest import build_model


@pytest.fixture(scope="module")
def cifar_shares() -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = AdaptiveUNet(UNetConfig.ddpm_cifar10(), "zero").eval()
    return costs.shares(costs.depth_costs(model))


@pytest.mark.slow
def test_ddpm_cifar10_shares(cifar_shares):
    assert cifar_shares["flops"] == pytest.approx([1.0, 0.965, 0.85, 0.36], abs=0.005)
    assert cifar_shares["params"] == pytest.approx([1.0, 0.642, 0.365, 0.080], abs=0.001)
    assert all(a > b for a, b in zip(cifar_shares["ops"], cifar_shares["ops"][1:]))


@pytest.mark.slow
def test_ideal_savings_at_c2_over_all_timesteps(cifar_shares):
    levels = list(SkipSchedule(4, c=2.0).levels(list(range(999, -1, -1)), 1000))
    ideal = costs.ideal_savings(cifar_shares, levels)
    assert ideal["flops"] == pytest.approx(0.35, abs=0.01)
    assert ideal["ops"] == pytest.approx(0.53, abs=0.02)
    assert ideal["params"] == pytest.approx(0.65, abs=0.01)


def test_costs_ignore_the_fused_switch_and_restore_it(tiny_config):
    model = build_model(tiny_config, "zero")
    fused = costs.depth_costs(model.use_fused_ops(True))
    assert model.fused
    assert costs.depth_costs(model.use_fused_ops(False)) == fused
    assert fused[0].params == sum(p.numel() for p in model.parameters())
    assert [c.skip_levels for c in fused] == list(range(tiny_config.num_levels))


def test_ideal_savings_is_the_mean_share_saved():
    share = {"flops": [1.0, 0.5, 0.25]}
    assert costs.ideal_savings(share, [0, 1, 2, 2]) == {"flops": pytest.approx(1 - 2.0 / 4)}
    assert costs.ideal_savings(share, [0, 0]) == {"flops": 0.0}
