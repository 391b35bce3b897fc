"""torch_mish.functional: mish as a drop-in for F.mish (in place, autocast policy, TorchScript)."""

from __future__ import annotations

import pytest
import torch
from helpers import DEVICES, assert_mish_close, mish_reference, random_inputs
from torch import nn

import torch_mish


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
    assert_mish_close(y, mish_reference(h))
    assert_mish_close(y32, mish_reference(x))


@pytest.mark.parametrize("inplace", [False, True])
def test_functional_scripts_like_f_mish(inplace: bool, gen: torch.Generator) -> None:
    """torch.jit.script compiles torch_mish.mish (as it does F.mish) into the custom op."""
    scripted = torch.jit.script(torch_mish.mish)
    assert "mish::mish" in str(scripted.graph)
    x = random_inputs(500, gen).float()
    expected = mish_reference(x)
    y = scripted(x, inplace)
    assert (y.data_ptr() == x.data_ptr()) == inplace
    assert_mish_close(y, expected)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("", None), ("true", None), ("off", None)])
def test_env_switches_take_0_or_1_and_warn_on_anything_else(
    value: str, expected: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TORCH_MISH_COMPILE_AS_ATEN and TORCH_MISH_INDUCTOR_DECOMPOSE are read with env_flag: a typo
    must be seen, not silently taken as one of the settings."""
    from torch_mish._env import env_flag

    monkeypatch.setenv("TORCH_MISH_TEST_SWITCH", value)
    if value in ("", "0", "1"):
        assert env_flag("TORCH_MISH_TEST_SWITCH") is expected
        return
    with pytest.warns(RuntimeWarning, match=f"TORCH_MISH_TEST_SWITCH='{value}' is not 0 or 1: ignored"):
        assert env_flag("TORCH_MISH_TEST_SWITCH") is None
