"""torch_mish.tensorrt as a package: it imports on a host without a GPU (building engines there is a
real use) without changing torch.cuda for good, and its submodules are reachable as attributes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import torch_mish


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_imports_without_gpu_and_leaves_torch_cuda_alone(trt) -> None:  # noqa: ANN001
    code = (
        "import torch\n"
        "before = (torch.cuda.get_device_capability, torch.cuda.current_device)\n"
        "import torch_mish.tensorrt as mt\n"
        "assert (torch.cuda.get_device_capability, torch.cuda.current_device) == before, 'torch.cuda left patched'\n"
        "print(mt.inspect.dry_run.__name__, mt.get_lowering())\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "dry_run native"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the context changes nothing there")
def test_without_gpu_context_patches_and_restores() -> None:
    original = (torch.cuda.get_device_capability, torch.cuda.current_device)
    with torch_mish.allow_tensorrt_without_gpu() as patched:
        assert patched and torch.cuda.get_device_capability() == (0, 0) and torch.cuda.current_device() == 0
        with torch_mish.allow_tensorrt_without_gpu():  # nested: still patched after the inner one exits
            pass
        assert torch.cuda.current_device() == 0
    assert (torch.cuda.get_device_capability, torch.cuda.current_device) == original
    with pytest.raises(RuntimeError):
        torch.cuda.current_device()  # torch's own answer again: no driver
