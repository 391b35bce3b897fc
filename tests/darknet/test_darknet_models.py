"""Every packaged cfg (the YOLOv4 family) built, run against the darknet reference on random weights,
and run at another input size in both modes."""

from __future__ import annotations

import re

import pytest
import torch
from compare import compare

import torch_mish
from torch_mish.darknet import PACKAGED_CFGS, Darknet, packaged_cfg


@pytest.mark.parametrize("name", PACKAGED_CFGS)
def test_packaged_cfg_matches_darknet(name: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    text = packaged_cfg(name).read_text()
    # float64, 32x32 (the smallest grid is 1x1): every layer output and the decoded detections
    model, _ = compare(text, gen, tmp_path, size=(32, 32), batch=1)
    mish = sum(isinstance(m, torch_mish.Mish) for m in model.modules())
    assert mish == len(re.findall(r"^\s*activation\s*=\s*mish\s*$", text, re.M))

    model = model.float()
    yolos = model.yolo_layers
    h, w = 64, 96  # not the cfg's size, not square: the grids follow the input
    x = torch.rand(2, 3, h, w, generator=gen)
    with torch.no_grad():
        det = model.eval()(x)
        heads = model.train()(x)
    strides = [h // t.shape[2] for t in heads]
    assert strides == [w // t.shape[3] for t in heads]
    rows = sum(y.num_anchors * (h // s) * (w // s) for y, s in zip(yolos, strides, strict=True))
    assert det.shape == (2, rows, 5 + yolos[0].classes)
    assert [t.shape[1] for t in heads] == [y.num_anchors for y in yolos]
    assert torch.isfinite(det).all()


def test_cfg_as_path_text_or_str() -> None:
    path = packaged_cfg("yolov4-tiny")
    a, b, c = Darknet(path), Darknet(str(path)), Darknet(path.read_text())
    assert repr(a) == repr(b) == repr(c).replace("<cfg text>", "yolov4-tiny.cfg")
    assert (a.width, a.height, a.channels) == (416, 416, 3)


def test_layer_reprs_name_section_and_line() -> None:
    model = Darknet(packaged_cfg("yolov4-csp"))
    text = packaged_cfg("yolov4-csp").read_text().splitlines()
    for i in (0, 17, 100, len(model.layers) - 1):
        layer = model.layers[i]
        line = int(layer.where.rsplit(":", 1)[1])
        assert text[line - 1].strip() == f"[{layer.section}]"
        assert f"{i}: [{layer.section}] yolov4-csp.cfg:{line}" in repr(layer)


def test_packaged_cfgs_ship_with_their_license() -> None:
    folder = packaged_cfg("yolov4").parent
    assert "public domain" in (folder / "LICENSE").read_text()
    assert sorted(p.name for p in folder.glob("*.cfg")) == sorted(PACKAGED_CFGS)
    with pytest.raises(ValueError, match="no packaged cfg 'yolov3.cfg'"):
        packaged_cfg("yolov3")


@pytest.mark.parametrize(("name", "size", "fits"), [("yolov4-tiny", 96, True), ("yolov4-tiny", 100, False)])
def test_check_input_size(name: str, size: int, fits: bool) -> None:
    """A size the strides do not divide fails in forward at a route's concatenation; check_input_size
    says so up front, and passes where forward works."""
    model = Darknet(packaged_cfg(name)).eval()
    x = torch.rand(1, 3, size, size)
    if fits:
        model.check_input_size(size, size)
        model.half().check_input_size(size, size)  # the check's input follows the model's dtype (and device)
        with torch.no_grad():
            model.float()(x)
        return
    with pytest.raises(ValueError, match=rf"{size}x{size} does not fit {name}\.cfg .*multiple of 32"):
        model.check_input_size(size, size)
    with pytest.raises(RuntimeError), torch.no_grad():
        model(x)
