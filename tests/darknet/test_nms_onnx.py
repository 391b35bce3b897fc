"""darknet_nms in ONNX: kind "default" as the standard NonMaxSuppression (run in onnxruntime, equal to
PyTorch), the DIoU kinds as a torch_mish::DarknetNMS node for TensorRT, with both exporters."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from nms_ref import decisive_case, random_rows
from test_detector import small_model

import torch_mish.onnx as tmo
from torch_mish.darknet import Detector, darknet_nms

if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
    pytest.skip("onnx, onnxscript and onnxruntime are needed (pip install torch_mish[onnx])", allow_module_level=True)

import onnx
import onnxruntime

OUTPUTS = ["num_dets", "det_boxes", "det_scores", "det_classes"]
EXPORTERS = [pytest.param(True, id="dynamo"), pytest.param(False, id="torchscript")]


class RowsNMS(torch.nn.Module):
    """darknet_nms on rows given as the input: ONNX and PyTorch see the same rows."""

    def __init__(self, conf: float, iou: float, max_det: int, kind: str = "default") -> None:
        super().__init__()
        self.args = (conf, iou, max_det, kind, 0.7, 608.0, 608.0)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return darknet_nms(rows, *self.args)


def export(module: torch.nn.Module, x: torch.Tensor, path: Path, dynamo: bool, **kwargs: object) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), str(path), dynamo=dynamo, opset_version=18, input_names=["x"], output_names=OUTPUTS, **kwargs
        )
    return onnx.load(str(path))


def run(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(OUTPUTS, {"x": x.numpy()})


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_default_kind_runs_in_onnxruntime_like_pytorch(dynamo: bool, dtype: torch.dtype, tmp_path: Path, gen) -> None:
    # (conf, iou, max_det, rows, classes): many candidates; few; max_det above rows * classes (padding)
    for conf, iou, max_det, r, c in [(0.005, 0.45, 300, 300, 4), (0.5, 0.3, 20, 200, 3), (0.1, 0.6, 50, 10, 2)]:
        rows, _ = decisive_case(
            gen, lambda g, r=r, c=c: random_rows(g, 2, r, c).to(dtype), conf, iou, max_det, "default"
        )
        module = RowsNMS(conf, iou, max_det)
        model = export(module, rows, tmp_path / "nms.onnx", dynamo)
        assert [n.op_type for n in model.graph.node].count("NonMaxSuppression") == 1
        assert not tmo.plugin_nodes(model)
        tmo.check_onnxruntime(model)
        got = run(tmp_path / "nms.onnx", rows)
        for a, b, name in zip(got, module(rows), OUTPUTS, strict=True):
            assert a.dtype == b.numpy().dtype and np.array_equal(a, b.numpy()), f"{name} ({conf=}, {max_det=})"


def test_default_kind_dynamic_batch(tmp_path: Path, gen) -> None:
    module = RowsNMS(0.25, 0.45, 40)
    rows = random_rows(gen, 2, 100, 3)
    batch = torch.export.Dim("batch", min=1, max=16)
    export(module, rows, tmp_path / "nms.onnx", True, dynamic_shapes=({0: batch},))
    rows3 = random_rows(gen, 3, 100, 3)
    for a, b in zip(run(tmp_path / "nms.onnx", rows3), module(rows3), strict=True):
        assert np.array_equal(a, b.numpy())


def test_detector_in_onnxruntime(tmp_path: Path) -> None:
    # The whole Detector: onnxruntime's convolutions round the rows differently, so boxes and scores
    # are compared with a tolerance, on a fixed input far from the thresholds.
    det = Detector(small_model(), conf_thresh=0.2, max_det=30, nms_kind="default")
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    export(det, x, tmp_path / "det.onnx", True)
    got, want = run(tmp_path / "det.onnx", x), det(x)
    assert np.array_equal(got[0], want[0].numpy()) and np.array_equal(got[3], want[3].numpy())
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[2], want[2].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
def test_diou_kinds_write_the_plugin_node(kind: str, dynamo: bool, tmp_path: Path) -> None:
    det = Detector(small_model(), conf_thresh=0.2, iou_thresh=0.5, max_det=30, nms_kind=kind, beta_nms=0.9)
    model = export(det, torch.rand(2, 3, 48, 64), tmp_path / "det.onnx", dynamo)
    nodes = [n for n in model.graph.node if n.op_type == tmo.DARKNET_NMS_OP]
    assert len(nodes) == 1 and nodes[0].domain == "torch_mish"
    assert "NonMaxSuppression" not in [n.op_type for n in model.graph.node]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {
        "conf_thresh": pytest.approx(0.2),
        "iou_thresh": pytest.approx(0.5),
        "max_det": 30,
        "kind": kind.encode(),
        "beta": pytest.approx(0.9),
        "net_width": 64.0,
        "net_height": 48.0,
        "plugin_version": tmo.DARKNET_NMS_VERSION.encode(),
        "plugin_namespace": b"torch_mish",
    }
    assert len(nodes[0].output) == 4 and [o.name for o in model.graph.output] == OUTPUTS
    with pytest.raises(ValueError, match="DarknetNMS .*onnxruntime cannot run.*nms_kind='default'"):
        tmo.check_onnxruntime(tmp_path / "det.onnx")
