"""--nms on export, inspect, build and triton: the Detector (darknet's thresholds and NMS) in the ONNX file,
the TensorRT network and the engine, with the four outputs num_dets, det_boxes, det_scores, det_classes.
ONNX with nms_kind default runs in onnxruntime like the Detector; DIoU kinds write the plugin node, which
the command says onnxruntime cannot run. Where TensorRT cannot build what was asked (TensorRT-RTX: no
plugin layers, no INMSLayer implementation without a GPU), one line says so and nothing is written."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from cli.helpers import SIZE, files, needs_onnx, run
from cli.test_triton import parse_config
from torch_mish.cli import networks, options
from torch_mish.cli.console import Console
from torch_mish.cli.triton import triton_config
from torch_mish.darknet import OUTPUT_NAMES, Darknet, Detector
from torch_mish.ops import NMS_KINDS

CONF = 0.1  # random weights: a low threshold gives detections to compare


def test_the_kinds_the_parser_offers_are_the_ops() -> None:
    assert options.NMS_KINDS == NMS_KINDS


@needs_onnx
def test_export_nms_default_runs_in_onnxruntime_like_the_detector(
    tiny_weights: tuple[Darknet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    model, weights = tiny_weights
    out = tmp_path / "tiny_nms.onnx"
    argv = ["export", "yolov4-tiny.cfg", "--weights", str(weights), "--image-size", str(SIZE), "--batch", "1:2:4"]
    argv += ["--nms", "--nms-kind", "default", "--conf", str(CONF), "--max-det", "50", "-o", str(out), "--json"]
    code, result, err = run(argv, capsys)
    assert code == 0, err
    assert result["onnx_nms_nodes"] == {"NonMaxSuppression": 1, "DarknetNMS": 0}
    assert result["nms"]["kind"] == "default" and result["nms"]["max_det"] == 50
    assert "onnxruntime cannot run" not in err
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))  # batch 3 of 1:2:4
    got = [torch.from_numpy(a) for a in session.run(None, {"x": x.numpy()})]
    expected = Detector(model, conf_thresh=CONF, max_det=50, nms_kind="default")(x)
    assert (got[0] > 0).all(), "no detections to compare"
    for g, e, name in zip(got, expected, OUTPUT_NAMES, strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype, name
    assert torch.equal(got[0], expected[0]) and torch.equal(got[3], expected[3])
    torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got[2], expected[2], rtol=1e-5, atol=1e-6)


@needs_onnx
def test_export_nms_diou_writes_the_plugin_node_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    out = tmp_path / "tiny_diou.onnx"
    argv = ["export", "yolov4-tiny", "--image-size", str(SIZE), "--nms", "-o", str(out), "--json"]
    code, result, err = run(argv, capsys)
    assert code == 0, err
    assert result["nms"]["kind"] == "greedynms"  # yolov4-tiny.cfg's
    assert result["onnx_nms_nodes"] == {"NonMaxSuppression": 0, "DarknetNMS": 1}
    assert "torch_mish::DarknetNMS" in err and "onnxruntime cannot run this file" in err
    assert [o.name for o in onnx.load(str(out)).graph.output] == list(OUTPUT_NAMES)


def test_export_nms_program_is_the_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny_nms.pt2"
    argv = ["export", "yolov4-tiny", "--image-size", str(SIZE), "--nms", "--nms-kind", "diounms", "--beta-nms", "0.8"]
    code, result, err = run([*argv, "--conf", "0.05", "-o", str(out), "--json"], capsys)
    assert code == 0, err
    program = torch.export.load(out)
    nodes = [
        n for n in program.graph.nodes if n.op == "call_function" and n.target == torch.ops.mish.darknet_nms.default
    ]
    assert len(nodes) == 1 and nodes[0].args[1:8] == (0.05, 0.45, 300, "diounms", 0.8, SIZE, SIZE)
    assert result["nms"]["beta_nms"] == 0.8


def nms_network_report(trt: ModuleType, nms_kind: str, batch: str) -> dict[str, Any]:
    detections = options.NmsOptions(0.25, 0.45, 300, nms_kind, None)
    model = options.ModelOptions(
        "yolov4-tiny.cfg", None, (SIZE, SIZE), options.parse_batch(batch), "float32", detections
    )
    return networks.make(model, options.EngineOptions(None, None), Console(quiet=True), build_engine=False).report


def test_inspect_nms_converts_completely(trt: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["inspect", "yolov4-tiny", "--image-size", str(SIZE), "--nms", "--nms-kind", "default", "--json"]
    code, report, err = run(argv, capsys)
    assert code == 0, err
    assert report["coverage"]["percent"] == 100.0 and report["coverage"]["trt_engines"] == 1
    assert report["layer_types"]["NMS"] == 1 and report["nms"]["kind"] == "default"
    assert [(o["name"], o["shape"], o["dtype"]) for o in report["outputs"]] == [
        ("num_dets", [1, 1], "INT32"),
        ("det_boxes", [1, 300, 4], "FLOAT"),
        ("det_scores", [1, 300], "FLOAT"),
        ("det_classes", [1, 300], "INT32"),
    ]


def test_triton_config_of_the_nms_outputs(trt: ModuleType) -> None:
    """config.pbtxt from the network's outputs: the four, their dims past the batch and int32/float32."""
    report = nms_network_report(trt, "default", "1:2:4")
    config = parse_config(triton_config("yolo", report))
    assert config["max_batch_size"] == 4 and config["preferred"] == ["2"]
    assert config["tensors"] == [
        ("x", "TYPE_FP32", [3, SIZE, SIZE]),
        ("num_dets", "TYPE_INT32", [1]),
        ("det_boxes", "TYPE_FP32", [300, 4]),
        ("det_scores", "TYPE_FP32", [300]),
        ("det_classes", "TYPE_INT32", [300]),
    ]


