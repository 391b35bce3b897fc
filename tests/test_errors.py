"""Every wrong call and the exception it must raise: one table, never a crash, hang or wrong result.

Each row is a call that a user can make by mistake. The table runs on every device the row applies to;
rows that need torch-tensorrt skip where it is missing. Malformed plugin fields are answered inside
TensorRT (createPlugin returns null and logs why): that table is in tests/tensorrt/test_plugin_library.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import DEVICES, requires_cuda

import torch_mish


@dataclasses.dataclass(frozen=True)
class BadCall:
    id: str
    call: Callable[[str, Any], object]  # (device, pytest request) -> makes the wrong call
    raises: type[BaseException]
    match: str
    needs: str = ""  # "" | "cuda" | "tensorrt"


NON_FLOATING = [torch.int32, torch.int64, torch.uint8, torch.int8, torch.bool, torch.complex64]
ENTRY_POINTS: dict[str, Callable[[torch.Tensor], object]] = {
    "torch.ops.mish.mish": torch.ops.mish.mish,
    "torch.ops.mish.mish_": torch.ops.mish.mish_,
    "torch_mish.mish": torch_mish.mish,
    "torch_mish.mish(inplace)": lambda x: torch_mish.mish(x, inplace=True),
    "torch_mish.Mish": torch_mish.Mish(),
    "_mish_backward": lambda x: torch.ops.mish._mish_backward(x, x),
}


def _ones(device: str, dtype: torch.dtype, shape: tuple[int, ...] = (4, 5)) -> torch.Tensor:
    return torch.ones(shape, device=device).to(dtype)


def _cpu_grad_for_cuda_input(device: str, request: Any) -> object:
    return torch.ops.mish._mish_backward(torch.ones(8), torch.ones(8, device="cuda"))


def _batchnorm_mish_double_backward(device: str, request: Any) -> object:
    x = torch.randn(2, 4, 3, 3, device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(torch_mish.BatchNormMish(4).to(device)(x).sum(), x, create_graph=True)
    return grad


def _inplace_on_leaf(device: str, request: Any) -> object:
    return torch_mish.mish(torch.ones(8, device=device, requires_grad=True), inplace=True)


def _backward_twice(device: str) -> None:
    loss = torch_mish.mish(torch.ones(3, device=device, requires_grad=True) * 2).sum()
    loss.backward()
    loss.backward()  # the saved input was freed by the first backward


def _tensorrt(request: Any) -> Any:
    request.getfixturevalue("trt")  # skips without torch-tensorrt
    return importlib.import_module("torch_mish.tensorrt")


def _set_unknown_lowering(device: str, request: Any) -> object:
    return _tensorrt(request).set_lowering("fast")


def _unknown_lowering_from_environment(device: str, request: Any) -> object:
    _tensorrt(request)  # first: skips without torch-tensorrt, before the import below could fail
    from torch_mish.tensorrt import selection

    request.getfixturevalue("monkeypatch").setenv("TORCH_MISH_TRT_LOWERING", "layers")
    return selection.resolve()


def _plugin_library_missing(device: str, request: Any) -> object:
    _tensorrt(request)
    from torch_mish.tensorrt import plugin

    request.getfixturevalue("monkeypatch").setattr(plugin, "_LIB_DIR", Path(request.getfixturevalue("tmp_path")))
    return plugin.load_plugin()


def _onnx_export(plugin: bool, dynamo: bool, **kwargs: Any) -> Callable[[str, Any], object]:
    def call(device: str, request: Any) -> object:
        from torch_mish import onnx

        path = Path(request.getfixturevalue("tmp_path")) / "m.onnx"
        return onnx.export(torch_mish.Mish(), (torch.randn(2, 3),), path, plugin=plugin, dynamo=dynamo, **kwargs)

    return call


TABLE: list[BadCall] = [
    *(
        BadCall(
            f"{name} on {str(dtype).removeprefix('torch.')}",
            lambda d, r, fn=fn, dtype=dtype: fn(_ones(d, dtype)),
            TypeError,
            f"got {re.escape(str(dtype))}$",
        )
        for name, fn in ENTRY_POINTS.items()
        for dtype in NON_FLOATING
    ),
    BadCall("torch_mish.mish on None", lambda d, r: torch_mish.mish(None), TypeError, "expected 'input' to be a torch"),
    BadCall("torch.ops.mish.mish on a list", lambda d, r: torch.ops.mish.mish([1.0]), RuntimeError, "type 'Tensor'"),
    BadCall(
        "sparse input",
        lambda d, r: torch.ops.mish.mish(torch.eye(3, device=d).to_sparse()),
        NotImplementedError,
        "Sparse",
    ),
    BadCall(
        "_mish_backward: grad dtype differs",
        lambda d, r: torch.ops.mish._mish_backward(_ones(d, torch.float64), _ones(d, torch.float32)),
        TypeError,
        r"expected 'grad_output' to have the dtype of 'self' \(torch.float32\), got torch.float64",
    ),
    BadCall(
        "_mish_backward: grad shape differs",
        lambda d, r: torch.ops.mish._mish_backward(_ones(d, torch.float32, (5, 4)), _ones(d, torch.float32)),
        RuntimeError,
        r"expected 'grad_output' of shape \[4, 5\] like 'self', got \[5, 4\]",
    ),
    BadCall(
        "_mish_backward: grad on another device",
        _cpu_grad_for_cuda_input,
        RuntimeError,
        "expected 'grad_output' on cuda:0 like 'self', got cpu",
        needs="cuda",
    ),
    BadCall(
        "autograd: grad_output of the wrong shape",
        lambda d, r: torch_mish.mish(torch.ones(3, device=d, requires_grad=True)).backward(torch.ones(4, device=d)),
        RuntimeError,
        "Mismatch in shape",
    ),
    BadCall("backward twice through one graph", lambda d, r: _backward_twice(d), RuntimeError, "a second time"),
    BadCall(
        "in place on a leaf that requires grad", _inplace_on_leaf, RuntimeError, "leaf Variable that requires grad"
    ),
    BadCall(
        "in place on overlapping memory",
        lambda d, r: torch.ops.mish.mish_(torch.ones(1, device=d).expand(16)),
        RuntimeError,
        "more than one element of the written-to tensor",
    ),
    BadCall(
        "torch_mish.mish(inplace) on overlapping memory",
        lambda d, r: torch_mish.mish(torch.ones(1, device=d).expand(16), inplace=True),
        RuntimeError,
        "more than one element of the written-to tensor",
    ),
    BadCall(
        "BatchNormMish on a 3-d input",
        lambda d, r: torch_mish.BatchNormMish(4).to(d)(torch.ones(2, 4, 5, device=d, requires_grad=True)),
        ValueError,
        r"expected 4D input \(got 3D input\)",
    ),
    BadCall(
        "BatchNormMish: channels differ from num_features",
        lambda d, r: torch_mish.BatchNormMish(4).to(d)(torch.ones(2, 3, 5, 5, device=d, requires_grad=True)),
        RuntimeError,
        "expected 'weight' of shape \\[3\\] \\(the channels of 'input', dim 1\\), got \\[4\\]",
    ),
    BadCall(
        "BatchNormMish: double backward",
        _batchnorm_mish_double_backward,
        RuntimeError,
        "does not support double backward",
    ),
    BadCall(
        "_mish_backward_affine: per-channel argument of the wrong length",
        lambda d, r: torch.ops.mish._mish_backward_affine(
            *(torch.ones(2, 3, 4, device=d),) * 2, *(torch.ones(4, device=d),) * 4
        ),
        RuntimeError,
        r"expected 'mean' of shape \[3\] \(the channels of 'self'\), got \[4\]",
    ),
    BadCall(
        "_mish_backward_affine: float16 statistics for float16 input",
        lambda d, r: torch.ops.mish._mish_backward_affine(
            *(torch.ones(2, 3, 4, device=d, dtype=torch.half),) * 2, *(torch.ones(3, device=d, dtype=torch.half),) * 4
        ),
        TypeError,
        "expected 'mean' to be torch.float32 for 'self' of torch.float16, got torch.float16",
    ),
    # torch.onnx.export's own refusal of an argument it does not know (its name is opset_version).
    BadCall(
        "onnx.export with opset=", _onnx_export(False, True, opset=17), TypeError, "unexpected keyword argument 'opset'"
    ),
    BadCall(
        "onnx.export plugin nodes with TorchScript",
        _onnx_export(True, False),
        ValueError,
        "plugin=True needs the dynamo exporter",
    ),
    BadCall("set_lowering('fast')", _set_unknown_lowering, ValueError, "unknown Mish lowering 'fast'", "tensorrt"),
    BadCall(
        "TORCH_MISH_TRT_LOWERING=layers",
        _unknown_lowering_from_environment,
        ValueError,
        "unknown Mish lowering 'layers' in the environment variable TORCH_MISH_TRT_LOWERING: expected one of native",
        "tensorrt",
    ),
    BadCall(
        "plugin library missing",
        _plugin_library_missing,
        RuntimeError,  # PluginUnavailableError
        r"no torch_mish TensorRT plugin .* Rebuild torch_mish with TENSORRT_INCLUDE_DIR",
        "tensorrt",
    ),
]

CPU_ONLY = {"onnx.export with opset=", "onnx.export plugin nodes with TorchScript"}


def _cases() -> list[Any]:
    cases = []
    for row in TABLE:
        if row.needs == "cuda":
            devices = ["cuda"]
        elif row.needs == "tensorrt" or row.id in CPU_ONLY:
            devices = ["cpu"]
        else:
            devices = ["cpu", "cuda"]
        for d in devices:
            cases.append(pytest.param(row, d, id=f"{row.id} [{d}]", marks=requires_cuda if d == "cuda" else ()))
    return cases


@pytest.mark.parametrize(("row", "device"), _cases())
def test_wrong_call_raises_a_clear_error(row: BadCall, device: str, request: pytest.FixtureRequest) -> None:
    with pytest.raises(row.raises, match=row.match):
        row.call(device, request)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_and_zero_dim(device: str) -> None:
    for shape in [(0,), (3, 0, 2), ()]:
        x = torch.randn(shape, device=device)
        assert torch.ops.mish.mish(x).shape == x.shape
        assert torch_mish.mish(x.clone(), inplace=True).shape == x.shape
        xr = x.clone().requires_grad_()
        torch.ops.mish.mish(xr).sum().backward()
        assert xr.grad is not None and xr.grad.shape == x.shape


def test_import_error_names_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled library that cannot load (e.g. after a torch upgrade) gives an ImportError saying
    what it was built for, not 'operator mish::mish does not exist'."""
    from torch_mish import _library

    real_import = importlib.import_module

    def failing_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch_mish._C":
            raise ImportError("undefined symbol: _ZN3c104cuda9SomethingEv")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", failing_import)
    with pytest.raises(ImportError) as info:
        _library._load()
    message = str(info.value)
    assert "undefined symbol" in message and "built for torch" in message and torch.__version__ in message
    assert "pip install --no-build-isolation -e ." in message
