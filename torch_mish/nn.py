"""nn.Module API."""

from __future__ import annotations

import torch
from torch import nn

from torch_mish.functional import _is_compiling, _is_tracing, mish

# The op behind BatchNormMish (csrc/ops/batch_norm_mish.cpp); its builtin directly, as in functional.py.
_batch_norm_mish = getattr(torch.ops.mish.batch_norm_mish.default, "_op", torch.ops.mish.batch_norm_mish.default)


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


class BatchNormMish(nn.BatchNorm2d):
    """``BatchNorm2d`` followed by Mish, as one module that keeps half the activation memory in training.

    An ``nn.BatchNorm2d`` then ``Mish`` pair keeps two tensors per layer for the backward pass: the
    BatchNorm input (for BatchNorm's gradient) and the BatchNorm output (for Mish's). This module
    keeps only the first, which BatchNorm needs anyway, plus BatchNorm's per-channel batch
    statistics; the backward pass recomputes the BatchNorm output from them. The model then holds
    as much for backward as one with an in-place LeakyReLU.

    The fused path runs in eager training with autograd on. In eval mode, under ``torch.compile``,
    ``torch.export`` and TorchScript tracing the module computes ``mish(batch_norm(x))`` with the
    unfused ops, so exported graphs and TensorRT engines see ``batch_norm`` and
    ``torch.ops.mish.mish`` (Inductor makes its own recompute decisions under compile). The
    parameters and buffers are BatchNorm2d's, under the same names: a checkpoint of the unfused
    model loads into the fused one and back.

    Build one with :func:`torch_mish.fuse_batchnorm_mish` (which swaps the pairs of an existing model)
    or directly, with ``nn.BatchNorm2d``'s arguments.
    """

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> BatchNormMish:
        """A BatchNormMish holding ``bn``'s parameters and buffers (shared, not copied)."""
        fused = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
        for name, param in bn.named_parameters(recurse=False):
            setattr(fused, name, param)
        for name, buffer in bn.named_buffers(recurse=False):
            setattr(fused, name, buffer)
        return fused.train(bn.training)

    def _fused(self, input: torch.Tensor) -> bool:
        return (
            # Wrong ranks, empty batches and a single value per channel take nn.BatchNorm2d's path,
            # which raises or answers for them exactly as BatchNorm2d does.
            self.training
            and input.dim() == 4
            and input.numel() > input.size(1)
            and self.running_mean is not None  # track_running_stats
            and self.affine
            and torch.is_grad_enabled()
            and not _is_compiling()
            and not _is_tracing()
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._fused(input):
            return mish(super().forward(input))
        # nn.BatchNorm2d's momentum rule: momentum=None means a cumulative moving average.
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _batch_norm_mish(input, self.weight, self.bias, self.running_mean, self.running_var, momentum, self.eps)
