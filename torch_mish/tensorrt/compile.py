"""Compile, save and load models that use torch.ops.mish with torch-tensorrt."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch_tensorrt

from torch_mish._cpu_tensorrt import allow_tensorrt_without_gpu
from torch_mish.tensorrt import selection as _lowering
from torch_mish.tensorrt.inspect import Inputs, as_input_list
from torch_mish.tensorrt.plugin import load_plugin


def _model_dtypes(model: torch.nn.Module, inputs: list[Any]) -> set[torch.dtype]:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    for i in inputs:
        dtype = i.dtype if isinstance(i, torch.Tensor) else getattr(i, "torch_dtype", None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            dtypes.add(dtype)
    return dtypes


def _as_torch_dtype(precision: Any) -> Any:
    if isinstance(precision, torch.dtype):
        return precision
    try:
        return torch_tensorrt.dtype._from(precision).to(torch.dtype)
    except (TypeError, ValueError, AttributeError):
        return precision


def _warn_ignored_precisions(model: torch.nn.Module, inputs: list[Any], settings: dict[str, Any]) -> None:
    """torch-tensorrt's dynamo path builds strongly typed networks: enabled_precisions does not change
    them (torch-tensorrt 2.13 removed the setting; earlier versions ignore it unless
    use_explicit_typing=False). Say so instead of building an fp32 engine the user thinks is fp16."""
    requested = settings.get("enabled_precisions")
    if not requested or settings.get("use_explicit_typing") is False:
        return
    wanted = {_as_torch_dtype(p) for p in requested}
    have = _model_dtypes(model, inputs)
    if wanted - have:
        warnings.warn(
            f"enabled_precisions={sorted(map(str, wanted))} is ignored: torch-tensorrt {torch_tensorrt.__version__} "
            f"builds strongly typed engines, whose precision is the model's ({', '.join(sorted(map(str, have)))}). "
            "For a float16/bfloat16 engine convert the model and inputs (model.half(), x.half()) or pass "
            "enable_autocast=True.",
            UserWarning,
            stacklevel=3,
        )


def compile(
    model: torch.nn.Module,
    inputs: Inputs,
    *,
    lowering: str | None = None,
    require_full_compilation: bool = True,
    min_block_size: int = 1,
    **settings: Any,
) -> torch.fx.GraphModule:
    """``torch_tensorrt.compile(model, ir="dynamo", ...)`` with the Mish lowering chosen.

    Args:
        model: a module calling torch.ops.mish (torch_mish.Mish, or one converted by convert_mish).
        inputs: an example tensor, a ``torch_tensorrt.Input`` (``Input(min_shape=..., opt_shape=...,
            max_shape=...)`` for dynamic shapes), or a sequence of them, one per model input.
        lowering: 'native' or 'plugin'; default: the current one (get_lowering()).
        require_full_compilation: fail instead of leaving ops in PyTorch (default True: the point is
            one TensorRT engine).
        min_block_size: smallest TensorRT island (default 1, so no op is sent back to PyTorch).
        settings: further torch_tensorrt.compile settings. Engines are strongly typed: their
            precision is the model's dtype (``model.half()``) or ``enable_autocast=True``;
            ``enabled_precisions`` is ignored, with a warning.
    """
    if not torch.cuda.is_available() and not settings.get("dryrun"):
        # torch-tensorrt would get as far as TensorRT's builder and fail on an empty assertion.
        raise RuntimeError(
            "mtrt.compile builds an engine for this machine's GPU, and there is no CUDA device here; "
            "without a GPU, check the conversion with torch_mish.tensorrt.inspect.dry_run (or dryrun=True) "
            "and build engines with `torch-mish build`"
        )
    chosen = lowering or _lowering.get_lowering()
    if _lowering.resolve(chosen) == "plugin":
        load_plugin()
    arg_inputs = as_input_list(inputs)
    _warn_ignored_precisions(model, arg_inputs, settings)
    # Without a GPU only a dry run (dryrun=...) gets anywhere; let it, tracing on the CPU.
    with _lowering.lowering(chosen), allow_tensorrt_without_gpu():
        program: Any = model
        if not torch.cuda.is_available() and not isinstance(model, torch.export.ExportedProgram):
            program = torch_tensorrt.dynamo.trace(model, tuple(arg_inputs), device="cpu")
            settings.setdefault("offload_module_to_cpu", True)  # else it asks the GPU for free memory
        return torch_tensorrt.compile(
            program,
            ir="dynamo",
            inputs=arg_inputs,
            require_full_compilation=require_full_compilation,
            min_block_size=min_block_size,
            **settings,
        )


def save(module: torch.fx.GraphModule, path: str | os.PathLike[str], inputs: Inputs) -> None:
    """Save a compiled module as an ExportedProgram (``torch_tensorrt.save``)."""
    torch_tensorrt.save(module, str(path), inputs=as_input_list(inputs))


def load(path: str | os.PathLike[str]) -> torch.export.ExportedProgram:
    """Load a saved compiled module. Registers the plugin library first, which deserializing an
    engine that contains TorchMish layers requires."""
    load_plugin(missing_ok=True)
    return torch_tensorrt.load(str(path))
