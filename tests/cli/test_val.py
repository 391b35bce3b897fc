"""torch-mish val: its figures are evaluate_data's with darknet's detector map thresholds, on the model
torch-mish train wrote and on a model whose detections the tests control (cli.helpers.red_squares: a faint
square scores 0.12, between darknet's evaluation threshold 0.005 and detect's 0.25); --conf; --onnx through
torch_mish.darknet.deploy; a missing pycocotools named with its pip command; bad input that exits 2 in
one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cli.helpers import draw_squares, files, needs_onnx, run, write_red_squares
from torch_mish.darknet import Darknet, Detector
from torch_mish.darknet.evaluate import darknet_eval_settings, evaluate_data

pytest.importorskip("PIL", reason="Pillow is not installed (pip install pillow)")
pytest.importorskip("pycocotools", reason="pycocotools (optional) is not installed (pip install pycocotools)")

NET = 64
CELL = 8
# image: red 8x8 squares (cell column, cell row, red value), and labels that no square answers (cell column, row).
# The model's box is its 24x12 anchor at the cell's centre: a label of that box is found with IoU 1.
IMAGES = {
    "a": ([(1, 1, 255), (5, 6, 255)], []),
    "b": ([(4, 2, 102), (2, 5, 255)], []),  # 102/255 = 0.4: objectness sigmoid(20 * 0.4 - 10) = 0.12
    "c": ([(6, 3, 102)], [(2, 2)]),
}


def anchor_label(column: int, row: int) -> str:
    cx, cy = (column * CELL + CELL / 2) / NET, (row * CELL + CELL / 2) / NET
    return f"0 {cx:.6f} {cy:.6f} {24 / NET:.6f} {12 / NET:.6f}\n"


@pytest.fixture
def red_set(tmp_path: Path) -> tuple[Darknet, Path, Path, Path]:
    """The red-squares model, its cfg and .weights, and an obj.data of three images it is measured on."""
    model, cfg, weights = write_red_squares(tmp_path)
    lines = []
    for name, (squares, missed) in IMAGES.items():
        draw_squares(tmp_path / f"{name}.png", (NET, NET), [(c * CELL, r * CELL, CELL, red) for c, r, red in squares])
        labels = [anchor_label(c, r) for c, r, _ in squares] + [anchor_label(c, r) for c, r in missed]
        (tmp_path / f"{name}.txt").write_text("".join(labels))
        lines.append(f"{name}.png\n")
    (tmp_path / "valid.txt").write_text("".join(lines))
    (tmp_path / "obj.names").write_text("red\n")
    data = tmp_path / "obj.data"
    data.write_text("classes = 1\nvalid = valid.txt\nnames = obj.names\n")
    return model, cfg, weights, data


def direct(model: Darknet, data: Path, size: int | None = None, **thresholds: float) -> Any:
    """evaluate_data with the Detector at darknet's evaluation settings (or the thresholds given)."""
    settings = darknet_eval_settings(model)
    conf = thresholds.get("conf", settings["conf_thresh"])
    detector = Detector(model.eval(), conf, thresholds.get("iou", settings["iou_thresh"]))
    return evaluate_data(model, data, detector, size=size)


