"""convert_mish / revert_mish: what is replaced, what is kept, and that outputs stay equal."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, requires_cuda
from torch import nn
from yolov4_csp import YOLOv4CSP, count_layers

import torch_mish


class HandwrittenMish(nn.Module):
    """As in the public YOLOv4 PyTorch code bases."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class Mish(nn.Module):
    """Named Mish, computes Swish: must never be replaced."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class MishLikeWithParameter(nn.Module):
    """Computes Mish times a learnable scale: stateful, so not a Mish."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.mish(x)


class MishWithInplaceFlag(nn.Module):
    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(torch.tanh(F.softplus(x))) if self.inplace else x * torch.tanh(F.softplus(x))


def test_recognizes_by_behaviour_not_name() -> None:
    assert torch_mish.computes_mish(HandwrittenMish())
    assert torch_mish.computes_mish(nn.Mish()) and torch_mish.computes_mish(MishWithInplaceFlag())
    assert not torch_mish.computes_mish(Mish()), "a 'Mish' that computes Swish must stay"
    assert not torch_mish.computes_mish(MishLikeWithParameter())
    assert not torch_mish.computes_mish(nn.ReLU()) and not torch_mish.computes_mish(nn.Identity())


@pytest.mark.parametrize("device", DEVICES)
def test_convert_yolo_keeps_outputs_mode_device_dtype(device: str, caplog, monkeypatch, gen: torch.Generator) -> None:  # noqa: ANN001
    # TF32 convolutions would round 1-ulp Mish differences into ~1e-4 output differences.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    original = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3, act=HandwrittenMish).to(device).train()
    mixed = nn.Sequential(original, Mish(), MishLikeWithParameter(), MishWithInplaceFlag(), nn.Mish(inplace=True))
    reference = copy.deepcopy(mixed)
    n_hand = sum(isinstance(m, HandwrittenMish) for m in mixed.modules())
    with caplog.at_level(logging.INFO, logger="torch_mish.convert"):
        converted = torch_mish.convert_mish(mixed)
    assert converted is mixed
    ours = [m for m in converted.modules() if isinstance(m, torch_mish.Mish)]
    assert len(ours) == n_hand + 2
    assert isinstance(converted[1], Mish) and isinstance(converted[2], MishLikeWithParameter)
    assert converted[3].inplace and converted[4].inplace
    assert all(m.training for m in ours)
    assert f"{n_hand + 2} module(s) now use torch_mish.Mish" in caplog.text
    x = torch.randn(2, 3, 64, 64, generator=gen).to(device)
    converted.eval()
    reference.eval()
    with torch.no_grad():
        for got, expected in zip(converted[0](x), reference[0](x), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert next(converted.parameters()).device.type == device


def test_revert_round_trip_and_checkpoints_interchange(gen: torch.Generator) -> None:
    torch.manual_seed(0)
    ours = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3).eval()
    theirs = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3, act=nn.Mish).eval()
    assert count_layers(ours, (torch_mish.Mish,))[1] == count_layers(theirs, (nn.Mish,))[1]
    theirs.load_state_dict(ours.state_dict())  # a torch_mish checkpoint loads into the nn.Mish model
    reverted = torch_mish.revert_mish(copy.deepcopy(ours))
    assert not any(isinstance(m, torch_mish.Mish) for m in reverted.modules())
    ours.load_state_dict(reverted.state_dict())  # and back
    x = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_convert_top_level_module() -> None:
    assert isinstance(torch_mish.convert_mish(HandwrittenMish()), torch_mish.Mish)
    assert isinstance(torch_mish.revert_mish(torch_mish.Mish()), nn.Mish)


class ResidualAfterBatchNorm(nn.Module):
    """The BatchNorm output feeds Mish and a residual add: it must stay a tensor, so no fusion."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        return self.act(y) + y


class SharedActivation(nn.Module):
    """One Mish module applied after two BatchNorms: replacing it would change the other use."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.act = torch_mish.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.act(self.bn1(x))))


