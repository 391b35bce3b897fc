"""ONNX export (dynamo and TorchScript exporters) run in onnxruntime; saved ExportedPrograms in a
fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import torch_mish
from torch_mish.models import YOLOv4CSP

onnx = pytest.importorskip("onnx", reason="onnx is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnxscript", reason="onnxscript is not installed")
import torch_mish.onnx as mish_onnx  # noqa: E402


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        torch_mish.Mish(),
        nn.Conv2d(8, 4, 1),
        torch_mish.Mish(inplace=True),
    ).eval()


def run_onnx(path, x: torch.Tensor) -> list:  # noqa: ANN001
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_export_writes_standard_mish_and_runs(tmp_path, dynamo: bool, gen: torch.Generator) -> None:  # noqa: ANN001
    model = small_model()
    x = torch.randn(2, 3, 16, 16, generator=gen) * 3
    path = tmp_path / "m.onnx"
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=8)
        mish_onnx.export(model, (x,), path, dynamic_shapes=({0: batch},))
    else:
        mish_onnx.export(model, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Mish") == 2, ops  # the in-place Mish too
    assert not [n for n in graph.node if n.domain not in ("", "ai.onnx")]
    x5 = torch.randn(5, 3, 16, 16, generator=gen) * 3
    with torch.no_grad():
        expected = model(x5)
    (got,) = run_onnx(path, x5)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


def test_plugin_export_writes_torchmish_nodes(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "p.onnx"
    mish_onnx.export(small_model(), (torch.randn(1, 3, 16, 16),), path, plugin=True)
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "TorchMish"]
    assert len(nodes) == 2 and all(n.domain == "torch_mish" for n in nodes)
    attrs = {a.name: a.s.decode() for a in nodes[0].attribute}
    assert attrs == {"plugin_version": "1", "plugin_namespace": "torch_mish"}


def test_export_refuses_old_opsets_and_plugin_with_torchscript(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="opset >= 18"):
        mish_onnx.export(small_model(), (torch.randn(1, 3, 8, 8),), tmp_path / "x.onnx", opset=17)
    with pytest.raises(ValueError, match="dynamo exporter"):
        mish_onnx.export(small_model(), (torch.randn(1, 3, 8, 8),), tmp_path / "x.onnx", plugin=True, dynamo=False)


def test_exported_program_reloads_in_fresh_process(tmp_path, gen: torch.Generator) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = YOLOv4CSP(width=0.0625, depth=0.34, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64, generator=gen)
    ep = torch.export.export(model, (x,))
    torch.export.save(ep, tmp_path / "yolo.pt2")
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x)
    script = textwrap.dedent(f"""
        import torch, torch_mish
        program = torch.export.load({str(tmp_path / "yolo.pt2")!r})
        targets = {{n.target for n in program.graph.nodes}}
        assert torch.ops.mish.mish.default in targets
        torch.save(program.module()(torch.load({str(tmp_path / "x.pt")!r})), {str(tmp_path / "y.pt")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for got, exp in zip(torch.load(tmp_path / "y.pt"), expected, strict=True):
        torch.testing.assert_close(got, exp, rtol=0, atol=0)
