"""nn.Module API."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from torch_mish import _compat
from torch_mish.functional import _is_compiling, _is_tracing, mish

# The op behind BatchNormMish (csrc/ops/batch_norm_mish.cpp); its builtin directly, as in functional.py.
_batch_norm_mish = _compat.op_builtin(torch.ops.mish.batch_norm_mish.default)


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


class BatchNormMish(_NormBase):
    """``BatchNorm2d`` followed by Mish, as one module that keeps one tensor per layer for backward.

    An ``nn.BatchNorm2d`` then ``Mish`` pair keeps two tensors per layer for the backward pass: the
    BatchNorm input (for BatchNorm's gradient) and the BatchNorm output (for Mish's). This module
    keeps only the first, which BatchNorm needs anyway, plus BatchNorm's per-channel batch
    statistics; the backward kernel recomputes the BatchNorm output from them. The model then holds
    as much for backward as one with an in-place LeakyReLU.

    The fused path runs in eager training with autograd on. In eval mode, under ``torch.compile``,
    ``torch.export`` and TorchScript tracing the module computes ``mish(batch_norm(x))`` with the
    unfused ops, so exported graphs and TensorRT engines see ``batch_norm`` and
    ``torch.ops.mish.mish`` (Inductor makes its own recompute decisions under compile). Parameters
    and buffers are BatchNorm2d's, under the same names: a checkpoint of the unfused model loads into
    the fused one and back.

    It is deliberately not an ``nn.BatchNorm2d`` subclass: tools that find BatchNorms by type
    (``nn.SyncBatchNorm.convert_sync_batchnorm``, conv-BN folding) would treat it as a plain
    BatchNorm and drop its Mish. Fuse for training, after any SyncBatchNorm conversion (SyncBatchNorm
    is not fused), and :func:`torch_mish.unfuse_batchnorm_mish` before folding or deployment.

    Not supported by the fused path: double backward and ``torch.func`` transforms (which run
    backward with ``create_graph=True``) and forward-mode AD. Use the unfused pair for those.
    Compiled autograd works.

    Build one with :func:`torch_mish.fuse_batchnorm_mish` (which swaps the pairs of an existing model)
    or directly, with ``nn.BatchNorm2d``'s arguments.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")

    # A module that applied BatchNorm then Mish itself (timm's BatchNormAct2d), for unfusing. Kept out of
    # the module tree (a plain attribute), so state-dict keys stay BatchNorm2d's.
    _original: nn.Module | None = None

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, original: nn.Module | None = None) -> BatchNormMish:
        """A BatchNormMish holding ``bn``'s parameters and buffers (shared, not copied). ``original``:
        the module to give back on unfusing when ``bn`` applied its own Mish."""
        fused = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
        _share_state(bn, fused)
        if original is not None:
            fused.__dict__["_original"] = original
        return fused.train(bn.training)

    @property
    def original(self) -> nn.Module | None:
        """The module this one replaced when that module applied its own Mish, else None."""
        return self._original

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this on every submodule first; without it the error names this class's
        # internals (its `original` property's annotation) instead of what to do.
        raise RuntimeError(
            "torch.jit.script cannot compile torch_mish.BatchNormMish: script the model after "
            "torch_mish.unfuse_batchnorm_mish(model), or use torch.jit.trace or torch.export"
        )

    def to_original(self) -> nn.Module:
        """The replaced module back, holding this module's parameters and buffers (shared)."""
        if self._original is None:
            raise ValueError("this BatchNormMish replaced a BatchNorm2d -> Mish pair: use to_batchnorm()")
        _share_state(self, self._original)
        return self._original.train(self.training)

    def to_batchnorm(self) -> nn.BatchNorm2d:
        """The ``nn.BatchNorm2d`` half, holding this module's parameters and buffers (shared)."""
        bn = nn.BatchNorm2d(
            self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats, device="meta"
        )
        _share_state(self, bn)
        return bn.train(self.training)

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

    def _momentum(self) -> float:
        """nn.BatchNorm2d's rule: count the batch; momentum=None means a cumulative moving average."""
        if not (self.training and self.track_running_stats and self.num_batches_tracked is not None):
            return 0.0 if self.momentum is None else self.momentum
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self._fused(input):
            momentum = self._momentum()
            return _batch_norm_mish(
                input, self.weight, self.bias, self.running_mean, self.running_var, momentum, self.eps
            )
        self._check_input_dim(input)
        momentum = self._momentum()
        # Batch statistics in training, and in eval mode too when no running statistics are kept.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        out = F.batch_norm(
            input,
            self.running_mean if keep_running else None,
            self.running_var if keep_running else None,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )
        return mish(out)


def _share_state(source: nn.Module, target: nn.Module) -> None:
    for name, param in source.named_parameters(recurse=False):
        setattr(target, name, param)
    for name, buffer in source.named_buffers(recurse=False):
        setattr(target, name, buffer)
