"""Functional API."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_mish import _compat, _inductor
from torch_mish._env import env_flag

# What torch.compile (not torch.export) traces: True, aten.mish; False, torch.ops.mish.mish; None
# (TORCH_MISH_COMPILE_AS_ATEN unset), the custom op for inference, where Inductor fuses its
# decomposition (torch_mish/_inductor.py, faster than its own aten.mish code), and aten.mish where a
# gradient is needed, whose forward and backward Inductor fuses together.
_COMPILE_AS_ATEN: bool | None = env_flag("TORCH_MISH_COMPILE_AS_ATEN")

# Bound once: on small tensors the host cost of a call is the whole cost, and each Python frame and
# attribute lookup adds to it. The eager path calls the overloads' builtins; traced paths call the
# OpOverload itself, which Dynamo knows.
_mish = torch.ops.mish.mish.default
_mish_ = torch.ops.mish.mish_.default
_mish_eager = _compat.op_builtin(_mish)
_mish_eager_ = _compat.op_builtin(_mish_)
_is_compiling = torch.compiler.is_compiling
_is_tracing = _compat.is_tracing
_is_exporting = _compat.is_exporting


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:  # noqa: PLR0911 - one return per path
    """Mish activation, ``x * tanh(softplus(x))``, as one fused kernel.

    A drop-in for :func:`torch.nn.functional.mish`: same signature, output in the input's dtype and
    memory format, differentiable twice. Computes float16/bfloat16 in float32 and rounds once.
    Unlike ``F.mish``, ``mish(-inf)`` is 0 (the limit), not NaN.

    Under ``torch.compile`` Inductor fuses Mish with neighbouring ops: without gradients it decomposes
    the custom op (torch_mish/_inductor.py), with them it gets ``aten.mish``. ``TORCH_MISH_COMPILE_AS_ATEN``
    set to 1 or 0 picks ``aten.mish`` or the custom op always. ``torch.export`` keeps the custom op.

    Args:
        input: a float32, float64, float16 or bfloat16 tensor on the CPU or a CUDA device.
        inplace: overwrite ``input``. Under autograd the input is still copied for the backward pass
            (Mish cannot be inverted), so in-place saves memory only in inference.

    Returns:
        A tensor of ``input``'s shape, dtype, device and memory format (``input`` itself if inplace).

    Raises:
        TypeError: for non-tensors and integer, bool or complex tensors.
        RuntimeError: in place on a leaf that requires grad, or on a tensor whose elements overlap.
    """
    if torch.jit.is_scripting():
        # TorchScript compiles only this branch (it drops the rest as dead code), as for F.mish.
        if inplace:
            torch.ops.mish.mish_(input)
            return input
        return torch.ops.mish.mish(input)
    if not isinstance(input, torch.Tensor) and not hasattr(input, "__torch_function__"):
        # None would reach the dispatcher as "no tensor arguments"; FX proxies and other tensor-likes
        # (which implement __torch_function__) go on to the op.
        raise TypeError(f"mish: expected 'input' to be a torch.Tensor, got {type(input).__name__}")
    if not _is_compiling() and not _is_tracing():
        if not inplace:
            return _mish_eager(input)
        _mish_eager_(input)  # returns nothing: see the schema in csrc/ops/mish_schema.cpp
        return input
    if _is_compiling() and not _is_exporting() and _compile_as_aten(input):
        # torch.compile with a gradient, without the decomposition, or TORCH_MISH_COMPILE_AS_ATEN=1:
        # aten.mish, which Inductor fuses (forward and backward) into neighbouring pointwise code; the
        # opaque op would cost a separate kernel and a round trip through memory each way.
        return F.mish(input, inplace=inplace)
    if inplace:
        # Traced graphs (dynamo, export, TorchScript for ONNX) get the functional op plus a copy:
        # torch.export, torch-tensorrt and the ONNX exporters then see torch.ops.mish.mish (a traced
        # mish_ would become an opaque auto_functionalized node), and Inductor re-inplaces the copy.
        # Under autograd, mish saves its input for backward: give it a copy that copy_ won't bump.
        source = input.clone() if input.requires_grad and torch.is_grad_enabled() else input
        return input.copy_(_mish(source))
    return _mish(input)


def _compile_as_aten(input: torch.Tensor) -> bool:
    """Under torch.compile: trace aten.mish (True) or the custom op (False). Dynamo guards on grad mode,
    requires_grad and the decomposition's state, so each combination gets its own graph."""
    if _COMPILE_AS_ATEN is not None:
        return _COMPILE_AS_ATEN
    return not _inductor.decomposes() or (torch.is_grad_enabled() and input.requires_grad)
