"""Property-based parity with the float64 reference (hypothesis): any dtype, rank 0-6, odd sizes,
non-contiguous / permuted / offset layouts, and values from the special edges (±inf, NaN,
subnormals, the exp-overflow points, very negative inputs)."""

from __future__ import annotations

import pytest
import torch
from helpers import DEVICES, FLOAT_DTYPES, assert_mish_close, mish_grad_reference, mish_reference

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EDGES = [
    0.0,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    1e-40,
    -1e-40,
    1e-8,
    -1e-8,
    5.545,
    11.09,
    11.1,
    20.0,
    44.36,
    88.72,
    88.73,
    -0.6,
    -1.1924,
    -7.6,
    -87.3,
    -103.9,
    -104.0,
    -1e4,
    65504.0,
    -65504.0,
]

values = st.one_of(st.sampled_from(EDGES), st.floats(-120, 120, allow_nan=False, width=64))


@st.composite
def tensors(draw: st.DrawFn) -> tuple[torch.Tensor, str]:
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=6))
    numel = 1
    for s in shape:
        numel *= s
    hypothesis.assume(numel <= 4096)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided", "offset", "channels_last", "expanded"]))
    # A small drawn pool of values, spread over the tensor in a drawn order: the edges reach any
    # position (vector lanes, the scalar tail) without asking hypothesis for thousands of floats.
    pool = torch.tensor(draw(st.lists(values, min_size=1, max_size=64)), dtype=torch.float64)
    order = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    base = pool[torch.randint(len(pool), (numel + 2,), generator=order)].to(dtype)
    x = base[:numel].reshape(shape)
    if layout == "transposed" and x.dim() >= 2:
        x = base[:numel].reshape(*shape[:-2], shape[-1], shape[-2]).transpose(-1, -2)
    elif layout == "strided" and x.dim() >= 1:
        x = torch.cat([x, x], dim=-1)[..., ::2] if shape[-1] else x
    elif layout == "offset":
        x = base[1 : numel + 1].reshape(shape)
    elif layout == "channels_last" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "expanded" and x.dim() >= 1 and shape[0] > 0:
        x = x[:1].expand(shape)
    return x, layout


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=tensors())
def test_forward_and_backward_match_reference(device: str, case: tuple[torch.Tensor, str]) -> None:
    x, layout = case
    x = x.to(device)
    y = torch.ops.mish.mish(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert_mish_close(y, mish_reference(x), f"forward {x.dtype} {tuple(x.shape)} {layout}")
    g = torch.ones_like(x)
    finite = torch.isfinite(x).cpu()
    gi = torch.ops.mish._mish_backward(g, x).cpu()
    assert_mish_close(gi[finite], mish_grad_reference(g, x)[finite], f"backward {layout}", gradient=True)
    if layout != "expanded":
        z = x.clone()
        torch.ops.mish.mish_(z)
        assert_mish_close(z, mish_reference(x), f"in place {layout}")