def test_build_and_triton_nms_build_or_say_why_not(
    trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nms_kind default: an engine with the four outputs where TensorRT has an INMSLayer implementation;
    elsewhere (TensorRT-RTX without a GPU) exit 1, one line naming why and the way that works."""
    from torch_mish.tensorrt.support import nms_engine_unavailable_reason

    reason = nms_engine_unavailable_reason()
    common = ["yolov4-tiny", "--image-size", str(SIZE), "--nms", "--nms-kind", "default", "--json", "-q"]
    build = ["build", *common, "-o", str(tmp_path / "t.plan"), "--report", str(tmp_path / "r.json")]
    triton = ["triton", *common, "-o", str(tmp_path / "repo"), "--name", "yolo"]
    for argv in (build, triton):
        code, report, err = run(argv, capsys)
        if reason is None:
            assert code == 0, err
            assert [o["name"] for o in report["outputs"]] == list(OUTPUT_NAMES)
            continue
        assert code == 1 and reason in err and "torch-mish export --nms" in err, err
        assert len(err.strip().splitlines()) == 1 and files(tmp_path) == set()


def test_diou_kinds_where_tensorrt_has_no_plugin_layers(
    trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cfg's greedynms: inspect names --nms-kind default, which converts here (exit 2); build exits 1
    where this host cannot build that either. Where TensorRT can add plugin layers, the network has the
    DarknetNMS plugin layer."""
    from torch_mish.tensorrt.support import can_add_plugin_layers, nms_engine_unavailable_reason

    inspect = ["inspect", "yolov4-tiny", "--image-size", str(SIZE), "--nms", "--json", "-q"]
    code, report, err = run(inspect, capsys)
    if can_add_plugin_layers():
        assert code == 0, err
        assert report["layer_types"].get("PLUGIN_V3") == 1 and "NMS" not in report["layer_types"]
        return
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "nms_kind=greedynms (the cfg's" in err and "cannot add plugin layers" in err
    assert "--nms-kind default converts here" in err
    build = [
        "build",
        "yolov4-tiny",
        "--image-size",
        str(SIZE),
        "--nms",
        "--nms-kind",
        "diounms",
        "-o",
        str(tmp_path / "t.plan"),
    ]
    code, _, err = run(build, capsys)
    assert re.search(r"--nms-kind diounms lowers to the DarknetNMS plugin layer", err), err
    assert code == (1 if nms_engine_unavailable_reason() else 2) and files(tmp_path) == set()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["export", "yolov4-tiny", "--conf", "0.3", "-o", "{tmp}/o.onnx"],
            "--conf: these set the detection NMS; add --nms",
        ),
        (["export", "yolov4-tiny", "--nms", "--iou", "1.5", "-o", "{tmp}/o.onnx"], "--iou 1.5: a threshold in [0, 1]"),
        (
            ["export", "cli.helpers:small_model", "--nms", "-o", "{tmp}/o.pt2"],
            "cli.helpers:small_model: Detector: Sequential has no [yolo]",
        ),
        (["build", "{tmp}/m.onnx", "--nms", "-o", "{tmp}/o.plan"], "outputs were fixed at export"),
        (["inspect", "{tmp}/m.plan", "--nms"], "an engine's outputs were fixed when it was built"),
        (
            ["export", "yolov4-tiny", "--nms", "--beta-nms", "-1", "-o", "{tmp}/o.onnx"],
            "--beta-nms -1: a finite exponent",
        ),
    ],
)
def test_bad_nms_flags(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("m.onnx", "m.plan"):
        (tmp_path / name).write_bytes(b"")
    before = files(tmp_path)
    code, _, err = run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert files(tmp_path) == before