class DataDependent(nn.Module):
    """Not traceable by FX at the top (control flow on a value); its child blocks are."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), HandwrittenMish())
        self.other = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) if x.sum() > 0 else self.other(x)


@pytest.mark.parametrize("device", DEVICES)
def test_fuse_batchnorm_mish_yolo_trains_the_same(device: str, caplog, monkeypatch, gen: torch.Generator) -> None:  # noqa: ANN001
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3).to(device).train()
    reference = copy.deepcopy(model)
    n_mish = count_layers(model, (torch_mish.Mish,))[1]
    with caplog.at_level(logging.INFO, logger="torch_mish.convert"):
        assert torch_mish.fuse_batchnorm_mish(model) is model
    # In this model every Mish follows a BatchNorm2d whose output has no other use.
    assert sum(isinstance(m, torch_mish.BatchNormMish) for m in model.modules()) == n_mish
    assert not any(isinstance(m, torch_mish.Mish) for m in model.modules())
    assert f"{n_mish} BatchNorm -> Mish pair(s) fused" in caplog.text
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(2, 3, 64, 64, generator=gen).to(device)
    outputs, expected = model(x), reference(x)
    for got, want in zip(outputs, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    sum(o.square().mean() for o in outputs).backward()
    sum(o.square().mean() for o in expected).backward()
    # Compared as whole tensors: the backward pass recomputes each BatchNorm output, whose 1-ulp float32
    # differences grow through 76 layers in individual near-zero elements of early gradients.
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        relative = (p.grad - q.grad).norm() / q.grad.norm()
        assert relative < 1e-4, f"{name}: gradient differs by {relative:.2e} (relative L2)"
    for (name, b), c in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)
    reference.load_state_dict(model.state_dict())  # checkpoints interchange with the unfused model


def test_fuse_batchnorm_mish_leaves_unsafe_pairs_alone() -> None:
    residual, shared = ResidualAfterBatchNorm(), SharedActivation()
    torch_mish.fuse_batchnorm_mish(residual)
    torch_mish.fuse_batchnorm_mish(shared)
    for model in (residual, shared):
        assert not any(isinstance(m, torch_mish.BatchNormMish) for m in model.modules())


def test_fuse_batchnorm_mish_searches_inside_untraceable_modules(gen: torch.Generator) -> None:
    model = DataDependent().train()
    reference = copy.deepcopy(model)
    torch_mish.fuse_batchnorm_mish(model)
    assert isinstance(model.block[1], torch_mish.BatchNormMish) and isinstance(model.block[2], nn.Identity)
    assert type(model.other[0]) is nn.BatchNorm2d  # followed by ReLU
    x = torch.rand(2, 4, 8, 8, generator=gen)
    torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6)


class BatchNormThenMish(nn.Module):
    """A BatchNorm2d and a Mish module; subclasses decide how forward uses them."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.act = torch_mish.Mish()


class FeatureInEval(BatchNormThenMish):
    """Returns the BatchNorm output as an extra feature in eval mode only: unsafe to fuse, which a
    trace in training mode alone would not show."""

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = self.bn(x)
        return self.act(y) if self.training else (self.act(y), y)


class BatchNormTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.bn(x)))


class SharedMishModule(BatchNormThenMish):
    """One Mish module registered under two names, applied once: fusing would leave the other name
    pointing at a module that no longer runs."""

    def __init__(self) -> None:
        super().__init__()
        self.alias = self.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


def _hooked(on: int, kind: str) -> nn.Module:
    model = nn.Sequential(nn.BatchNorm2d(4), torch_mish.Mish())
    hook = {
        "forward": lambda m: m.register_forward_hook(lambda module, args, out: None),
        "pre": lambda m: m.register_forward_pre_hook(lambda module, args: None),
        "backward": lambda m: m.register_full_backward_hook(lambda module, gi, go: None),
    }[kind]
    hook(model[on])
    return model


@pytest.mark.parametrize(
    "make,reason",
    [
        (FeatureInEval, "in eval mode the BatchNorm output also goes elsewhere"),
        (SharedMishModule, "shared"),
        (lambda: _hooked(0, "forward"), "hooks"),
        (lambda: _hooked(1, "forward"), "hooks"),
        (lambda: _hooked(1, "pre"), "hooks"),
        (lambda: _hooked(0, "backward"), "hooks"),
        (BatchNormTwice, None),  # not a pair at all: the BatchNorm runs twice
    ],
    ids=[
        "eval-only-feature",
        "mish-registered-twice",
        "bn-hook",
        "mish-hook",
        "mish-pre-hook",
        "bn-backward-hook",
        "bn-twice",
    ],
)
def test_fuse_batchnorm_mish_leaves_unsafe_pairs_and_says_why(make, reason: str | None) -> None:  # noqa: ANN001
    model = make().train()
    if reason is None:
        torch_mish.fuse_batchnorm_mish(model)
    else:
        with pytest.warns(UserWarning, match=f"(?s)left 1 BatchNorm -> Mish pair.*{reason}"):
            torch_mish.fuse_batchnorm_mish(model)
    assert not any(isinstance(m, torch_mish.BatchNormMish) for m in model.modules()), type(model).__name__
    assert model.training


def test_unfuse_refuses_a_placeholder_without_its_batchnorm() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), torch_mish.Mish())
    torch_mish.fuse_batchnorm_mish(model)
    model[0] = nn.BatchNorm2d(4)  # the fused module replaced by hand: the placeholder's pair is gone
    with pytest.raises(ValueError, match=r"1 says its Mish was fused into 0, which is a BatchNorm2d"):
        torch_mish.unfuse_batchnorm_mish(model)


