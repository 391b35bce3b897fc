"""nn.Module API."""

from __future__ import annotations

import torch
from torch import nn

from torch_mish.functional import mish


class Mish(nn.Module):
    """Mish activation as a module: a drop-in for :class:`torch.nn.Mish` that runs the fused op.

    Args:
        inplace: overwrite the input (see :func:`torch_mish.mish`).
    """

    __constants__ = ["inplace"]

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return mish(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
