"""The adaptive U-Net: sizes, the plain network at k = 0, what each skip type feeds the first
active up block, and that skipping really removes work."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from adaskip_ext.model import PRESETS, SKIP_TYPES, AdaptiveUNet, UNetConfig

from conftest import build_model, perturb_, random_inputs

SMALL_PRESETS = ("tiny", "digits")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(config: UNetConfig, skip_type: str) -> AdaptiveUNet:
    """A model without storage: enough for sizes, shapes and FLOP counts of the big preset."""
    with torch.device("meta"):
        return AdaptiveUNet(config, skip_type)


def level_channels(config: UNetConfig) -> list[int]:
    return [config.ch * m for m in config.ch_mult]


# ---------------------------------------------------------------------------------------------
# Sizes and shapes


@pytest.mark.parametrize("skip_type, expected", [
    ("zero", 35_746_307),         # the "35.7M" of DDPM's CIFAR-10 model (anchors §4)
    ("duplicate", 35_746_307),    # duplicate adds no parameters
    ("interpolate", 36_108_291),  # + one bridge (two 1×1 convs) per k in 1..3
])
def test_ddpm_cifar10_parameter_count(skip_type, expected):
    assert count_parameters(meta_model(UNetConfig.ddpm_cifar10(), skip_type)) == expected


def test_ddpm_cifar10_state_dict_layout():
    """328 tensors named as in the DDIM code, so its checkpoints load without renaming (anchors §1.3)."""
    state = meta_model(UNetConfig.ddpm_cifar10(), "zero").state_dict()
    assert len(state) == 328
    expected_shapes = {
        "temb.dense.0.weight": (512, 128),
        "temb.dense.1.weight": (512, 512),
        "conv_in.weight": (128, 3, 3, 3),
        "down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "down.1.attn.1.q.weight": (256, 256, 1, 1),
        "down.2.downsample.conv.weight": (256, 256, 3, 3),
        "mid.attn_1.proj_out.weight": (256, 256, 1, 1),
        "up.0.block.0.conv1.weight": (128, 384, 3, 3),
        "up.1.block.2.nin_shortcut.weight": (256, 384, 1, 1),
        "up.1.attn.2.norm.weight": (256,),
        "up.3.upsample.conv.weight": (256, 256, 3, 3),
        "conv_out.weight": (3, 128, 3, 3),
    }
    for name, shape in expected_shapes.items():
        assert tuple(state[name].shape) == shape, name
    assert "down.3.downsample.conv.weight" not in state
    assert "up.0.upsample.conv.weight" not in state
    assert not any(name.startswith("down.0.attn") or name.startswith("up.2.attn") for name in state)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_interpolate_adds_exactly_the_bridges(preset):
    """Bridge for k: 1×1 conv C_{K-1} -> C_mid and 1×1 conv C_mid -> C_K (with biases), K = N - k."""
    config = PRESETS[preset]()
    channels = level_channels(config)
    n, middle = config.num_levels, channels[-1]
    bridges = sum((channels[n - k - 1] + 1) * middle + (middle + 1) * channels[n - k] for k in range(1, n))
    plain = count_parameters(meta_model(config, "zero"))
    assert count_parameters(meta_model(config, "duplicate")) == plain
    assert count_parameters(meta_model(config, "interpolate")) == plain + bridges


@pytest.mark.parametrize("skip_type", SKIP_TYPES)
def test_ddpm_cifar10_output_shape_every_k(skip_type):
    model = meta_model(UNetConfig.ddpm_cifar10(), skip_type)
    x = torch.empty(2, 3, 32, 32, device="meta")
    t = torch.zeros(2, dtype=torch.long, device="meta")
    for k in range(4):
        assert model(x, t, skip_levels=k).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("preset", SMALL_PRESETS)
@pytest.mark.parametrize("skip_type", SKIP_TYPES)
def test_small_presets_output_shape_every_k(preset, skip_type):
    config = PRESETS[preset]()
    model = build_model(config, skip_type)
    x, t = random_inputs(config, batch=3)
    with torch.no_grad():
        for k in range(config.num_levels):
            out = model(x, t, skip_levels=k)
            assert out.shape == (3, config.out_channels, config.resolution, config.resolution)
            assert out.dtype == torch.float32
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("bad", [-1, 3, 1.0, True, "1", None])
def test_invalid_skip_levels_raise(tiny_model, bad):
    x, t = random_inputs(tiny_model.config)
    with pytest.raises(ValueError, match="skip_levels"):
        tiny_model(x, t, skip_levels=bad)


@pytest.mark.parametrize("changes, message", [
    ({"ch": 6}, "groups"),                               # conv_in's 6 channels in 4 groups
    ({"ch_mult": (1, 3), "num_groups": 16}, "groups"),   # level 1: 24 channels in 16 groups
    ({"ch_mult": ()}, "level"),
    ({"resolution": 10, "ch_mult": (1, 1, 1)}, "divisible"),  # 10 is not divisible by 2**2
])
def test_invalid_config_raises(changes, message):
    values = dict(ch=8, ch_mult=(1, 2), num_groups=4, resolution=8)
    UNetConfig(**values)  # the base is valid
    with pytest.raises(ValueError, match=message):
        UNetConfig(**{**values, **changes})


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_round_trips_through_dict(preset):
    config = PRESETS[preset]()
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({**config.to_dict(), "channels": 3})


def test_invalid_skip_type_raises(tiny_config):
    with pytest.raises(ValueError, match="skip_type"):
        AdaptiveUNet(tiny_config, "bicubic")


# ---------------------------------------------------------------------------------------------
# k = 0 is the plain DDPM U-Net: an independent forward written from the DDIM code (anchors §1.2)


def reference_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freq = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freq[None]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def reference_norm(norm: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, eps=1e-6)


def reference_conv(conv: torch.nn.Conv2d, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    padding = conv.weight.shape[-1] // 2 if stride == 1 else 0
    return F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding)


def reference_resnet(block, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    h = reference_conv(block.conv1, F.silu(reference_norm(block.norm1, x)))
    h = h + F.linear(F.silu(temb), block.temb_proj.weight, block.temb_proj.bias)[:, :, None, None]
    h = reference_conv(block.conv2, F.silu(reference_norm(block.norm2, h)))  # dropout off in eval
    if x.shape[1] != h.shape[1]:
        x = reference_conv(block.nin_shortcut, x)
    return x + h


def reference_attention(attn, x: torch.Tensor) -> torch.Tensor:
    b, c, height, width = x.shape
    h = reference_norm(attn.norm, x)
    q, k, v = (reference_conv(conv, h).flatten(2) for conv in (attn.q, attn.k, attn.v))  # (B, C, HW)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)  # over keys
    out = torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, height, width)
    return x + reference_conv(attn.proj_out, out)


def reference_forward(model: AdaptiveUNet, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The DDIM repo's ``Model.forward`` loop, with the model's weights but none of its forward code."""
    c = model.config
    levels = c.num_levels
    emb = reference_embedding(t, c.ch)
    temb = F.linear(emb, model.temb.dense[0].weight, model.temb.dense[0].bias)
    temb = F.linear(F.silu(temb), model.temb.dense[1].weight, model.temb.dense[1].bias)

    hs = [reference_conv(model.conv_in, x)]
    for i in range(levels):
        has_attention = c.resolution // 2 ** i in c.attn_resolutions
        for j in range(c.num_res_blocks):
            h = reference_resnet(model.down[i].block[j], hs[-1], temb)
            if has_attention:
                h = reference_attention(model.down[i].attn[j], h)
            hs.append(h)
        if i != levels - 1:
            hs.append(reference_conv(model.down[i].downsample.conv, F.pad(hs[-1], (0, 1, 0, 1)), stride=2))
    h = reference_resnet(model.mid.block_1, hs[-1], temb)
    h = reference_attention(model.mid.attn_1, h)
    h = reference_resnet(model.mid.block_2, h, temb)
    for i in reversed(range(levels)):
        has_attention = c.resolution // 2 ** i in c.attn_resolutions
        for j in range(c.num_res_blocks + 1):
            h = reference_resnet(model.up[i].block[j], torch.cat([h, hs.pop()], dim=1), temb)
            if has_attention:
                h = reference_attention(model.up[i].attn[j], h)
        if i != 0:
            h = reference_conv(model.up[i].upsample.conv, F.interpolate(h, scale_factor=2.0, mode="nearest"))
    assert not hs
    return reference_conv(model.conv_out, F.silu(reference_norm(model.norm_out, h)))


