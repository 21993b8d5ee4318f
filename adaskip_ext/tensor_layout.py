"""Memory layouts of image tensors, shared by the op fronts (``ops``) and the kernels below them."""
from __future__ import annotations

import torch


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last when x is laid out that way (and not also NCHW-contiguous), else NCHW."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
