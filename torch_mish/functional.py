"""Functional API."""

from __future__ import annotations

import torch


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Mish activation, ``x * tanh(softplus(x))``, as one fused kernel.

    A drop-in for :func:`torch.nn.functional.mish`: same signature, output in the input's dtype and
    memory format, differentiable twice. Computes float16/bfloat16 in float32 and rounds once.
    Unlike ``F.mish``, ``mish(-inf)`` is 0 (the limit), not NaN.

    Args:
        input: a float32, float64, float16 or bfloat16 tensor on the CPU or a CUDA device.
        inplace: overwrite ``input``. Under autograd the input is still copied for the backward pass
            (Mish cannot be inverted), so in-place saves memory only in inference.

    Returns:
        A tensor of ``input``'s shape, dtype, device and memory format (``input`` itself if inplace).

    Raises:
        TypeError: for integer, bool or complex tensors.
        RuntimeError: in place on a leaf that requires grad, or on a tensor whose elements overlap.
    """
    if inplace:
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            # Traced graphs (dynamo, export, TorchScript for ONNX) get the functional op plus a copy:
            # torch.export, torch-tensorrt and the ONNX exporters then see
            # torch.ops.mish.mish (a traced mish_ would become an opaque auto_functionalized node), and
            # Inductor re-inplaces the copy.
            # Under autograd, mish saves its input for backward: give it a copy that copy_ won't bump.
            source = input.clone() if input.requires_grad and torch.is_grad_enabled() else input
            return input.copy_(torch.ops.mish.mish(source))
        torch.ops.mish.mish_(input)  # returns nothing: see the schema in csrc/ops/mish_schema.cpp
        return input
    return torch.ops.mish.mish(input)
