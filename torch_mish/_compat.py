"""The private PyTorch and torch-tensorrt interfaces torch_mish relies on, in one place.

Each is used only where no public API does the job, and each has a fallback or a clear error when it
is gone. ``tests/test_compat.py`` checks every one against the installed versions, so a torch or
torch-tensorrt upgrade that removes one fails there, by name, rather than somewhere downstream.

Checked against torch 2.11 and 2.14 and torch-tensorrt(-rtx) 2.11 to 2.14.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

CHECKED_TORCH = ("2.11", "2.12", "2.13", "2.14")
CHECKED_TORCH_TENSORRT = ("2.11", "2.12", "2.13", "2.14")


# --- torch: host cost of the eager call ---------------------------------------------------------


def op_builtin(overload: torch._ops.OpOverload) -> Callable[..., Any]:
    """The overload's C++ builtin (``OpOverload._op``), which ``OpOverload.__call__`` only forwards to.

    Calling it directly saves a Python frame per call; on small tensors host time is the whole cost.
    It still honours ``__torch_function__`` and dispatch modes. Falls back to the overload itself."""
    return getattr(overload, "_op", overload)


# torch.jit.is_tracing() without its is_scripting() frame (same answer, one frame less per call).
is_tracing: Callable[[], bool] = getattr(torch._C, "_is_tracing", torch.jit.is_tracing)


def is_exporting() -> bool:
    """True inside torch.export. Reads the flag torch.export sets (``torch.compiler._is_exporting_flag``):
    Dynamo in torch 2.11 folds a traced ``torch.compiler.is_exporting()`` to True under torch.compile
    as well, which would send torch.compile down the opaque custom-op path."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else bool(flag)


def below_autograd() -> Any:
    """``torch._C._AutoDispatchBelowAutograd()``: run an op's kernels without its Autograd kernel
    (what an autograd kernel registered in Python must do to call the op it wraps). torch.library's
    public ``register_autograd`` does not take ops that mutate their input, such as ``mish_``."""
    return torch._C._AutoDispatchBelowAutograd()


# --- torch.onnx's dynamo exporter -----------------------------------------------------------------
# The exporter offers no public way to register a translation for every export: only a per-call
# ``custom_translation_table``. Its built-in table is filled from the torchlib registry's
# ``_registry`` list at the start of each export (``ONNXRegistry.from_torchlib``). Loading those
# modules imports onnxscript (about a second), so the registration waits until the exporter loads
# ``_registration`` (which loads the torchlib registry first: both are complete when it is).
ONNX_REGISTRATION = "torch.onnx._internal.exporter._registration"
ONNX_TORCHLIB_REGISTRY = "torch.onnx._internal.exporter._torchlib._torchlib_registry"
_ONNX_EXPORT_FUNCTION = ("export_compat", "torch/onnx/_internal/exporter/_compat.py")


def add_onnx_translation(target: torch._ops.OpOverload, function: Callable[..., Any]) -> None:
    """Add ``function`` to the dynamo ONNX exporter's built-in table for ``target``: now if the
    exporter is loaded, else right after it loads."""

    def register(registration: types.ModuleType) -> None:
        registry = importlib.import_module(ONNX_TORCHLIB_REGISTRY)
        registry._registry.append(
            registration.OnnxDecompMeta(
                onnx_function=function,
                fx_target=target,
                signature=None,
                is_custom=False,
                opset_introduced=18,  # the exporter never builds graphs below 18 (it converts down after)
                skip_signature_inference=True,  # a plain traced function: no onnxscript needed until export
            )
        )

    loaded = sys.modules.get(ONNX_REGISTRATION)
    if loaded is not None and hasattr(loaded, "OnnxDecompMeta"):
        register(loaded)
    else:
        after_import(ONNX_REGISTRATION, register)


def requested_onnx_opset() -> int | None:
    """The opset a running ``torch.onnx.export(dynamo=True)`` call was asked for, or None outside one.

    The exporter translates at opset 18 or above and converts the finished model down afterwards,
    so a translation cannot see a lower request any other way. Read from the frame of
    ``torch.onnx``'s export function; None when it is not found (then the caller assumes >= 18)."""
    frame = sys._getframe(1)
    name, path = _ONNX_EXPORT_FUNCTION
    while frame is not None:
        code = frame.f_code
        if code.co_name == name and code.co_filename.replace("\\", "/").endswith(path):
            opset = frame.f_locals.get("opset_version")
            return int(opset) if isinstance(opset, int) else None
        frame = frame.f_back
    return None


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback once a module has finished executing (one shot)."""

    def __init__(self, name: str, callback: Callable[[types.ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_then_callback(module: types.ModuleType) -> None:
            exec_module(module)
            callback(module)

        loader.exec_module = exec_then_callback  # type: ignore[method-assign]
        return spec


def after_import(name: str, callback: Callable[[types.ModuleType], None]) -> None:
    """Run ``callback(module)`` once module ``name`` has been imported and executed."""
    sys.meta_path.insert(0, _AfterImport(name, callback))


# --- torch-tensorrt -------------------------------------------------------------------------------


def check_torch_tensorrt_version(feature: str) -> None:
    """Refuse, naming the versions, where a feature relies on torch-tensorrt internals not checked."""
    import torch_tensorrt

    if not torch_tensorrt.__version__.startswith(CHECKED_TORCH_TENSORRT):
        raise RuntimeError(
            f"{feature} relies on torch-tensorrt internals checked on {', '.join(CHECKED_TORCH_TENSORRT)}; "
            f"found torch-tensorrt {torch_tensorrt.__version__}"
        )


def construct_network(interpreter: Any) -> None:
    """``TRTInterpreter._construct_trt_network_def()``: converts the graph into ``interpreter.ctx.net``
    without building an engine (the public entry points build, then load the engine, which needs a GPU)."""
    interpreter._construct_trt_network_def()


def builder_config(interpreter: Any) -> Any:
    """``TRTInterpreter._populate_trt_builder_config()``: the IBuilderConfig torch-tensorrt would build
    with (optimization profiles, precision flags, workspace), for ``build_serialized_network``."""
    return interpreter._populate_trt_builder_config()
