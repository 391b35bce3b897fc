"""torch_mish.nn: Mish as a drop-in for nn.Mish; BatchNormMish against BatchNorm2d followed by Mish."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, requires_cuda
from torch import nn

import torch_mish


def test_module_repr_and_state() -> None:
    assert repr(torch_mish.Mish()) == "Mish()"
    assert repr(torch_mish.Mish(inplace=True)) == "Mish(inplace=True)"
    assert torch_mish.Mish().state_dict() == {}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("inplace", [False, True])
def test_module_matches_nn_mish_in_training(device: str, inplace: bool, gen: torch.Generator) -> None:
    def block(act: nn.Module) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), act).to(device)

    ours, theirs = block(torch_mish.Mish(inplace=inplace)), block(nn.Mish(inplace=inplace))
    x = torch.randn(2, 3, 16, 16, generator=gen).to(device)
    y1, y2 = ours(x), theirs(x)
    torch.testing.assert_close(y1, y2, rtol=2e-6, atol=1e-6)
    y1.square().mean().backward()
    y2.square().mean().backward()
    for p1, p2 in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("inplace", [False, True])
def test_module_scripts_like_nn_mish(inplace: bool, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """torch.jit.script takes the module as it takes nn.Mish (timm's scriptable layers,
    torch_tensorrt.compile(ir="ts")), keeps the custom op and its autograd, and saves and loads."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), torch_mish.Mish(inplace=inplace))
    scripted = torch.jit.script(model)
    assert "mish::mish" in str(scripted.code) + str(scripted.inlined_graph)
    torch.jit.save(scripted, tmp_path / "m.pt")
    loaded = torch.jit.load(tmp_path / "m.pt")
    x = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    y_ref = model(x)
    y = loaded(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=0)


def _reference_block(channels: int, momentum: float | None) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-4, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1.0, 1.0)
    return bn


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("momentum", [0.03, None])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_batchnorm_mish_trains_like_batchnorm_then_mish(
    device: str, momentum: float | None, layout: torch.memory_format, gen: torch.Generator
) -> None:
    """Two training steps in float64: output, all three gradients, running statistics and the batch
    counter equal nn.BatchNorm2d followed by F.mish."""
    reference = _reference_block(6, momentum).to(device)
    fused = torch_mish.BatchNormMish(6, eps=1e-4, momentum=momentum).double().to(device)
    fused.load_state_dict(reference.state_dict())
    for _ in range(2):
        x = (torch.randn(3, 6, 5, 7, generator=gen, dtype=torch.float64) * 3 + 1).to(device, memory_format=layout)
        grad = torch.randn(3, 6, 5, 7, generator=gen, dtype=torch.float64).to(device)
        x_ref, x_fused = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ref, y_fused = F.mish(reference(x_ref)), fused(x_fused)
        assert y_fused.is_contiguous(memory_format=layout)
        torch.testing.assert_close(y_fused, y_ref, rtol=1e-12, atol=1e-12)
        y_ref.backward(grad)
        y_fused.backward(grad)
        torch.testing.assert_close(x_fused.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(fused, name).grad, getattr(reference, name).grad, rtol=1e-10, atol=1e-12)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fused, name), getattr(reference, name), rtol=1e-12, atol=0)


