"""nn.Module API."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

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
            input.dim() == 4
            and input.numel() > input.size(1)
            and self.training
            and self.track_running_stats
            and self.affine
            and self.running_mean is not None
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch._C._is_tracing()
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._fused(input):
            return mish(super().forward(input))
        if input.size(1) != self.num_features:  # _batch_norm_with_update does not check this on the CPU
            raise RuntimeError(
                f"BatchNormMish: expected {self.num_features} channels (dim 1) like num_features, got {input.size(1)}"
            )
        # nn.BatchNorm2d's momentum rule: momentum=None means a cumulative moving average.
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _BatchNormMishFunction.apply(
            input, self.weight, self.bias, self.running_mean, self.running_var, momentum, self.eps
        )


def _batchnorm_output(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, eps: float
) -> torch.Tensor:
    """Recompute the training-mode BatchNorm output from the batch statistics it saved."""
    if x.is_cuda:
        return torch.batch_norm_elemt(x, weight, bias, mean, invstd, eps)  # one pass, in x's dtype and layout
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale = (invstd * weight).view(shape)
    y = (x.to(scale.dtype) - mean.view(shape)) * scale + bias.view(shape)
    return y.to(x.dtype)


class _BatchNormMishFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        # The same ATen op nn.BatchNorm2d reaches in training (cuDNN or native, as ATen chooses).
        y, mean, invstd, reserve = torch.ops.aten._batch_norm_with_update(
            x, weight, bias, running_mean, running_var, momentum, eps
        )
        torch.ops.mish.mish_(y)  # y is ours alone: overwrite it, nothing keeps the BatchNorm output
        ctx.save_for_backward(x, weight, bias, mean, invstd, reserve)
        ctx.eps = eps
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias, mean, invstd, reserve = ctx.saved_tensors
        grad_bn = torch.ops.mish._mish_backward(grad, _batchnorm_output(x, weight, bias, mean, invstd, ctx.eps))
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = torch.ops.aten.batch_norm_backward(
            grad_bn, x, weight, None, None, mean, invstd, True, ctx.eps, mask, reserve
        )
        return grad_x, grad_weight, grad_bias, None, None, None, None
