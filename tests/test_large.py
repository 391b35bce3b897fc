"""More than 2**31 elements: 64-bit indexing, correct at the far end of the tensor."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    assert_mish_close,
    host_memory_available,
    mish_grad_reference,
    mish_reference,
    requires_cuda,
)

N = 2**31 + 4099  # past int32, and not a multiple of the vector width
# 4 GiB tensors, and on the CPU a minute of Mish over them: gpu_run.sh runs these in its tests_slow stage.
pytestmark = pytest.mark.slow


def _check(device: str) -> None:
    dtype = torch.bfloat16
    x = torch.empty(N, dtype=dtype, device=device)
    # A pattern whose values differ along the tensor, so a wrapped index reads wrong values.
    x[: 1 << 20].uniform_(-8, 8)
    x[-(1 << 20) :].uniform_(-8, 8)
    y = torch.ops.mish.mish(x)
    for part in (slice(0, 1 << 20), slice(N - (1 << 20), N)):
        assert_mish_close(y[part], mish_reference(x[part]), f"forward at {part}")
    del y
    g = torch.ones_like(x)
    gi = torch.ops.mish._mish_backward(g, x)
    for part in (slice(0, 1 << 20), slice(N - (1 << 20), N)):
        assert_mish_close(gi[part], mish_grad_reference(g[part], x[part]), f"backward at {part}", gradient=True)


@requires_cuda
def test_more_than_2_31_elements_cuda() -> None:
    free, _ = torch.cuda.mem_get_info()
    if free < 4 * N * 2 + (1 << 30):
        pytest.skip(f"needs {4 * N * 2 >> 30} GiB of free GPU memory, {free >> 30} GiB free")
    _check("cuda")


def test_more_than_2_31_elements_cpu() -> None:
    need = 3 * N * 2 + (2 << 30)
    if host_memory_available() < need:
        pytest.skip(f"needs {need >> 30} GiB of free host memory")
    _check("cpu")