def _batchnorm_mish_backward_terms(
    bn: nn.BatchNorm2d, x: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In float64, for training-mode BatchNorm then Mish: g = dL/dz (z = BatchNorm's output), the
    normalized input x_hat, and |weight| / sigma, each broadcastable to x's shape."""
    dims = (0, 2, 3)
    xd = x.double()
    var, mean = torch.var_mean(xd, dims, correction=0, keepdim=True)
    sigma = (var + bn.eps).sqrt()
    x_hat = (xd - mean) / sigma
    weight = bn.weight.detach().to(xd).view(1, -1, 1, 1)
    z = (weight * x_hat + bn.bias.detach().to(xd).view(1, -1, 1, 1)).requires_grad_()
    (g,) = torch.autograd.grad(F.mish(z), z, grad.double())
    return g, x_hat, weight.abs() / sigma


@pytest.mark.parametrize(
    "device,dtype",
    [("cpu", torch.bfloat16), ("cpu", torch.float32), pytest.param("cuda", torch.float16, marks=requires_cuda)]
    + [pytest.param("cuda", dt, marks=requires_cuda) for dt in (torch.bfloat16, torch.float32)],
)
def test_batchnorm_mish_low_precision_input(device: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    """As under autocast: a low-precision activation with float32 BatchNorm parameters, against the
    same pair computed in float32 on the same (exactly representable) input.

    Bounds, with eps the dtype's epsilon (2**-7 for bfloat16, 2**-10 for float16, 2**-23 for float32):
    - output: the fused forward rounds the BatchNorm output to the dtype (half an eps), Mish's slope
      is below 1.1, then rounds the result (half an eps): within 2 eps relative;
    - gradients: both compute g = dL/dz elementwise (the fused one from z recomputed, rounded to the
      dtype) within 2 eps relative, then BatchNorm's backward takes per-channel float32 sums of
      n = 144 terms, sum(g) and sum(g * x_hat), which may also be added in different orders: a float32
      sum of n terms is within n * 2**-24 * sum(|terms|) of exact, so two differ by at most
      (2 eps + n * eps32) * sum(|terms|). Sums whose terms cancel are bounded by sum(|terms|), not by
      their value. weight.grad is sum(g * x_hat); x.grad = weight / sigma * (g - mean(g) -
      x_hat * mean(g * x_hat)), rounded to the dtype (half an eps, here one)."""
    reference = _reference_block(8, 0.03).float().to(device)
    fused = torch_mish.BatchNormMish(8, eps=1e-4, momentum=0.03).to(device)
    fused.load_state_dict(reference.state_dict())
    x = (torch.randn(4, 8, 6, 6, generator=gen) * 2).to(device, dtype)
    x_fused = x.clone().requires_grad_()
    y = fused(x_fused)
    assert y.dtype == dtype
    x_ref = x.float().requires_grad_()
    y_ref = F.mish(reference(x_ref))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y.float(), y_ref, rtol=2 * eps, atol=1e-6)
    grad = torch.randn(y.shape, generator=gen).to(device, dtype)
    y.backward(grad)
    y_ref.backward(grad.float())

    g, x_hat, scale = _batchnorm_mish_backward_terms(reference, x.cpu(), grad.cpu())
    n = x[:, 0].numel()
    per_sum = 2 * eps + n * torch.finfo(torch.float32).eps
    mean_g, mean_gx = g.abs().mean((0, 2, 3), keepdim=True), (g * x_hat).abs().mean((0, 2, 3), keepdim=True)
    bounds = {
        "weight.grad": (fused.weight.grad, reference.weight.grad, per_sum * n * mean_gx.flatten()),
        "input.grad": (
            x_fused.grad,
            x_ref.grad,
            scale * (2 * eps * g.abs() + per_sum * (mean_g + x_hat.abs() * mean_gx)) + eps * x_ref.grad.cpu().abs(),
        ),
    }
    for name, (got, want, bound) in bounds.items():
        error = (got.double().cpu() - want.double().cpu()).abs()
        assert (error <= bound).all(), f"{name}: error {error.max():.3g}, {(error / bound).max():.3g} x its bound"


def _saved_activation_bytes(block: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward, counted as they are saved."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x).sum().backward()
    return sum(storages.values())


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_mish_keeps_one_activation_per_layer(device: str, gen: torch.Generator) -> None:
    """What the module is for: BatchNorm2d -> Mish saves the BatchNorm input and output; the fused
    module saves only the input (plus per-channel statistics)."""
    x = torch.randn(2, 16, 32, 32, generator=gen).to(device).requires_grad_()
    unfused = nn.Sequential(nn.BatchNorm2d(16), torch_mish.Mish()).to(device)
    fused = torch_mish.BatchNormMish(16).to(device)
    activation = x.numel() * x.element_size()
    saved_unfused, saved_fused = _saved_activation_bytes(unfused, x), _saved_activation_bytes(fused, x)
    assert saved_unfused >= 2 * activation
    assert activation <= saved_fused < activation + 16 * 1024


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_mish_eval_and_no_grad_use_the_unfused_ops(device: str, gen: torch.Generator) -> None:
    fused = torch_mish.BatchNormMish(4).to(device)
    with torch.no_grad():
        fused.running_mean.uniform_(-1, 1)
        fused.running_var.uniform_(0.5, 2)
        fused.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 5, 5, generator=gen).to(device)
    expected = torch_mish.mish(
        F.batch_norm(x, fused.running_mean, fused.running_var, fused.weight, fused.bias, eps=fused.eps)
    )
    torch.testing.assert_close(fused.eval()(x), expected, rtol=0, atol=0)
    before = fused.running_mean.clone()
    with torch.no_grad():
        fused.train()(x)  # training statistics without autograd: still updates the running mean
    assert not torch.equal(before, fused.running_mean)
    assert fused.num_batches_tracked.item() == 1


def test_batchnorm_mish_exports_batchnorm_and_the_custom_op() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), torch_mish.BatchNormMish(8)).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 16, 16),))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "mish.mish.default" in targets
    assert any("batch_norm" in t for t in targets)


