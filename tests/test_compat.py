"""torch_mish._compat: every private torch / torch-tensorrt interface torch_mish relies on is still
there, by name, so an upgrade that removes one fails here rather than somewhere downstream."""

from __future__ import annotations

import importlib
import importlib.util
import inspect

import pytest
import torch

from torch_mish import _compat


def test_torch_version_was_checked() -> None:
    assert torch.__version__.startswith(_compat.CHECKED_TORCH), (
        f"torch {torch.__version__} is not among the versions torch_mish/_compat.py was checked on"
    )


def test_eager_fast_path_interfaces() -> None:
    overload = torch.ops.mish.mish.default
    assert _compat.op_builtin(overload) is not overload, "OpOverload._op is gone: the eager call got slower"
    assert hasattr(torch._C, "_is_tracing")
    assert hasattr(torch.compiler, "_is_exporting_flag"), "torch.export's flag is gone: see _compat.is_exporting"
    assert hasattr(torch._C, "_AutoDispatchBelowAutograd")


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="onnxscript is not installed")
def test_onnx_dynamo_exporter_interfaces() -> None:
    registration = importlib.import_module(_compat.ONNX_REGISTRATION)
    registry = importlib.import_module(_compat.ONNX_TORCHLIB_REGISTRY)
    assert isinstance(registry._registry, list)
    fields = set(inspect.signature(registration.OnnxDecompMeta).parameters)
    assert {"onnx_function", "fx_target", "opset_introduced", "skip_signature_inference"} <= fields
    # The registration happened: torch.ops.mish.mish is in the exporter's table.
    assert any(m.fx_target == torch.ops.mish.mish.default for m in registry._registry)
    name, path = _compat._ONNX_EXPORT_FUNCTION
    compat = importlib.import_module("torch.onnx._internal.exporter._compat")
    function = getattr(compat, name)
    assert function.__code__.co_filename.replace("\\", "/").endswith(path)
    assert "opset_version" in function.__code__.co_varnames


def test_torch_tensorrt_interfaces(trt) -> None:  # noqa: ANN001
    import torch_tensorrt
    from torch_tensorrt.dynamo.conversion import TRTInterpreter

    assert torch_tensorrt.__version__.startswith(_compat.CHECKED_TORCH_TENSORRT)
    assert callable(TRTInterpreter._construct_trt_network_def)
    assert callable(TRTInterpreter._populate_trt_builder_config)
