"""Python-side registrations for torch.ops.mish: fake kernels (shape/dtype propagation for
torch.compile and torch.export) and the in-place op's autograd. darknet_nms has no autograd: its
Autograd kernel is a fallthrough (csrc/ops/darknet_nms.cpp), so its outputs never require grad.

Autograd of mish and _mish_backward is in C++ (csrc/ops/mish_autograd.cpp): it saves only the input,
so a Mish layer keeps one tensor alive for backward, as ReLU does, instead of the composed module's
four.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torch_mish import _compat

_lib = torch.library.Library("mish", "FRAGMENT")


@torch.library.register_fake("mish::mish")
def _mish_fake(self: torch.Tensor) -> torch.Tensor:
    _check_floating(self, "mish")
    return torch.empty_like(self)


@torch.library.register_fake("mish::mish_")
def _mish_inplace_fake(self: torch.Tensor) -> None:
    _check_floating(self, "mish_")


@torch.library.register_fake("mish::_mish_backward")
def _mish_backward_fake(grad_output: torch.Tensor, self: torch.Tensor) -> torch.Tensor:
    _check_floating(self, "_mish_backward")
    torch._check(
        grad_output.dtype == self.dtype,
        lambda: (
            f"_mish_backward: expected 'grad_output' to have the dtype of 'self' ({self.dtype}), "
            f"got {grad_output.dtype}"
        ),
    )
    torch._check(
        grad_output.shape == self.shape,
        lambda: f"_mish_backward: expected 'grad_output' of shape {tuple(self.shape)}, got {tuple(grad_output.shape)}",
    )
    return torch.empty_like(self)


@torch.library.register_fake("mish::_mish_backward_affine")
def _mish_backward_affine_fake(
    grad_output: torch.Tensor,
    self: torch.Tensor,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    _check_floating(self, "_mish_backward_affine")
    torch._check(
        grad_output.shape == self.shape, lambda: "_mish_backward_affine: 'grad_output' must have the shape of 'self'"
    )
    # The kernels keep contiguous and 4-d channels-last layouts and make any other one contiguous.
    channels_last = self.dim() == 4 and self.is_contiguous(memory_format=torch.channels_last)
    if self.is_contiguous() or channels_last:
        return torch.empty_like(self)
    return torch.empty(self.shape, dtype=self.dtype, device=self.device)


@torch.library.register_fake("mish::batch_norm_mish")
def _batch_norm_mish_fake(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    # ATen's own meta kernel decides the output layout, as the real op's BatchNorm does.
    return torch.ops.aten._batch_norm_with_update(input, weight, bias, running_mean, running_var, momentum, eps)[0]


_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

NMS_KINDS = ("default", "greedynms", "diounms")


def check_nms_options(
    conf_thresh: float,
    iou_thresh: float,
    max_det: int,
    kind: str,
    beta: float,
    net_width: float = 1.0,
    net_height: float = 1.0,
    where: str = "darknet_nms",
) -> None:
    """mish::darknet_nms's checks of its scalar arguments, with the C++ kernels' messages
    (csrc/ops/darknet_nms_common.h); ``where`` names the caller in them."""
    op = f"{where}: "
    if not 0 <= conf_thresh <= 1:
        raise ValueError(f"{op}conf_thresh must be in [0, 1], got {conf_thresh}")
    if not 0 <= iou_thresh <= 1:
        raise ValueError(f"{op}iou_thresh must be in [0, 1], got {iou_thresh}")
    if isinstance(max_det, bool) or not isinstance(max_det, int) or not 1 <= max_det < 2**31:
        raise ValueError(f"{op}max_det must be an integer of at least 1 (and below 2^31), got {max_det!r}")
    if kind not in NMS_KINDS:
        raise ValueError(
            f"{op}unknown kind {kind!r}; expected 'default', 'greedynms' or 'diounms' (darknet's [yolo] nms_kind)"
        )
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{op}beta must be finite and >= 0, got {beta}")
    if not all(math.isfinite(v) and v > 0 for v in (net_width, net_height)):
        raise ValueError(f"{op}net_width and net_height must be finite and > 0, got {net_width} and {net_height}")


def check_nms_rows(rows: torch.Tensor, where: str = "darknet_nms") -> None:
    """mish::darknet_nms's checks of ``rows``: dtype and (N, R, 5 + classes) shape."""
    op = f"{where}: "
    if rows.dtype not in _FLOATING:
        raise TypeError(f"{op}expected 'rows' to be float32, float16, bfloat16 or float64, got {rows.dtype}")
    torch._check_value(
        rows.dim() == 3 and rows.shape[2] >= 6,
        lambda: (
            f"{op}expected 'rows' of shape (N, R, 5 + classes) with at least one class (darknet rows: cx, cy, w, h, "
            f"objectness, class scores), got shape {list(rows.shape)}"
        ),
    )