# Level 0 at 2·ch channels: conv_in, the last up block's skip and norm_out/conv_out disagree in width.
UNEVEN = UNetConfig(in_channels=3, out_channels=2, ch=4, ch_mult=(2, 3), num_res_blocks=1,
                    attn_resolutions=(8,), dropout=0.0, resolution=8, num_groups=4)


@pytest.mark.parametrize("config", [UNetConfig.tiny(), UNetConfig.digits(), UNEVEN],
                         ids=["tiny", "digits", "uneven"])
def test_k0_equals_reference_forward(config):
    model = build_model(config, "zero")
    perturb_(model, scale=0.05, seed=7)  # GroupNorm affines away from (1, 0)
    x, t = random_inputs(config, batch=3)
    with torch.no_grad():
        expected = reference_forward(model, x, t)
        out = model(x, t)
        assert torch.equal(out, model(x, t, skip_levels=0))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_tiny_preset_uses_attention_where_configured(tiny_config):
    """Otherwise the reference comparison above would not exercise attention."""
    model = build_model(tiny_config)
    assert [len(level.attn) for level in model.down] == [0, 1, 0]  # 8×8, 4×4, 2×2
    assert [len(level.attn) for level in model.up] == [0, 2, 0]


def test_all_skip_types_agree_at_k0(tiny_config):
    x, t = random_inputs(tiny_config)
    interpolate = build_model(tiny_config, "interpolate")
    perturb_(interpolate, scale=0.05, seed=5)  # bridges become non-zero too: still unused at k = 0
    outputs = {}
    for skip_type in SKIP_TYPES:
        model = AdaptiveUNet(tiny_config, skip_type).eval()
        model.load_state_dict(interpolate.state_dict(), strict=skip_type == "interpolate")
        with torch.no_grad():
            outputs[skip_type] = model(x, t, skip_levels=0)
    assert torch.equal(outputs["zero"], outputs["duplicate"])
    assert torch.equal(outputs["zero"], outputs["interpolate"])


