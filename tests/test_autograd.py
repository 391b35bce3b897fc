"""Autograd through torch.ops.mish: gradcheck, double backward, in-place, opcheck, saved tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, FLOAT_DTYPES, assert_mish_close, mish_grad_reference, mish_reference, random_inputs

import torch_mish


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_and_gradgradcheck(device: str, gen: torch.Generator) -> None:
    x = random_inputs(64, gen).reshape(4, 16).to(device).requires_grad_()
    assert torch.autograd.gradcheck(torch.ops.mish.mish, (x,))
    assert torch.autograd.gradgradcheck(torch.ops.mish.mish, (x,))
    g = torch.randn(4, 16, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(torch.ops.mish._mish_backward, (g, x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_autograd_gradients_match_float64(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    x = random_inputs(50_000, gen).to(device=device, dtype=dtype).requires_grad_()
    g = torch.randn(50_000, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    torch.ops.mish.mish(x).backward(g)
    assert x.grad is not None and x.grad.dtype == dtype
    assert_mish_close(x.grad, mish_grad_reference(g, x), f"autograd {dtype}", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
def test_double_backward_matches_f_mish(device: str, gen: torch.Generator) -> None:
    """Gradient penalties differentiate the gradient: second derivatives agree with F.mish's."""
    x = random_inputs(1000, gen).to(device).requires_grad_()
    (g1,) = torch.autograd.grad(torch.ops.mish.mish(x).pow(2).sum(), x, create_graph=True)
    (h1,) = torch.autograd.grad(g1.pow(2).sum(), x)
    xr = x.detach().clone().requires_grad_()
    (g2,) = torch.autograd.grad(F.mish(xr).pow(2).sum(), xr, create_graph=True)
    (h2,) = torch.autograd.grad(g2.pow(2).sum(), xr)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(h1, h2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_inplace_autograd_on_non_leaf(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    leaf = random_inputs(4096, gen).to(device=device, dtype=dtype).requires_grad_()
    h = leaf * 1.0  # a non-leaf, as after a BatchNorm
    y = torch_mish.mish(h, inplace=True)
    assert y is h
    g = torch.randn(4096, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    y.backward(g)
    assert_mish_close(leaf.grad, mish_grad_reference(g, leaf), f"in-place autograd {dtype}", gradient=True)


def test_saves_only_the_input() -> None:
    """Memory: backward keeps the input alive and nothing else (the composed module keeps four)."""
    saved: list[torch.Tensor] = []
    x = torch.randn(1000, requires_grad=True)
    h = x * 2
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.ops.mish.mish(h)
    assert len(saved) == 1 and saved[0].data_ptr() == h.data_ptr()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_opcheck(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    x = random_inputs(3 * 5 * 7, gen).reshape(3, 5, 7).to(device=device, dtype=dtype)
    g = torch.randn(3, 5, 7, generator=gen).to(device=device, dtype=dtype)
    grad_ok = dtype in (torch.float32, torch.float64)
    torch.library.opcheck(torch.ops.mish.mish.default, (x.clone().requires_grad_(grad_ok),))
    torch.library.opcheck(torch.ops.mish.mish.default, (x.clone().transpose(0, 2),))
    torch.library.opcheck(torch.ops.mish.mish_.default, (x.clone(),))
    torch.library.opcheck(torch.ops.mish._mish_backward.default, (g, x.clone().requires_grad_(grad_ok)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_mode_ad_matches_f_mish(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    """torch.func.jvp (forward-mode AD): the tangent is mish'(x) * v, as for F.mish."""
    x = random_inputs(1001, gen).to(device, dtype)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device, dtype)
    y, tangent = torch.func.jvp(torch_mish.mish, (x,), (v,))
    assert_mish_close(y, mish_reference(x), "jvp primal")
    assert_mish_close(tangent, mish_grad_reference(v, x), "jvp tangent", gradient=True)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_norm_mish_opcheck_and_gradcheck(device: str, gen: torch.Generator) -> None:
    """The op behind BatchNormMish: schema, fake kernel and autograd registration (opcheck), and its
    gradients against finite differences in float64 (gradcheck; fresh running stats each call)."""
    x = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64).to(device)
    weight = torch.empty(4, dtype=torch.float64).uniform_(0.5, 1.5, generator=gen).to(device)
    bias = torch.randn(4, generator=gen, dtype=torch.float64).to(device)

    def stats() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(4, dtype=torch.float64, device=device), torch.ones(4, dtype=torch.float64, device=device)

    args = (x.clone().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_())
    torch.library.opcheck(
        torch.ops.mish.batch_norm_mish.default,
        (*args, *stats(), 0.1, 1e-5),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )
    assert torch.autograd.gradcheck(lambda x, w, b: torch.ops.mish.batch_norm_mish(x, w, b, *stats(), 0.1, 1e-5), args)


def _affine_layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    layouts = {
        "contiguous": x,
        "permuted": x.transpose(1, -1).contiguous().transpose(1, -1),  # neither layout: made contiguous first
        "misaligned": torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view(x.shape).copy_(x),
    }
    if x.dim() == 4:
        layouts["channels_last"] = x.contiguous(memory_format=torch.channels_last)
    return layouts


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shape", [(3, 5, 7, 9), (2, 16, 4, 4), (2, 64, 5, 7), (4, 6, 33, 35), (1, 3, 1, 1), (2, 5, 3), (2, 3, 2, 3, 5)]
)
def test_mish_backward_affine_matches_float64(
    device: str, dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator
) -> None:
    """The kernel behind BatchNormMish's backward: grad * mish'((x - mean) * invstd * weight + bias)
    per channel, against the same formula in float64, for every layout the kernel indexes and odd
    sizes (vector tails)."""
    channels = shape[1]
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    per_channel = [
        torch.randn(channels, generator=gen, dtype=torch.float64),
        torch.empty(channels, dtype=torch.float64).uniform_(0.2, 2.0, generator=gen),
        torch.empty(channels, dtype=torch.float64).uniform_(0.5, 1.5, generator=gen),
        torch.randn(channels, generator=gen, dtype=torch.float64),
    ]
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(device, dtype)
    grad = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
    args = [t.to(device, compute) for t in per_channel]
    view = (1, -1) + (1,) * (len(shape) - 2)
    mean, invstd, weight, bias = (t.to(compute).double().view(view) for t in per_channel)
    y = (x.cpu().double() - mean) * invstd * weight + bias
    expected = mish_grad_reference(grad.cpu(), y)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    # Per-channel values at an odd offset: the kernel cannot load them as vectors.
    shifted = [torch.empty(channels + 1, dtype=compute, device=device)[1:].copy_(t) for t in args]
    for name, xl in _affine_layouts(x).items():
        for stats_name, stats in (("", args), (", shifted statistics", shifted)):
            got = torch.ops.mish._mish_backward_affine(grad, xl, *stats)
            assert got.dtype == dtype and got.shape == x.shape
            torch.testing.assert_close(got.cpu().double(), expected, rtol=tol, atol=tol, msg=name + stats_name)


@pytest.mark.parametrize("device", DEVICES)
def test_mish_backward_affine_opcheck(device: str, gen: torch.Generator) -> None:
    x = torch.randn(2, 3, 4, 5, generator=gen).to(device)
    per_channel = [torch.rand(3, generator=gen).to(device) + 0.5 for _ in range(4)]
    for xl in _affine_layouts(x).values():  # the fake kernel must predict each layout's output strides
        torch.library.opcheck(
            torch.ops.mish._mish_backward_affine.default,
            (torch.randn_like(x), xl, *per_channel),
            test_utils=("test_schema", "test_faketensor"),
        )


def _backward_under_compiled_autograd(loss: torch.Tensor) -> None:
    """loss.backward() with torch._dynamo.config.compiled_autograd on: the graph recorded by the eager
    forward is captured by compiled autograd and compiled (the path DDP/FSDP take under compile)."""

    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch._dynamo.config.patch(compiled_autograd=True):  # read when torch.compile wraps the function
        torch.compile(backward, backend="aot_eager")(loss)
    assert torch._dynamo.utils.counters["compiled_autograd"]["captures"] >= 1, "compiled autograd did not run"


def _tiny_model(act: torch.nn.Module, gen: torch.Generator, device: str) -> torch.nn.Module:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    return torch.nn.Sequential(torch.nn.Linear(8, 16), act, torch.nn.Linear(16, 1)).double().to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_autograd_matches_f_mish(device: str, gen: torch.Generator) -> None:
    """MishBackward under compiled autograd: same gradients as nn.Mish's in float64."""
    import copy

    model = _tiny_model(torch_mish.Mish(), gen, device)
    reference = torch_mish.revert_mish(copy.deepcopy(model))
    x = random_inputs(32 * 8, gen).reshape(32, 8).to(device).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    _backward_under_compiled_autograd(model(x).pow(2).sum())
    reference(xr).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-14)
    for p, pr in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, pr.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_autograd_batch_norm_mish_matches_unfused(device: str, gen: torch.Generator) -> None:
    """BatchNormMishBackward under compiled autograd: BatchNorm2d + F.mish's gradients in float64."""
    fused = torch_mish.BatchNormMish(4).double().train()
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5, generator=gen)
        fused.bias.uniform_(-0.5, 0.5, generator=gen)
    fused = fused.to(device)
    bn = torch.nn.BatchNorm2d(4).double().train().to(device)
    bn.load_state_dict(fused.state_dict())
    x = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    g = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64).to(device)
    y = fused(x)
    assert y.grad_fn is not None and y.grad_fn.name() == "BatchNormMishBackward", "the fused path did not run"
    _backward_under_compiled_autograd((y * g).sum())
    (F.mish(bn(xr)) * g).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused.weight.grad, bn.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused.bias.grad, bn.bias.grad, rtol=1e-10, atol=1e-12)
