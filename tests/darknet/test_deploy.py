"""torch_mish.darknet.deploy: each deploy path of a Detector gives the Detector's detections (float
tolerance for the paths that recompile the network), at the batch it was made for and another."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import DEVICES
from test_detector import small_model

from torch_mish.darknet import Detector, deploy

FAST = ["eager", "export", "onnx"]
SLOW = ["compile", "aoti"]  # Inductor compiles the network: minutes on a small CPU


def detector(device: str = "cpu") -> Detector:
    return Detector(small_model(), conf_thresh=0.2, max_det=30).to(device)


def assert_same_detections(got: tuple, expected: tuple, path: str) -> None:
    # Paths that compile the network round the rows differently: boxes and scores within float tolerance,
    # on an input whose decisions are not near a threshold. TensorRT may run float32 convolutions in TF32.
    tol = 1e-2 if path.startswith("tensorrt") else 1e-4
    num, boxes, scores, classes = (t.cpu() for t in got)
    assert torch.equal(num, expected[0]), (
        f"{path}: num_dets {num.flatten().tolist()} != {expected[0].flatten().tolist()}"
    )
    assert torch.equal(classes, expected[3]), path
    torch.testing.assert_close(boxes, expected[1], rtol=tol, atol=tol, msg=f"{path}: det_boxes")
    torch.testing.assert_close(scores, expected[2], rtol=tol, atol=tol / 10, msg=f"{path}: det_scores")


def check_path(path: str, tmp_path: Path, device: str = "cpu") -> None:
    det = detector(device)
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, 48, 64, generator=gen)
    try:
        fn = deploy.detect_fn(path, det, example, tmp_path)
    except deploy.PathUnavailable as exc:
        pytest.skip(f"the {path} path cannot run here: {exc}")
    for batch in (2, 3):
        x = torch.rand(batch, 3, 48, 64, generator=gen)
        with torch.no_grad():
            expected = tuple(t.cpu() for t in det(x.to(device)))
            got = fn(x.double())  # any float dtype in: the path casts to the model's
        assert int(expected[0].sum()) > 0, "the input makes no detections: the comparison would prove nothing"
        assert_same_detections(got, expected, f"{path} batch {batch}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", FAST)
def test_path_gives_the_detectors_detections(path: str, device: str, tmp_path: Path) -> None:
    if path == "onnx":
        pytest.importorskip("onnxruntime", reason="the onnx path needs onnxruntime")
        pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")
    check_path(path, tmp_path, device)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", SLOW)
def test_compiled_path_gives_the_detectors_detections(path: str, device: str, tmp_path: Path) -> None:
    torch._dynamo.reset()
    check_path(path, tmp_path, device)


def test_tensorrt_path_runs_or_says_why(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch_tensorrt") is None:
        pytest.skip("the tensorrt path needs torch-tensorrt")
    check_path(
        "tensorrt", tmp_path, "cuda" if torch.cuda.is_available() else "cpu"
    )  # skips with the runtime's reason where no engine can run


def test_unknown_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="deploy path 'tflite': one of eager, compile"):
        deploy.detect_fn("tflite", detector(), torch.zeros(1, 3, 48, 64), tmp_path)
