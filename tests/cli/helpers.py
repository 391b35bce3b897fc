"""Models for ``module:factory`` sources (``cli.helpers:small_model``) and what the CLI tests share:
main() run in this process, the files a run leaves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torch_mish
from torch_mish import cli
from torch_mish.darknet import Darknet, packaged_cfg

SIZE = 64
HAS_ORT = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript", "onnxruntime"))
# onnx, onnxscript and onnxruntime are optional test dependencies
needs_onnx = pytest.mark.skipif(not HAS_ORT, reason="onnx, onnxscript and onnxruntime are not installed")


def small_model() -> nn.Module:
    """conv, BatchNorm, torch_mish.Mish, conv."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), torch_mish.Mish(), nn.Conv2d(8, 4, 1))


def mixed_model() -> nn.Module:
    """One torch_mish.Mish and one nn.Mish (aten.mish)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), torch_mish.Mish(), nn.Conv2d(8, 8, 1), nn.Mish())


class ComposedMish(nn.Module):
    """Mish as YOLO code bases write it: no Mish op at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(nn.functional.softplus(x))


def unconverted_model() -> nn.Module:
    """Two hand-written Mish modules, as a model is before torch_mish.convert_mish."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ComposedMish(), nn.Conv2d(8, 4, 1), ComposedMish())


class Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model cannot run")


def broken_model() -> nn.Module:
    return Broken()


def darknet(name: str) -> Darknet:
    torch.manual_seed(0)
    m = Darknet(packaged_cfg(name))
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """main(argv) in this process: (exit status, parsed --json stdout or None, stderr)."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    data = json.loads(captured.out) if "--json" in argv and code == 0 else None
    return code, data, captured.err


def files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}
