"""csrc/kernels/mish_math.h's linear branch: from x = kLinearFrom = 20 the op returns mish(x) = x and
mish'(x) = 1. The terms it drops are 2e^{-2x} (relative, forward) and (4x - 2)e^{-2x} (derivative);
checked here against mpmath in float64, where they matter (in float32 they are far below half an ulp)."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish

LINEAR_FROM = 20.0
# (4x - 2)e^{-2x} = 2^-53 (half an ulp of 1.0 in float64) at x = 20.5609...
DERIVATIVE_HALF_ULP_FROM = 20.561


def reference(x: float) -> tuple[mpmath.mpf, mpmath.mpf]:
    with mpmath.workdps(60):
        x = mpmath.mpf(x)
        t = mpmath.tanh(mpmath.log1p(mpmath.exp(x)))
        return x * t, t + x * (1 - t * t) / (1 + mpmath.exp(-x))


def ulps(value: float, exact: mpmath.mpf) -> float:
    return float(abs(mpmath.mpf(value) - exact) / math.ulp(float(exact)))


def test_linear_branch_float64() -> None:
    xs = torch.cat([torch.linspace(LINEAR_FROM, 24.0, 401, dtype=torch.float64), torch.tensor([30.0, 700.0])])
    y = torch.ops.mish.mish(xs)
    g = torch.ops.mish._mish_backward(torch.ones_like(xs), xs)
    assert torch.equal(y, xs) and torch.equal(g, torch.ones_like(xs)), "x >= 20 must take the linear branch"
    for x in xs.tolist():
        f, d = reference(x)
        # Forward: 2e^{-2x} < 2^-53 from x = 18.7, so x is the correctly rounded mish(x).
        assert ulps(x, f) <= 0.5, x
        # Derivative: 1 is off by (4x - 2)e^{-2x}; under half an ulp from 20.561, at most 1.5 ulp at 20.
        dropped = (4 * x - 2) * math.exp(-2 * x)
        assert ulps(1.0, d) <= 0.5 + dropped / math.ulp(1.0) + 1e-6, x
        if x >= DERIVATIVE_HALF_ULP_FROM:
            assert ulps(1.0, d) <= 0.5 + 1e-6, x


def test_branch_starts_at_20() -> None:
    """Just below 20 the formulas run (the derivative there is 1 + 3.3e-16, not 1.0)."""
    below = torch.nextafter(torch.tensor(LINEAR_FROM, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    g = torch.ops.mish._mish_backward(torch.ones(1, dtype=torch.float64), below.reshape(1))
    assert g.item() != 1.0
    assert ulps(g.item(), reference(below.item())[1]) <= 2.0  # the direct formula's few roundings


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_linear_branch_reduced_precision(dtype: torch.dtype) -> None:
    xs = torch.linspace(LINEAR_FROM, 60.0, 101).to(dtype)
    assert torch.equal(torch.ops.mish.mish(xs), xs)
    assert torch.equal(torch.ops.mish._mish_backward(torch.ones_like(xs), xs), torch.ones_like(xs))