# ---------------------------------------------------------------------------------------------
# k > 0: what is skipped and what replaces it


def capture_missing_input(model: AdaptiveUNet, x, t, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run at k and return (input of the first active up block, skip tensor s, output).

    s is the output of the last down block (after its attention, if any) of level K-1.
    """
    active = model.num_levels - k
    down = model.down[active - 1]
    last_down = down.attn[-1] if len(down.attn) else down.block[-1]
    seen = {}

    def keep_skip(module, args, out) -> None:
        seen["s"] = out

    def keep_input(module, args) -> None:
        seen["input"] = args[0]

    hooks = [last_down.register_forward_hook(keep_skip),
             model.up[active - 1].block[0].register_forward_pre_hook(keep_input)]
    try:
        with torch.no_grad():
            out = model(x, t, skip_levels=k)
    finally:
        for hook in hooks:
            hook.remove()
    return seen["input"], seen["s"], out


def skipped_modules(model: AdaptiveUNet, k: int) -> list[torch.nn.Module]:
    """Everything that must not run at k (anchors §1.2): levels K.., mid, and down[K-1].downsample."""
    active = model.num_levels - k
    return [*model.down[active:], model.mid, *model.up[active:], model.down[active - 1].downsample]


@pytest.mark.parametrize("k", [1, 2])
def test_zero_skip_output_independent_of_skipped_levels(tiny_model, k):
    x, t = random_inputs(tiny_model.config)
    with torch.no_grad():
        before = tiny_model(x, t, skip_levels=k)
    changed = copy.deepcopy(tiny_model)
    for i, module in enumerate(skipped_modules(changed, k)):
        perturb_(module, scale=1.0, seed=100 + i)
    with torch.no_grad():
        assert torch.equal(changed(x, t, skip_levels=k), before)
        assert not torch.equal(changed(x, t, skip_levels=0), tiny_model(x, t, skip_levels=0))
    # ... while an active level's weights do matter
    active = copy.deepcopy(tiny_model)
    perturb_(active.down[tiny_model.num_levels - k - 1].block[0], scale=0.5, seed=9)
    with torch.no_grad():
        assert not torch.equal(active(x, t, skip_levels=k), before)


@pytest.mark.parametrize("k", [1, 2])
def test_skipped_parameters_get_no_gradient(tiny_model, k):
    x, t = random_inputs(tiny_model.config)
    tiny_model(x, t, skip_levels=k).square().sum().backward()
    skipped = {id(p) for module in skipped_modules(tiny_model, k) for p in module.parameters()}
    for name, parameter in tiny_model.named_parameters():
        if id(parameter) in skipped:
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None, name


@pytest.mark.parametrize("k", [1, 2])
def test_zero_skip_feeds_zeros(tiny_model, k):
    x, t = random_inputs(tiny_model.config)
    missing = level_channels(tiny_model.config)[tiny_model.num_levels - k]
    block_input, s, _ = capture_missing_input(tiny_model, x, t, k)
    assert torch.equal(block_input[:, :missing], torch.zeros_like(block_input[:, :missing]))
    assert torch.equal(block_input[:, missing:], s)


def duplicate_cases():
    # (config, k): tiny k=1 repeats once (16 -> 16), tiny k=2 twice (8 -> 16), and a 2-level
    # model with 8 -> 12 channels, where the repeated tensor must be truncated.
    uneven = UNetConfig(in_channels=3, out_channels=3, ch=4, ch_mult=(2, 3), num_res_blocks=1,
                        attn_resolutions=(), dropout=0.0, resolution=8, num_groups=4)
    return [(UNetConfig.tiny(), 1), (UNetConfig.tiny(), 2), (uneven, 1)]


@pytest.mark.parametrize("config, k", duplicate_cases())
def test_duplicate_skip_feeds_repeated_skip_tensor(config, k):
    model = build_model(config, "duplicate")
    x, t = random_inputs(config)
    missing = level_channels(config)[config.num_levels - k]
    block_input, s, out = capture_missing_input(model, x, t, k)
    repeats = math.ceil(missing / s.shape[1])
    expected = torch.cat([s] * repeats, dim=1)[:, :missing]
    assert torch.equal(block_input, torch.cat([expected, s], dim=1))
    zero = AdaptiveUNet(config, "zero").eval()
    zero.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.equal(out, zero(x, t, skip_levels=k))


@pytest.mark.parametrize("k", [1, 2])
def test_fresh_interpolate_equals_zero(tiny_config, k):
    """The bridge's output conv starts at zero, so an untrained bridge is exactly the zero skip."""
    interpolate = build_model(tiny_config, "interpolate")
    zero = AdaptiveUNet(tiny_config, "zero").eval()
    zero.load_state_dict(interpolate.state_dict(), strict=False)
    x, t = random_inputs(tiny_config)
    with torch.no_grad():
        assert torch.equal(interpolate(x, t, skip_levels=k), zero(x, t, skip_levels=k))


@pytest.mark.parametrize("k", [1, 2])
def test_trained_interpolate_bridge_goes_through_middle_block(tiny_config, k):
    """bicubic down to the middle resolution, 1×1 conv, middle block, bicubic back, 1×1 conv."""
    model = build_model(tiny_config, "interpolate")
    perturb_(model.bridges[str(k)], scale=0.3, seed=11)
    x, t = random_inputs(tiny_config)
    block_input, s, out = capture_missing_input(model, x, t, k)
    bridge = model.bridges[str(k)]
    middle_size = tiny_config.resolution // 2 ** (tiny_config.num_levels - 1)
    with torch.no_grad():
        temb = model.temb.dense[1](F.silu(model.temb.dense[0](reference_embedding(t, tiny_config.ch))))
        temb = F.silu(temb)  # the blocks take the embedding after its SiLU
        h = F.interpolate(s, size=(middle_size, middle_size), mode="bicubic", align_corners=False)
        h = model.mid.block_2(model.mid.attn_1(model.mid.block_1(reference_conv(bridge.inp, h), temb)), temb)
        h = F.interpolate(h, size=s.shape[-2:], mode="bicubic", align_corners=False)
        expected = reference_conv(bridge.out, h)
    missing = level_channels(tiny_config)[tiny_config.num_levels - k]
    assert expected.shape[1] == missing
    torch.testing.assert_close(block_input[:, :missing], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(block_input[:, missing:], s)
    assert expected.abs().max() > 0  # a real, non-zero input: differs from the zero skip


# ---------------------------------------------------------------------------------------------
# Skipping removes work (FLOPs, never wall-clock time)


def forward_flops(model: AdaptiveUNet, k: int, batch: int = 1) -> int:
    c = model.config
    device = next(model.parameters()).device
    x = torch.zeros(batch, c.in_channels, c.resolution, c.resolution, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, skip_levels=k)
    return counter.get_total_flops()


@pytest.mark.parametrize("skip_type", ["zero", "duplicate"])
def test_ddpm_cifar10_flops_at_k3(skip_type):
    """Anchors §4 (analytic, over the module tree): 6.222 G MACs at k = 0 (convs, linears and
    attention matmuls); level 0 plus the timestep MLP, all that runs at k = 3, is
    2,238.8 M + 0.3 M MACs -> 2,239.1 / 6,221.9 = 0.3599 of the full network."""
    model = meta_model(UNetConfig.ddpm_cifar10(), skip_type)
    full, skipped = forward_flops(model, 0), forward_flops(model, 3)
    assert full == pytest.approx(2 * 6.222e9, rel=1e-3)
    assert skipped / full == pytest.approx(2239.1 / 6221.9, abs=1e-3)
    assert 0.355 < skipped / full < 0.37


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("skip_type", SKIP_TYPES)
def test_flops_strictly_decrease_with_k(preset, skip_type):
    model = meta_model(PRESETS[preset](), skip_type)
    flops = [forward_flops(model, k) for k in range(model.num_levels)]
    assert all(a > b for a, b in zip(flops, flops[1:])), flops