class MishInsideTwelve(nn.Module):
    """Mish for |x| <= 12 only: what a probe that stops at +-12 cannot tell from Mish."""

    def __init__(self, tail: str) -> None:
        super().__init__()
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.mish(x)
        if self.tail == "clamped":
            return y.clamp(max=12.0)
        return torch.where(x < -12, torch.zeros_like(y), y)  # a softplus cut off below -12


@pytest.mark.parametrize("tail", ["clamped", "cut-off"])
def test_probe_reaches_the_tails(tail: str) -> None:
    module = MishInsideTwelve(tail)
    assert not torch_mish.computes_mish(module)
    model = torch_mish.convert_mish(nn.Sequential(nn.Identity(), module))
    assert model[1] is module


@requires_cuda
def test_cuda_only_mish_modules_are_recognized() -> None:
    """Modules that run only on a GPU (mish-cuda's MishCuda) are probed there, in float32."""

    class CudaOnlyMish(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not x.is_cuda:
                raise RuntimeError("CUDA tensors only")
            return x * torch.tanh(F.softplus(x))

    model = torch_mish.convert_mish(nn.Sequential(nn.Identity(), CudaOnlyMish()))
    assert isinstance(model[1], torch_mish.Mish)


def test_unfuse_restores_batchnorm_and_mish(gen: torch.Generator) -> None:
    torch.manual_seed(0)
    model = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3).train()
    reference = copy.deepcopy(model)
    n_mish = count_layers(model, (torch_mish.Mish,))[1]
    torch_mish.fuse_batchnorm_mish(model)
    # Not a BatchNorm by type: SyncBatchNorm conversion and conv-BN folding must not take it for one.
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules() if type(m) is not nn.BatchNorm2d
    )
    torch_mish.unfuse_batchnorm_mish(model)
    assert count_layers(model, (torch_mish.Mish,))[1] == n_mish
    assert not any(isinstance(m, (torch_mish.BatchNormMish, torch_mish.FusedMish)) for m in model.modules())
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    model.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        for a, b in zip(model(x), reference(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture(scope="module")
def timm_model() -> nn.Module:
    """timm's CSPDarknet53 with Mish (67 Conv -> BatchNormAct2d(Mish) layers), as users create it."""
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install timm)")
    torch.manual_seed(0)
    return timm.create_model("cspdarknet53", act_layer="mish", pretrained=False, num_classes=10)


def test_timm_model_converts_fuses_and_unfuses(timm_model: nn.Module, gen: torch.Generator) -> None:
    """timm keeps BatchNorm and its activation in one BatchNormAct2d: convert_mish swaps its Mish,
    fuse_batchnorm_mish fuses all 67, without a warning; training matches; unfusing restores timm's
    modules with the trained state."""
    model = torch_mish.convert_mish(copy.deepcopy(timm_model)).train()
    assert count_layers(model, (torch_mish.Mish,))[1] == 67
    reference = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every pair fuses: nothing to warn about
        torch_mish.fuse_batchnorm_mish(model)
    assert sum(isinstance(m, torch_mish.BatchNormMish) for m in model.modules()) == 67
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(2, 3, 64, 64, generator=gen)
    y, y_ref = model(x), reference(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    y.square().mean().backward()
    y_ref.square().mean().backward()
    # timm zero-initializes each residual block's last BatchNorm: those biases' gradients are sums that
    # cancel to ~1e-9, float32 noise, hence the absolute floor.
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        difference = (p.grad - q.grad).norm()
        assert difference <= 1e-4 * q.grad.norm() + 1e-7, f"{name}: gradients differ by {difference:.2e} (L2)"
    torch_mish.unfuse_batchnorm_mish(model)
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    for (name, b), c in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)  # the fused module's updates


def test_timm_batchnorm_act_with_another_activation_stays(timm_model: nn.Module) -> None:
    """Only a BatchNormAct2d whose activation computes Mish is fused."""
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install timm)")
    model = timm.create_model("cspdarknet53", act_layer="leaky_relu", pretrained=False, num_classes=10)
    torch_mish.fuse_batchnorm_mish(model)
    assert not any(isinstance(m, torch_mish.BatchNormMish) for m in model.modules())


def test_timm_scriptable_model_scripts_after_conversion(timm_model: nn.Module, gen: torch.Generator) -> None:
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install timm)")
    with timm.layers.set_layer_config(scriptable=True):
        model = timm.create_model("darknet17", act_layer="mish", pretrained=False, num_classes=10).eval()
    model = torch_mish.convert_mish(model)
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
