"""Bad input gets a clear Python exception: never a crash or a silently wrong result."""

from __future__ import annotations

import pytest
import torch
from helpers import DEVICES, requires_cuda

import torch_mish


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.int8])
@pytest.mark.parametrize("fn", ["mish", "mish_", "module"])
def test_non_floating_dtypes_are_refused(device: str, dtype: torch.dtype, fn: str) -> None:
    x = torch.ones(4, device=device).to(dtype)
    call = {
        "mish": lambda: torch.ops.mish.mish(x),
        "mish_": lambda: torch.ops.mish.mish_(x),
        "module": lambda: torch_mish.Mish()(x),
    }[fn]
    with pytest.raises(TypeError, match=f"got {dtype}$"):
        call()


@pytest.mark.parametrize("device", DEVICES)
def test_backward_op_checks_its_arguments(device: str) -> None:
    x = torch.randn(4, 5, device=device)
    with pytest.raises(TypeError, match="grad_output.*dtype"):
        torch.ops.mish._mish_backward(torch.randn(4, 5, device=device, dtype=torch.float64), x)
    with pytest.raises(RuntimeError, match="shape"):
        torch.ops.mish._mish_backward(torch.randn(5, 4, device=device), x)
    with pytest.raises(TypeError, match="torch.int32"):
        torch.ops.mish._mish_backward(torch.ones(4, 5, dtype=torch.int32, device=device), x.int())


@requires_cuda
def test_backward_op_refuses_mixed_devices() -> None:
    x = torch.randn(8, device="cuda")
    with pytest.raises(RuntimeError, match="grad_output.*cpu"):
        torch.ops.mish._mish_backward(torch.randn(8), x)


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_on_leaf_requiring_grad(device: str) -> None:
    x = torch.randn(8, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        torch_mish.mish(x, inplace=True)


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_on_overlapping_memory(device: str) -> None:
    x = torch.randn(1, device=device).expand(16)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        torch.ops.mish.mish_(x)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_and_zero_dim(device: str) -> None:
    for shape in [(0,), (3, 0, 2), ()]:
        x = torch.randn(shape, device=device)
        assert torch.ops.mish.mish(x).shape == x.shape
        assert torch_mish.mish(x.clone(), inplace=True).shape == x.shape
        xr = x.clone().requires_grad_()
        torch.ops.mish.mish(xr).sum().backward()
        assert xr.grad is not None and xr.grad.shape == x.shape


def test_import_error_names_the_build(monkeypatch) -> None:  # noqa: ANN001
    """A compiled library that cannot load (e.g. after a torch upgrade) gives an ImportError saying
    what it was built for, not 'operator mish::mish does not exist'."""
    import importlib

    from torch_mish import _library

    real_import = importlib.import_module

    def failing_import(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "torch_mish._C":
            raise ImportError("undefined symbol: _ZN3c104cuda9SomethingEv")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", failing_import)
    with pytest.raises(ImportError) as info:
        _library._load()
    message = str(info.value)
    assert "undefined symbol" in message and "built for torch" in message and torch.__version__ in message
    assert "pip install --no-build-isolation -e ." in message
