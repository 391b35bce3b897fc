"""torch.ops.mish.{mish, mish_, _mish_backward}: numerics against float64, layouts, special values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    DEVICES,
    FLOAT_DTYPES,
    assert_mish_close,
    mish_grad_reference,
    mish_reference,
    random_inputs,
)

# Around the vector width (16 bytes: 2 to 8 elements), a block, and many blocks with a tail.
SIZES = [0, 1, 3, 7, 8, 9, 31, 1023, 4099, 65_537, 1_000_003]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_float64(device: str, dtype: torch.dtype, n: int, gen: torch.Generator) -> None:
    x = random_inputs(n, gen).to(device=device, dtype=dtype)
    y = torch.ops.mish.mish(x)
    assert y.dtype == dtype and y.device == x.device and y.shape == x.shape
    assert_mish_close(y, mish_reference(x), f"mish {dtype} n={n}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_backward_matches_float64(device: str, dtype: torch.dtype, n: int, gen: torch.Generator) -> None:
    x = random_inputs(n, gen).to(device=device, dtype=dtype)
    g = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    gi = torch.ops.mish._mish_backward(g, x)
    assert gi.dtype == dtype and gi.shape == x.shape
    assert_mish_close(gi, mish_grad_reference(g, x), f"mish backward {dtype} n={n}", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_inplace_matches_out_of_place(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    x = random_inputs(10_007, gen).to(device=device, dtype=dtype)
    expected = torch.ops.mish.mish(x)
    y = x.clone()
    assert torch.ops.mish.mish_(y) is None  # mutates, returns nothing (functionalizable)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def _layouts(device: str, dtype: torch.dtype, gen: torch.Generator) -> dict[str, torch.Tensor]:
    base = random_inputs(2 * 3 * 17 * 19 * 2, gen).to(device=device, dtype=dtype)
    nchw = base[: 2 * 3 * 17 * 19].reshape(2, 3, 17, 19)
    return {
        "channels_last": nchw.contiguous(memory_format=torch.channels_last),
        "transposed": base.reshape(34, 114).t(),
        "strided_slice": base[::3],
        "offset_breaks_alignment": base[1:1001],
        "expanded": base[:19].reshape(1, 19).expand(7, 19),
        "0-d": base[5].clone(),
        "empty_4d": base[:0].reshape(0, 3, 0, 2),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_layouts_values_and_memory_format(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    for name, x in _layouts(device, dtype, gen).items():
        y = torch.ops.mish.mish(x)
        assert_mish_close(y, mish_reference(x), f"{name} {dtype}")
        assert y.stride() == F.mish(x).stride(), f"{name}: strides {y.stride()} != F.mish's {F.mish(x).stride()}"
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        assert_mish_close(
            torch.ops.mish._mish_backward(g, x), mish_grad_reference(g, x), f"{name} backward", gradient=True
        )


def _concat_gradients(
    device: str, dtype: torch.dtype, gen: torch.Generator
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(x, grad_output) pairs where grad_output is a slice of a larger gradient, as the backward of a
    concatenation hands it to the layer before: rows of grad_input's memory order, a stride apart."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)

    nchw_cat = rand(2, 24, 5, 7)
    cl_cat = rand(2, 24, 5, 7).contiguous(memory_format=torch.channels_last)
    return {
        # 16 of the 24 channels of an NCHW concatenation: 2 rows of 16*5*7, 24*5*7 apart
        "nchw_channel_slice": (rand(2, 16, 5, 7) * 4, nchw_cat[:, 8:]),
        # channels-last: 2*5*7 rows of 16 channels, 24 apart
        "channels_last_channel_slice": (
            (rand(2, 16, 5, 7) * 4).contiguous(memory_format=torch.channels_last),
            cl_cat[:, 8:],
        ),
        # rows of 5 elements: no vector fits a row
        "rows_of_5": (rand(6, 5) * 4, rand(6, 9)[:, 3:8]),
        # one row read for every row (a broadcast gradient, stride 0)
        "broadcast_row": (rand(4, 64) * 4, rand(1, 64).expand(4, 64)),
        # not rows: falls back to a dense copy
        "transposed": (rand(12, 16) * 4, rand(16, 12).t()),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_backward_of_concatenation_gradients(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    for name, (x, g) in _concat_gradients(device, dtype, gen).items():
        gi = torch.ops.mish._mish_backward(g, x)
        assert gi.stride() == x.stride(), name
        assert_mish_close(gi, mish_grad_reference(g, x), f"{name} {dtype}", gradient=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_concatenation_gradient_is_read_in_place_on_cuda() -> None:
    """The CUDA backward reads a slice of a concatenation's gradient where it lies: the only memory it
    takes is grad_input's (a dense copy of grad_output first would take as much again)."""
    x = torch.randn(8, 64, 40, 40, device="cuda")
    cat = torch.randn(8, 128, 40, 40, device="cuda")
    cl = torch.channels_last
    for g, xx in ((cat[:, 64:], x), (cat.contiguous(memory_format=cl)[:, :64], x.contiguous(memory_format=cl))):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        gi = torch.ops.mish._mish_backward(g, xx)
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() - before == gi.untyped_storage().nbytes()
        dense = torch.empty_like(xx).copy_(g)  # the same values laid out like x: the plain kernel
        torch.testing.assert_close(gi, torch.ops.mish._mish_backward(dense, xx), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_inplace_on_non_dense_views(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    for name, x in _layouts(device, dtype, gen).items():
        if name == "expanded":
            continue  # overlapping: must raise, see test_errors
        base = x.clone() if x.dim() == 0 else x
        expected = mish_reference(base)
        shape, stride = base.shape, base.stride()
        torch.ops.mish.mish_(base)
        assert_mish_close(base, expected, f"in-place {name} {dtype}")
        assert base.shape == shape and base.stride() == stride


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_gradient_layout(device: str, gen: torch.Generator) -> None:
    """grad_output in a different memory format than the input (common after a channels_last conv)."""
    x = random_inputs(4 * 8 * 5 * 5, gen).reshape(4, 8, 5, 5).to(device=device, dtype=torch.float32)
    g = torch.randn(4, 8, 5, 5, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    assert_mish_close(torch.ops.mish._mish_backward(g, x), mish_grad_reference(g, x), "mixed layout", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_special_values(device: str, dtype: torch.dtype) -> None:
    fmax = torch.finfo(dtype).max
    edges = [11.08, 11.09, 11.1, 88.7, 88.72, 88.73, 20.0, 19.99, 40.0, -0.6, -1.1924, -87.0, -104.0, -745.0, 1e-30]
    values = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, fmax, -fmax, *edges, *(-v for v in edges)]
    x = torch.tensor(values, dtype=dtype, device=device)
    y = torch.ops.mish.mish(x).cpu()
    assert y[0].isnan()
    assert y[1].item() == float("inf")
    assert y[2].item() == 0.0, "mish(-inf) is the limit 0 (F.mish gives NaN)"
    assert y[5].item() == fmax and torch.isfinite(y[3:]).all()
    assert_mish_close(y, mish_reference(x), f"special values {dtype}")
    d = torch.ops.mish._mish_backward(torch.ones_like(x), x).cpu()
    assert d[0].isnan() and d[1].item() == 1.0 and d[2].item() == 0.0 and torch.isfinite(d[3:]).all()
    finite = torch.isfinite(x)
    assert_mish_close(
        d[finite.cpu()], mish_grad_reference(torch.ones_like(x), x)[finite.cpu()], "special grads", gradient=True
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_half_precision_value(device: str, dtype: torch.dtype) -> None:
    """Exhaustive: all 65536 bit patterns of the 16-bit type, forward and derivative."""
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype).to(device)
    assert_mish_close(torch.ops.mish.mish(x), mish_reference(x), f"all {dtype} values")
    ones = torch.ones_like(x)
    finite = torch.isfinite(x).cpu()
    d = torch.ops.mish._mish_backward(ones, x).cpu()
    assert_mish_close(d[finite], mish_grad_reference(ones, x)[finite], f"all {dtype} derivatives", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
def test_every_float32_near_the_minimum(device: str) -> None:
    """Exhaustive over the 1.7 M float32 values in [-1.3, -1.1], around mish's minimum x0 = -1.19 where
    mish' crosses zero and a direct float evaluation of the derivative loses ~1e-5 relative accuracy."""
    first, last = (torch.tensor(v).view(torch.int32).item() for v in (-1.1, -1.3))
    x = torch.arange(first, last + 1, dtype=torch.int32).view(torch.float32).to(device)
    assert_mish_close(torch.ops.mish.mish(x), mish_reference(x), "float32 near x0")
    grad = torch.randn(x.shape, dtype=torch.float32).to(device)
    got = torch.ops.mish._mish_backward(grad, x)
    assert_mish_close(got, mish_grad_reference(grad, x), "float32 grads near x0", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_across_every_binade(device: str) -> None:
    """Every 1024th float32 bit pattern of both signs: 8192 values in each binade, subnormals to the
    largest finite, so each range the kernels treat apart is covered densely: e^x subnormal (x < -87)
    or 0 (x < -1000, clamped), the formula's range, and x >= 20, where the select returns x before
    the discarded products overflow."""
    positive = torch.arange(0, 2**31, 1024, dtype=torch.int64)
    negative = positive - 2**31  # the same magnitudes with the sign bit set, as int32 sees them
    x = torch.cat([positive, negative]).to(torch.int32).view(torch.float32)
    x = x[torch.isfinite(x)].to(device)
    assert_mish_close(torch.ops.mish.mish(x), mish_reference(x), "float32 binades")
    grad = torch.randn(x.shape, dtype=torch.float32).to(device)
    got = torch.ops.mish._mish_backward(grad, x)
    assert_mish_close(got, mish_grad_reference(grad, x), "float32 binade grads", gradient=True)
