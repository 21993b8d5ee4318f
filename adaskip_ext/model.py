"""The adaptive U-Net: the DDPM U-Net whose deepest ``k = skip_levels`` levels can be skipped.

Layout, for N = ``len(ch_mult)`` levels, level i at resolution ``R / 2**i`` with
``C_i = ch * ch_mult[i]`` channels (``R`` = ``resolution``):

* contracting path: ``hs = [conv_in(x)]``; level i runs ``num_res_blocks`` ResnetBlocks (each
  followed by attention when ``R / 2**i`` is in ``attn_resolutions``), pushing every output on
  ``hs``; then, except after the last level, a Downsample whose output is pushed too.
* middle block (ResnetBlock, attention, ResnetBlock) at level N-1, ``C_{N-1}`` channels.
* expansive path: level i (deepest first) runs ``num_res_blocks + 1`` ResnetBlocks on
  ``cat([h, hs.pop()], dim=1)``, then, except at level 0, an Upsample into level i-1.

With ``skip_levels = k > 0`` only levels 0 … K-1 run, K = N - k: levels K … N-1, the middle
block, the Downsample at the end of level K-1 and the Upsample that leaves level K are not
computed. The first active up block (level K-1) is missing its input ``h`` from below: a tensor
of shape ``(B, C_K, R / 2**(K-1), R / 2**(K-1))`` (``C_K`` is the output of up level K). The
tensor ``s = hs[-1]`` it is concatenated with is the output of level K-1's last down block,
``(B, C_{K-1}, R / 2**(K-1), …)``. The skip type supplies ``h``:

* ``zero``: zeros of that shape.
* ``duplicate``: ``cat([s] * r, dim=1)[:, :C_K]``.
* ``interpolate``: ``bridges[str(k)](s)``: bicubic down to the middle block's resolution
  ``R / 2**(N-1)``, 1×1 conv ``C_{K-1} -> C_{N-1}``, the middle block, bicubic back, 1×1 conv
  ``C_{N-1} -> C_K``.

For the CIFAR-10 preset (N = 4, R = 32, C = 128/256/256/256) the missing input is
(B, 256, 8, 8) at k = 1, (B, 256, 16, 16) at k = 2 and (B, 256, 32, 32) at k = 3 (R / 2**(K-1)).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from .blocks import (AttnBlock, Bridge, Downsample, MiddleBlock, ResnetBlock, Upsample,
                     norm_silu_conv, normalize)
from .blocks import timestep_embedding

SkipType = Literal["zero", "duplicate", "interpolate"]
SKIP_TYPES: tuple[str, ...] = ("zero", "duplicate", "interpolate")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of the U-Net; round-trips through ``to_dict`` / ``from_dict``."""

    in_channels: int = 3            # image channels in
    out_channels: int = 3           # predicted-noise channels out
    ch: int = 128                   # channels of level 0
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per level; N = len(ch_mult)
    num_res_blocks: int = 2         # ResnetBlocks per down level (up levels get one more)
    attn_resolutions: tuple[int, ...] = (16,)  # resolutions that get self-attention
    dropout: float = 0.1            # dropout inside ResnetBlocks
    resolution: int = 32            # input height and width
    num_groups: int = 32            # GroupNorm groups

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if len(self.ch_mult) < 1:
            raise ValueError("ch_mult needs at least one level")
        if self.resolution % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(
                f"resolution {self.resolution} is not divisible by 2**{len(self.ch_mult) - 1}"
            )
        for channels in [self.ch, *(self.ch * m for m in self.ch_mult)]:
            if channels % self.num_groups:
                raise ValueError(f"{channels} channels are not divisible by {self.num_groups} groups")

    @property
    def num_levels(self) -> int:
        """N, the number of resolution levels."""
        return len(self.ch_mult)

    @classmethod
    def ddpm_cifar10(cls) -> "UNetConfig":
        """The 35.7M-parameter CIFAR-10 model of DDPM / DDIM."""
        return cls()

    @classmethod
    def digits(cls) -> "UNetConfig":
        """A small 3-level model for the embedded 16×16 greyscale digits."""
        return cls(
            in_channels=1,
            out_channels=1,
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            dropout=0.1,
            resolution=16,
            num_groups=8,
        )

    @classmethod
    def tiny(cls) -> "UNetConfig":
        """A minimal 3-level model for tests (8×8 images, attention at 4×4)."""
        return cls(
            in_channels=3,
            out_channels=3,
            ch=8,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            dropout=0.0,
            resolution=8,
            num_groups=4,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "UNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**values)


PRESETS = {"ddpm_cifar10": UNetConfig.ddpm_cifar10, "digits": UNetConfig.digits,
           "tiny": UNetConfig.tiny}


# Largest batch that runs channels_last on CUDA. Measured on an H200 (benchmarks/results/GPU.md):
# at batch 1 channels_last made the graphed full-depth forward 18% faster and a c = 2 run 3-9%;
# at batches 16 and 128 the shallow networks (k = 2, 3: the 32×32 level, 4 channels per
# GroupNorm group, the 3-channel convs at both ends) ran up to 1.5× slower, so c = 2 lost.
CHANNELS_LAST_MAX_BATCH = 4


def preferred_memory_format(device: torch.device, batch_size: int) -> torch.memory_format:
    """The layout the model's 4-D weights (and so its activations) run in on ``device``.

    CUDA at small batches: channels_last (NHWC), cuDNN's native layout on sm80+, where NCHW
    convolutions transpose their input and output around every call (at batch 1 on an H200 a
    sixth of the forward). Otherwise NCHW.
    """
    if device.type == "cuda" and batch_size <= CHANNELS_LAST_MAX_BATCH:
        return torch.channels_last
    return torch.contiguous_format


class _Level(nn.Module):
    """Container for one level's blocks, named as in the reference (``block``, ``attn``, …)."""


class AdaptiveUNet(nn.Module):
    """DDPM U-Net with ``forward(x, t, skip_levels=k)``; see the module docstring for the layout.

    x: (B, in_channels, R, R); t: (B,) integer timesteps -> (B, out_channels, R, R).
    ``fused_ops`` (default on) routes GroupNorm+SiLU(+conv) and the bicubic bridges through
    ``adaskip_ext.ops``; ``use_fused_ops(False)`` gives the plain PyTorch layers.
    """

    def __init__(self, config: UNetConfig, skip_type: SkipType = "zero",
                 fused_ops: bool = True) -> None:
        super().__init__()
        if skip_type not in SKIP_TYPES:
            raise ValueError(f"skip_type must be one of {SKIP_TYPES}, got {skip_type!r}")
        self.config = config
        self.skip_type = skip_type
        self.metadata: dict[str, Any] = {}
        c = config
        temb_channels = 4 * c.ch
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(c.ch, temb_channels),
                                         nn.Linear(temb_channels, temb_channels)])
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)

        level_channels = [c.ch * m for m in c.ch_mult]
        in_ch_mult = (1,) + c.ch_mult
        self.down = nn.ModuleList()
        resolution = c.resolution
        for i in range(c.num_levels):
            level = _Level()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            block_in = c.ch * in_ch_mult[i]
            for _ in range(c.num_res_blocks):
                level.block.append(ResnetBlock(block_in, level_channels[i], temb_channels,
                                               c.dropout, c.num_groups))
                block_in = level_channels[i]
                if resolution in c.attn_resolutions:
                    level.attn.append(AttnBlock(block_in, c.num_groups))
            if i != c.num_levels - 1:
                level.downsample = Downsample(block_in)
                resolution //= 2
            self.down.append(level)

        self.mid = MiddleBlock(level_channels[-1], temb_channels, c.dropout, c.num_groups)

        up_levels: list[_Level] = []
        block_in = level_channels[-1]
        for i in reversed(range(c.num_levels)):
            level = _Level()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for j in range(c.num_res_blocks + 1):
                skip_in = c.ch * (in_ch_mult[i] if j == c.num_res_blocks else c.ch_mult[i])
                level.block.append(ResnetBlock(block_in + skip_in, level_channels[i],
                                               temb_channels, c.dropout, c.num_groups))
                block_in = level_channels[i]
                if resolution in c.attn_resolutions:
                    level.attn.append(AttnBlock(block_in, c.num_groups))
            if i != 0:
                level.upsample = Upsample(block_in)
                resolution *= 2
            up_levels.insert(0, level)
        self.up = nn.ModuleList(up_levels)

        self.norm_out = normalize(level_channels[0], c.num_groups)
        self.conv_out = nn.Conv2d(level_channels[0], c.out_channels, 3, padding=1)

        if skip_type == "interpolate":
            self.bridges = nn.ModuleDict({
                str(k): Bridge(level_channels[c.num_levels - 1 - k], level_channels[-1],
                               level_channels[c.num_levels - k])
                for k in range(1, c.num_levels)
            })
        self.use_fused_ops(fused_ops)

    def use_fused_ops(self, enabled: bool = True) -> "AdaptiveUNet":
        """The one switch between the fused ops and plain PyTorch layers, for every block."""
        self.fused = enabled
        for module in self.modules():
            if hasattr(module, "fused"):
                module.fused = enabled
        return self

    @property
    def num_levels(self) -> int:
        return self.config.num_levels

    def missing_input(self, skip: torch.Tensor, temb: torch.Tensor, skip_levels: int) -> torch.Tensor:
        """The input from below for the first active up block. skip: (B, C_{K-1}, H, W)."""
        active = self.num_levels - skip_levels
        missing_channels = self.config.ch * self.config.ch_mult[active]
        if self.skip_type == "zero":
            return skip.new_zeros(skip.shape[0], missing_channels, *skip.shape[2:])
        if self.skip_type == "duplicate":
            repeats = -(-missing_channels // skip.shape[1])
            return torch.cat([skip] * repeats, dim=1)[:, :missing_channels]
        middle_size = self.config.resolution // 2 ** (self.num_levels - 1)
        return self.bridges[str(skip_levels)](skip, temb, self.mid, (middle_size, middle_size))

    def forward(self, x: torch.Tensor, t: torch.Tensor, skip_levels: int = 0) -> torch.Tensor:
        if (not isinstance(skip_levels, int) or isinstance(skip_levels, bool)
                or not 0 <= skip_levels < self.num_levels):
            raise ValueError(
                f"skip_levels must be an int in [0, {self.num_levels - 1}], got {skip_levels!r}"
            )
        active = self.num_levels - skip_levels
        # Every ResnetBlock projects silu(temb): taken once here, not once per block.
        temb = torch.nn.functional.silu(self.temb.dense[1](torch.nn.functional.silu(
            self.temb.dense[0](timestep_embedding(t, self.config.ch).to(x.dtype)))))

        hs = [self.conv_in(x)]
        for i in range(active):
            level = self.down[i]
            for j, block in enumerate(level.block):
                h = block(hs[-1], temb)
                if len(level.attn):
                    h = level.attn[j](h)
                hs.append(h)
            if i < active - 1:
                hs.append(level.downsample(hs[-1]))

        if skip_levels == 0:
            h = self.mid(hs[-1], temb)
        else:
            h = self.missing_input(hs[-1], temb, skip_levels)

        for i in reversed(range(active)):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn):
                    h = level.attn[j](h)
            if i != 0:
                h = level.upsample(h)
        return norm_silu_conv(self.norm_out, self.conv_out, h, self.fused)

