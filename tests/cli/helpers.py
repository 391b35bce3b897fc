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


# A detector whose detections the tests control: 8x8 max-pooled cells, one 24x12 anchor, objectness
# 20 * red - 10 * (green + blue) - 10 (a cell is a detection where the image is red, and redder means a
# higher score), every class logit -10 but `cls`'s +10, box offsets 0 (the anchor at the cell's centre).
RED_SQUARES_CFG = """[net]
width=64
height=64
channels=3
letter_box={letter_box}

[maxpool]
stride=8
size=8

[convolutional]
filters={filters}
size=1
stride=1
pad=0
activation=linear

[yolo]
mask=0
anchors=24,12
classes={classes}
num=1
"""


def red_squares(classes: int = 1, cls: int = 0, letter_box: int = 0) -> tuple[Darknet, str]:
    """The model and its cfg text."""
    cfg = RED_SQUARES_CFG.format(filters=5 + classes, classes=classes, letter_box=letter_box)
    model = Darknet(cfg)
    conv = model.layers[1].conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-10.0)
        conv.bias[:4] = 0.0
        conv.weight[4, :, 0, 0] = torch.tensor([20.0, -10.0, -10.0])
        conv.bias[5 + cls] = 10.0
    return model.eval(), cfg


def write_red_squares(tmp: Path, classes: int = 1, cls: int = 0, letter_box: int = 0) -> tuple[Darknet, Path, Path]:
    """The model, its cfg and its .weights written under tmp."""
    model, text = red_squares(classes, cls, letter_box)
    cfg, weights = tmp / f"red{classes}.cfg", tmp / f"red{classes}.weights"
    cfg.write_text(text)
    model.save_darknet_weights(weights)
    return model, cfg, weights


def draw_squares(path: Path, size: tuple[int, int], squares: list[tuple[int, int, int, int]]) -> None:
    """A black width x height image with red squares (x, y, side, red value), saved to path."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for x, y, side, red in squares:
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=(red, 0, 0))
    image.save(path)