@torch.library.register_fake("mish::darknet_nms")
def _darknet_nms_fake(
    rows: torch.Tensor,
    conf_thresh: float,
    iou_thresh: float,
    max_det: int,
    kind: str = "default",
    beta: float = 0.6,
    net_width: float = 1.0,
    net_height: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_nms_rows(rows)
    check_nms_options(conf_thresh, iou_thresh, max_det, kind, beta, net_width, net_height)
    n = rows.shape[0]
    return (
        rows.new_empty((n, 1), dtype=torch.int32),
        rows.new_empty((n, max_det, 4), dtype=torch.float32),
        rows.new_empty((n, max_det), dtype=torch.float32),
        rows.new_empty((n, max_det), dtype=torch.int32),
    )


def _check_floating(t: torch.Tensor, op: str) -> None:
    if t.dtype not in _FLOATING:
        raise TypeError(f"{op}: expected 'self' to be float32, float64, float16 or bfloat16, got {t.dtype}")


# mish_: autograd cannot recover x from mish(x) (mish is not injective below its minimum), so when a
# gradient is needed the input is copied before it is overwritten: correct, but it saves no memory
# over the out-of-place op. Without autograd the op is truly in place.
class _MishInplace(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x.clone())
        with _compat.below_autograd():
            torch.ops.mish.mish_(x)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.mish._mish_backward(grad, x)


def _mish_inplace_autograd(x: torch.Tensor) -> None:
    if torch.is_grad_enabled() and x.requires_grad:
        _MishInplace.apply(x)
        return
    with _compat.below_autograd():
        torch.ops.mish.mish_(x)


_lib.impl("mish_", _mish_inplace_autograd, "Autograd")


def count_mish_nodes(graph: torch.fx.Graph) -> tuple[int, int]:
    """(torch.ops.mish.mish calls, aten.mish calls) in an FX graph: torch_mish's op, and nn.Mish /
    F.mish, which a lowering of torch_mish's op does not reach."""
    aten = (torch.ops.aten.mish.default, torch.ops.aten.mish_.default)
    ours = sum(n.target == torch.ops.mish.mish.default for n in graph.nodes)
    return ours, sum(n.target in aten for n in graph.nodes)


def count_composed_mish(graph: torch.fx.Graph) -> int:
    """x * tanh(softplus(x)) written in torch ops, in an FX graph of ATen ops (torch.export's): Mish
    that no Mish op carries, which ``torch_mish.convert_mish`` swaps for torch_mish's op when a module
    computes it."""
    aten = torch.ops.aten

    def softplus_input(tanh: object) -> object:
        if isinstance(tanh, torch.fx.Node) and tanh.target == aten.tanh.default:
            softplus = tanh.args[0]
            if isinstance(softplus, torch.fx.Node) and softplus.target == aten.softplus.default:
                return softplus.args[0]
        return None

    products = [n for n in graph.nodes if n.target in (aten.mul.Tensor, aten.mul_.Tensor) and len(n.args) == 2]
    return sum(softplus_input(b) is a or softplus_input(a) is b for a, b in (n.args for n in products))
