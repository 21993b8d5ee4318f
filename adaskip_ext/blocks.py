"""Building blocks of the DDPM U-Net (Ho et al.) as laid out in the DDIM reference code.

Module and parameter names follow ``ermongroup/ddim:models/diffusion.py`` so that DDIM
checkpoints load without renaming. ``Bridge`` is the ``interpolate`` skip path of the paper.

Blocks with a ``fused`` attribute run their GroupNorm+SiLU(+conv) and bicubic bridges through
``adaskip_ext.ops`` when it is True (``AdaptiveUNet.use_fused_ops`` sets it on every block).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import ops


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding, ``[sin, cos]`` with frequencies ``exp(-log(1e4) * i / (half - 1))``.

    timesteps: (B,) integer or float tensor. Returns (B, dim) float32.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent * (-math.log(10000.0) / (half - 1)))
    angles = timesteps.float()[:, None] * freqs[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def normalize(channels: int, num_groups: int) -> nn.GroupNorm:
    """GroupNorm with the reference's eps of 1e-6."""
    return nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor, fused: bool, silu: bool = True) -> torch.Tensor:
    """``silu(norm(x))`` (or ``norm(x)``), through the fused op when ``fused``. Differentiable."""
    if fused:
        return ops.group_norm_silu(x, norm.weight, norm.bias, norm.num_groups, norm.eps, silu)
    return F.silu(norm(x)) if silu else norm(x)


def norm_silu_conv(
    norm: nn.GroupNorm,
    conv: nn.Conv2d,
    x: torch.Tensor,
    fused: bool,
    add: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv(silu(norm(x))) + add[:, :, None, None] + residual``. x: (B, C_in, H, W).

    The single fused op has no backward, so it runs only when no gradient is being recorded.
    """
    recording = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
    if fused and not recording:
        return ops.group_norm_silu_conv3x3(x, norm.weight, norm.bias, conv.weight, conv.bias,
                                           norm.num_groups, norm.eps, add, residual)
    h = conv(norm_silu(norm, x, fused))
    if add is not None:
        h = h + add[:, :, None, None]
    return h if residual is None else residual + h


class Upsample(nn.Module):
    """Nearest ×2 then a 3×3 conv. (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Pad (0, 1, 0, 1) then a stride-2 3×3 conv. (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv ×2 with the timestep added between; 1×1 shortcut when channels change.

    x: (B, in_channels, H, W), temb: (B, temb_channels), the timestep embedding after its SiLU
    (the model applies it once for all blocks) -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        dropout: float,
        num_groups: int,
    ) -> None:
        super().__init__()
        self.norm1 = normalize(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = normalize(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.fused = False

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = norm_silu_conv(self.norm1, self.conv1, x, self.fused,
                           add=self.temb_proj(temb))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        if self.training and self.dropout.p > 0:  # dropout sits between the SiLU and conv2
            return shortcut + self.conv2(self.dropout(norm_silu(self.norm2, h, self.fused)))
        return norm_silu_conv(self.norm2, self.conv2, h, self.fused, residual=shortcut)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, residual. (B, C, H, W) -> same."""

    def __init__(self, channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = normalize(channels, num_groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = norm_silu(self.norm, x, self.fused, silu=False)
        q = self.q(h).reshape(b, c, height * width).transpose(1, 2)  # (B, HW, C)
        k = self.k(h).reshape(b, c, height * width)  # (B, C, HW)
        v = self.v(h).reshape(b, c, height * width)  # (B, C, HW)
        weights = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=2)  # (B, HW query, HW key)
        h = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, height, width)
        return x + self.proj_out(h)


class MiddleBlock(nn.Module):
    """ResnetBlock, attention, ResnetBlock at the deepest resolution. (B, C, H, W) -> same."""

    def __init__(self, channels: int, temb_channels: int, dropout: float, num_groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, temb_channels, dropout, num_groups)
        self.attn_1 = AttnBlock(channels, num_groups)
        self.block_2 = ResnetBlock(channels, channels, temb_channels, dropout, num_groups)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x, temb)), temb)


class Bridge(nn.Module):
    """The ``interpolate`` skip: a shortcut through the middle block for one k.

    skip: (B, C_in, H, W) -> bicubic to the middle resolution -> 1×1 conv to C_mid -> middle
    block -> bicubic back to (H, W) -> 1×1 conv to C_missing: (B, C_missing, H, W).
    The ``out`` conv starts at zero, so an untrained bridge equals the ``zero`` skip.
    """

    def __init__(self, in_channels: int, middle_channels: int, missing_channels: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, middle_channels, 1)
        self.out = nn.Conv2d(middle_channels, missing_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.fused = False

    def forward(
        self,
        skip: torch.Tensor,
        temb: torch.Tensor,
        middle: MiddleBlock,
        middle_size: tuple[int, int],
    ) -> torch.Tensor:
        h = middle(self._resize_project(self.inp, skip, middle_size), temb)
        return self._resize_project(self.out, h, (skip.shape[2], skip.shape[3]))

    def _resize_project(self, conv: nn.Conv2d, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``conv(interpolate(x, size, bicubic))`` for a 1×1 conv. x: (B, C_in, H, W)."""
        if self.fused:
            return ops.bicubic_bridge(x, size[0], size[1], conv.weight, conv.bias)
        return conv(F.interpolate(x, size=size, mode="bicubic", align_corners=False))
