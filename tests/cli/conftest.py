"""Fixtures of the CLI tests: darknet weights, ONNX files and programs exported once per module; a tiny
synthetic dataset and a model trained on it once per session."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli.helpers import HAS_ORT, SIZE, darknet
from torch_mish import cli
from torch_mish.darknet import Darknet


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Darknet, Path]:
    model = darknet("yolov4-tiny")
    path = tmp_path_factory.mktemp("weights") / "tiny.weights"
    model.save_darknet_weights(path)
    return model, path


@pytest.fixture(scope="module")
def tiny_onnx(tiny_weights: tuple[Darknet, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_ORT:
        pytest.skip("onnx, onnxscript and onnxruntime are not installed")
    _, weights = tiny_weights
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    argv = ["export", "yolov4-tiny.cfg", "--weights", str(weights), "--image-size", str(SIZE), "--batch", "1:2:4"]
    assert cli.main([*argv, "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small_model exported at 16x16 with a static batch of 2 and with a batch range 1:2:8."""
    folder = tmp_path_factory.mktemp("programs")
    paths = {"static": folder / "b2.pt2", "dynamic": folder / "dyn.pt2"}
    for kind, batch in [("static", "2"), ("dynamic", "1:2:8")]:
        argv = ["export", "cli.helpers:small_model", "--image-size", "16", "--batch", batch, "-o", str(paths[kind])]
        assert cli.main([*argv, "-q"]) == 0
    return paths


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny darknet-format dataset of drawn shapes (8 train, 4 valid images, 5 classes): its obj.data."""
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install pillow)")
    from torch_mish.darknet.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, size=64, seed=5, max_shapes=2)


TINY = ["--image-size", "64", "--device", "cpu", "--workers", "0", "--batch", "2"]  # seconds on a CPU
TRAIN_ARGS = [*TINY, "--max-batches", "2"]


@pytest.fixture(scope="session")
def trained(shapes_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """torch-mish train yolov4-tiny, 2 iterations of 2 images at 64x64 on the CPU: its --json result."""
    out = tmp_path_factory.mktemp("train") / "run"
    argv = ["train", "yolov4-tiny.cfg", "--data", str(shapes_data), *TRAIN_ARGS, "-o", str(out), "--json", "-q"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(argv) == 0
    return json.loads(stdout.getvalue())