def test_batchnorm_mish_from_batchnorm_shares_state() -> None:
    bn = nn.BatchNorm2d(5, eps=1e-3, momentum=0.2).train(False)
    fused = torch_mish.BatchNormMish.from_batchnorm(bn)
    assert fused.weight is bn.weight and fused.running_var is bn.running_var
    assert (fused.eps, fused.momentum, fused.training) == (1e-3, 0.2, False)
    assert fused.state_dict().keys() == bn.state_dict().keys()


@pytest.mark.parametrize("shape", [(0, 4, 5, 5), (1, 4, 1, 1), (2, 4, 3)])
def test_batchnorm_mish_edge_batches_answer_like_batchnorm(shape: tuple[int, ...]) -> None:
    """Empty batches, one value per channel and wrong ranks: the same result or error as
    nn.BatchNorm2d followed by Mish (the fused ATen op alone would return NaN statistics)."""
    reference, fused = nn.BatchNorm2d(4), torch_mish.BatchNormMish(4)

    def run(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | BaseException:
        x = torch.ones(shape, requires_grad=True)
        try:
            torch_mish.mish(module(x)).sum().backward() if module is reference else module(x).sum().backward()
        except (ValueError, RuntimeError) as exc:
            return exc
        return module.running_mean.clone(), module.running_var.clone()

    expected, got = run(reference), run(fused)
    if isinstance(expected, BaseException):
        assert type(got) is type(expected) and str(got) == str(expected)
    else:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("needs", ["input only", "parameters only", "weight only"])
def test_batchnorm_mish_partial_requires_grad(device: str, needs: str, gen: torch.Generator) -> None:
    reference = _reference_block(5, 0.1).to(device)
    fused = torch_mish.BatchNormMish(5, momentum=0.1, eps=1e-4).double().to(device)
    fused.load_state_dict(reference.state_dict())
    for module in (reference, fused):
        module.weight.requires_grad_(needs != "input only")
        module.bias.requires_grad_(needs == "parameters only")
    x = torch.randn(2, 5, 4, 6, generator=gen, dtype=torch.float64).to(device)
    x_ref, x_fused = x.clone().requires_grad_(needs == "input only"), x.clone().requires_grad_(needs == "input only")
    F.mish(reference(x_ref)).square().sum().backward()
    fused(x_fused).square().sum().backward()
    for got, expected in ((x_fused, x_ref), (fused.weight, reference.weight), (fused.bias, reference.bias)):
        assert (got.grad is None) == (expected.grad is None)
        if expected.grad is not None:
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "device,dtype",
    [("cpu", torch.float32)] + [pytest.param("cuda", dt, marks=requires_cuda) for dt in (torch.float32, torch.float16)],
)
def test_batchnorm_mish_backward_twice_with_retained_graph(
    device: str, dtype: torch.dtype, gen: torch.Generator
) -> None:
    """retain_graph=True: the second backward must see the same saved state (cuDNN's reserve space is
    handed a copy while the graph is kept)."""
    fused = torch_mish.BatchNormMish(8).to(device)
    x = torch.randn(4, 8, 6, 6, generator=gen).to(device, dtype).requires_grad_()
    y = fused(x)
    grad = torch.randn(y.shape, generator=gen).to(device, dtype)
    (first,) = torch.autograd.grad(y, x, grad, retain_graph=True)
    (second,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_batchnorm_mish_traces_to_batchnorm_and_the_custom_op_in_training(gen: torch.Generator) -> None:
    """TorchScript tracing (the ONNX exporter's path) takes the unfused ops in training mode too."""
    fused = torch_mish.BatchNormMish(4).train()
    x = torch.randn(2, 4, 5, 5, generator=gen)
    graph = str(torch.jit.trace(fused, x.requires_grad_(), check_trace=False).graph)
    assert "mish::mish" in graph and "aten::batch_norm" in graph


def test_scripting_a_fused_model_says_to_unfuse_it(gen: torch.Generator) -> None:
    """torch.jit.script cannot compile BatchNormMish: it says so, and how, instead of failing inside
    the class; the unfused model scripts and computes what the fused one does."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), torch_mish.Mish())
    fused = torch_mish.fuse_batchnorm_mish(model).eval()
    with pytest.raises(RuntimeError, match=r"unfuse_batchnorm_mish\(model\)"):
        torch.jit.script(fused)
    x = torch.randn(2, 3, 9, 9, generator=gen)
    expected = fused(x)
    scripted = torch.jit.script(torch_mish.unfuse_batchnorm_mish(fused))
    torch.testing.assert_close(scripted(x), expected)