def test_val_is_evaluate_data_with_darknets_thresholds(
    red_set: tuple[Darknet, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, cfg, weights, data = red_set
    argv = ["val", str(cfg), "--weights", str(weights), "--data", str(data), "--device", "cpu", "--json"]
    code, result, err = run(argv, capsys)
    assert code == 0, err
    expected = direct(model, data)
    assert 0 < expected.map < 1  # the squares found, the unanswered label not
    assert result["map50_95"] == expected.map and result["map50"] == expected.map50
    assert (result["images"], result["labels"], result["detections"]) == (3, 6, expected.detections)
    assert (result["conf"], result["iou"], result["network"]) == (0.005, 0.45, "eager")
    assert "mAP: 100%" in err  # evaluate_data's progress bar
    figures = f"mAP@[.5:.95] {expected.map:.4f}, mAP@.5 {expected.map50:.4f}"
    counts = f"(3 images, 6 labels, {expected.detections} detections; eager)"
    assert err.strip().splitlines()[-1] == f"{cfg} on {data}: {figures} {counts}"
    # --conf 0.25 (detect's) loses the faint squares: the figure the flag gives, and another one
    code, result, err = run([*argv, "--conf", "0.25"], capsys)
    strict = direct(model, data, conf=0.25)
    assert code == 0 and strict.detections < expected.detections and strict.map < expected.map, err
    assert (result["map50_95"], result["map50"], result["detections"]) == (strict.map, strict.map50, strict.detections)


def test_val_of_what_train_wrote(
    shapes_data: Path, trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["val", trained["cfg"], "--weights", trained["weights"], "--data", str(shapes_data), "--json", "-q"]
    code, result, err = run([*argv, "--device", "cpu", "--batch", "3"], capsys)
    assert code == 0 and err == "", err
    model = Darknet(trained["cfg"])
    model.load_darknet_weights(trained["weights"])
    expected = direct(model, shapes_data)
    assert result["images"] == 4 and result["source"] == trained["cfg"]
    assert (result["map50_95"], result["map50"]) == (expected.map, expected.map50)
    assert (result["labels"], result["detections"]) == (expected.labels, expected.detections) and expected.detections
    code, result, err = run([*argv, "--device", "cpu", "--image-size", "96"], capsys)  # a 3x3 grid, not 2x2
    larger = direct(model, shapes_data, size=96)
    assert code == 0 and larger.detections != expected.detections, err
    assert (result["map50_95"], result["detections"], result["image_size"]) == (larger.map, larger.detections, [96, 96])


def test_missing_pycocotools_names_its_pip_command(
    red_set: tuple[Darknet, Path, Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cfg, weights, data = red_set
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools raises ImportError
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    code, _, err = run(["val", str(cfg), "--weights", str(weights), "--data", str(data), "-q"], capsys)
    assert code == 2 and "pip install pycocotools" in err and len(err.strip().splitlines()) == 1, err


def bad_inputs(tmp: Path, cfg: Path, weights: Path, data: Path) -> list[tuple[list[str], str]]:
    (tmp / "m.onnx").write_bytes(b"")
    (tmp / "m.engine").write_bytes(b"")
    head = ["val", str(cfg), "--weights", str(weights), "--data", str(data)]
    return [
        (["val", str(cfg), "--weights", str(weights), "--data", str(tmp / "missing.data")], "missing.data: no such"),
        ([*head, "--image-size", "100"], "does not fit"),
        ([*head, "--onnx", str(tmp / "m.onnx"), "--engine", str(tmp / "m.engine")], "--onnx and --engine together"),
        (["val", str(cfg), "--data", str(data)], "--weights"),
        ([*head, "--onnx", str(tmp / "m.onnx"), "--backend", "compile"], "--backend compile runs the PyTorch model"),
        ([*head, "--onnx", str(tmp / "m.engine")], "must end in .onnx"),
        ([*head, "--conf", "2"], "--conf 2: a threshold in [0, 1]"),
        (["val", str(weights), "--weights", str(weights), "--data", str(data)], "not a darknet .cfg"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_input_exits_2_in_one_line(
    case: int, red_set: tuple[Darknet, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, cfg, weights, data = red_set
    argv, message = bad_inputs(data.parent, cfg, weights, data)[case]
    before = files(data.parent)
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("torch-mish val: error: ")
    assert files(data.parent) == before


@needs_onnx
def test_val_onnx_measures_the_file(
    red_set: tuple[Darknet, Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--onnx measures the file, not the cfg's model: an ONNX file of other weights (every cell an object)
    gives evaluate_data's figure of deploy's detect function for that file, with the cfg's NMS."""
    deploy = pytest.importorskip("torch_mish.darknet.deploy", reason="torch_mish.darknet.deploy is not there yet")
    model, cfg, weights, data = red_set
    other = Darknet(cfg.read_text())
    other.load_darknet_weights(weights)
    with torch.no_grad():
        other.layers[1].conv.bias[4] = 5.0  # objectness: every cell, red or not
    other.save_darknet_weights(tmp_path / "other.weights")
    onnx = tmp_path / "other.onnx"
    export = ["export", str(cfg), "--weights", str(tmp_path / "other.weights"), "--batch", "1:3:8", "-o", str(onnx)]
    code, _, err = run([*export, "-q"], capsys)
    assert code == 0, err
    argv = ["val", str(cfg), "--weights", str(weights), "--data", str(data), "--device", "cpu", "--json", "-q"]
    code, result, err = run([*argv, "--onnx", str(onnx)], capsys)
    assert code == 0 and err == "", err
    settings = darknet_eval_settings(model)
    detector = Detector(model.eval(), settings["conf_thresh"], settings["iou_thresh"])
    expected = evaluate_data(model, data, deploy.onnx_file_detector(onnx, detector, "cpu"))
    assert expected.detections != direct(model, data).detections  # the file is not the model
    assert result["network"] == f"onnx {onnx}"
    measured = (result["map50_95"], result["map50"], result["detections"])
    assert measured == (expected.map, expected.map50, expected.detections)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU may run TensorRT engines here")
def test_engine_without_a_runtime_says_why(
    red_set: tuple[Darknet, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch_mish.darknet.deploy", reason="torch_mish.darknet.deploy is not there yet")
    _, cfg, weights, data = red_set
    (data.parent / "m.engine").write_bytes(b"")
    argv = ["val", str(cfg), "--weights", str(weights), "--data", str(data), "--engine", str(data.parent / "m.engine")]
    code, _, err = run(argv, capsys)
    assert code == 2 and err.startswith("torch-mish val: error: --engine: ") and len(err.splitlines()) == 1, err
