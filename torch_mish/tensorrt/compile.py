"""Compile, save and load models that use torch.ops.mish with torch-tensorrt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch_tensorrt

from torch_mish.tensorrt import selection as _lowering
from torch_mish.tensorrt.plugin import load_plugin


def compile(
    model: torch.nn.Module,
    inputs: Sequence[torch.Tensor | torch_tensorrt.Input],
    *,
    lowering: str | None = None,
    require_full_compilation: bool = True,
    min_block_size: int = 1,
    **settings: Any,
) -> torch.fx.GraphModule:
    """``torch_tensorrt.compile(model, ir="dynamo", ...)`` with the Mish lowering chosen.

    Args:
        model: a module calling torch.ops.mish (torch_mish.Mish, or one converted by convert_mish).
        inputs: example tensors, or ``torch_tensorrt.Input(min_shape=..., opt_shape=..., max_shape=...)``
            for dynamic shapes.
        lowering: 'native', 'plugin' or 'auto'; default: the current one (get_lowering()).
        require_full_compilation: fail instead of leaving ops in PyTorch (default True: the point is
            one TensorRT engine).
        min_block_size: smallest TensorRT island (default 1, so no op is sent back to PyTorch).
        settings: further torch_tensorrt.compile settings (for precision, give the model the dtype:
            ``model.half()``; engines are strongly typed).
    """
    chosen = lowering or _lowering.get_lowering()
    if _lowering.resolve(chosen) == "plugin":
        load_plugin()
    with _lowering.lowering(chosen):
        return torch_tensorrt.compile(
            model,
            ir="dynamo",
            inputs=list(inputs),
            require_full_compilation=require_full_compilation,
            min_block_size=min_block_size,
            **settings,
        )


def save(module: torch.fx.GraphModule, path: str | os.PathLike[str], inputs: Sequence[torch.Tensor]) -> None:
    """Save a compiled module as an ExportedProgram (``torch_tensorrt.save``)."""
    torch_tensorrt.save(module, str(path), inputs=list(inputs))


def load(path: str | os.PathLike[str]) -> torch.export.ExportedProgram:
    """Load a saved compiled module. Registers the plugin library first, which deserializing an
    engine that contains TorchMish layers requires."""
    load_plugin(missing_ok=True)
    return torch_tensorrt.load(str(path))
