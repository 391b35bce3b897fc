"""Shared test helpers: devices, random inputs, and the accuracy contract against float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_mish  # noqa: F401 - registers torch.ops.mish

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
HAS_CUDA = torch.cuda.is_available() and torch_mish.has_cuda_kernels()


# For tests that need the CUDA kernels: the reason names what is missing.
if torch.cuda.is_available():
    requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="torch_mish was built without CUDA kernels")
else:
    requires_cuda = pytest.mark.skip(reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


def random_inputs(n: int, gen: torch.Generator) -> torch.Tensor:
    """float64 values covering Mish's regimes: typical activations, the minimum near -1.19 where
    mish' = 0, the branch point -0.6, very negative inputs, and the saturated tail."""
    parts = [
        torch.randn(n, generator=gen, dtype=torch.float64) * 3,
        torch.empty(n, dtype=torch.float64).uniform_(-1.3, -1.1, generator=gen),
        torch.empty(n, dtype=torch.float64).uniform_(-0.7, -0.5, generator=gen),
        torch.empty(n, dtype=torch.float64).uniform_(-40, 40, generator=gen),
        torch.randn(n, generator=gen, dtype=torch.float64) * 1e-4,
    ]
    x = torch.stack(parts, dim=1).flatten()[:n]
    return x[torch.randperm(n, generator=gen)]


def edge_values() -> torch.Tensor:
    """float64 values where a Mish formula's special cases sit: signed zeros, infinities, NaN, e^x
    underflow (-104), the x >= 20 select on both sides, and products that overflow float32 past it."""
    past_20 = [19.9, 20.0, 20.5, 44.4, 88.8, 1e30, 1e38, torch.finfo(torch.float32).max]
    return torch.tensor([0.0, -0.0, -1e30, -104.0, torch.inf, -torch.inf, torch.nan, *past_20], dtype=torch.float64)


def all_half_values(dtype: torch.dtype) -> torch.Tensor:
    """Every float16 or bfloat16 bit pattern (NaNs, infinities and subnormals included)."""
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


def mish_reference(x: torch.Tensor) -> torch.Tensor:
    """F.mish in float64 on the CPU, with the -inf limit (0) that torch_mish documents."""
    x64 = x.detach().to("cpu", torch.float64)
    ref = F.mish(x64)
    return torch.where(x64 == -torch.inf, torch.zeros_like(ref), ref)


def mish_grad_reference(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    x64 = x.detach().to("cpu", torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(F.mish(x64), x64, grad.detach().to("cpu", torch.float64))
    return g


def _ordered_bits(t: torch.Tensor) -> torch.Tensor:
    """Map 16-bit floats to integers whose difference counts ulps (+0 and -0 both map to 0)."""
    bits = t.view(torch.int16).to(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFF), bits)


def assert_mish_close(actual: torch.Tensor, expected64: torch.Tensor, what: str = "", gradient: bool = False) -> None:
    """The accuracy contract of torch_mish (README, 'Accuracy'), applied elementwise:
    float32: relative error <= 2e-6 where |expected| >= 1e-3, absolute <= 1e-7 elsewhere;
    float64: relative <= 1e-14 where |expected| >= 1e-3, absolute <= 1e-17 elsewhere;
    float16/bfloat16: within 1 ulp of the float64 result rounded to that dtype.
    NaN exactly where the reference is NaN; infinities equal.
    float64 gradients near mish's minimum (x = -1.19, where mish' crosses 0) are ill-conditioned: the
    float64 reference itself is only good to ~1e-16 absolute there, so with gradient=True the float64
    relative bound applies where |expected| >= 0.05 and an absolute 1e-15 below."""
    actual = actual.detach().cpu()
    expected64 = expected64.detach().cpu().to(torch.float64)
    assert actual.shape == expected64.shape, f"{what}: shape {actual.shape} != {expected64.shape}"
    nan = expected64.isnan()
    assert torch.equal(actual.isnan(), nan), f"{what}: NaN in {int((actual.isnan() != nan).sum())} wrong places"
    a, e = actual[~nan], expected64[~nan]
    if actual.dtype in (torch.float16, torch.bfloat16):
        diff = (_ordered_bits(a) - _ordered_bits(e.to(actual.dtype))).abs()
        worst = int(diff.argmax()) if diff.numel() else 0
        assert diff.numel() == 0 or int(diff.max()) <= 1, (
            f"{what}: {int((diff > 1).sum())} elements beyond 1 ulp; worst {int(diff.max())} ulp: "
            f"got {a[worst].item()}, expected {e[worst].item()}"
        )
        return
    rel_tol, abs_tol = (2e-6, 1e-7) if actual.dtype == torch.float32 else (1e-14, 1e-17)
    rel_from = 0.05 if gradient and actual.dtype == torch.float64 else 1e-3
    if rel_from != 1e-3:
        abs_tol = 1e-15
    a64 = a.to(torch.float64)
    inf = e.isinf()
    assert torch.equal(a64[inf], e[inf]), f"{what}: infinities differ"
    a64, e = a64[~inf], e[~inf]
    big = e.abs() >= rel_from
    err = (a64 - e).abs()
    rel = err[big] / e[big].abs()
    if rel.numel():
        i = int(rel.argmax())
        assert rel[i] <= rel_tol, (
            f"{what}: relative error {rel[i].item():.3g} > {rel_tol} at x giving {e[big][i].item()}"
        )
    small = err[~big]
    if small.numel():
        assert small.max() <= abs_tol, (
            f"{what}: absolute error {small.max().item():.3g} > {abs_tol} where |y| < {rel_from}"
        )


def host_memory_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0
