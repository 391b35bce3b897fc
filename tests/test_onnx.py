"""ONNX export (torch_mish.onnx): plain torch.onnx.export with both exporters, at opsets on either
side of 18, run in onnxruntime on fresh inputs; torch_mish.onnx.export called like torch.onnx.export;
the TensorRT plugin node."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import mish_reference
from torch import nn

import torch_mish

onnx = pytest.importorskip("onnx", reason="onnx is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnxscript", reason="onnxscript is not installed")
import torch_mish.onnx as mish_onnx  # noqa: E402

# The dynamo exporter (torch >= 2.9 default) and the TorchScript one (dynamo=False).
EXPORTERS = [pytest.param(True, id="dynamo"), pytest.param(False, id="torchscript")]


class DirectOp(nn.Module):
    """A model that calls the registered operator itself rather than the module."""

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mish.mish(x)
        return y * self.scale if self.scale != 1.0 else y


def conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        torch_mish.Mish(),
        nn.Conv2d(8, 4, 1),
        torch_mish.Mish(inplace=True),
    ).eval()


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def onnx_opset(path: Path) -> int:
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


def assert_standard_domain_only(path: Path) -> None:
    custom = [(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node if n.domain not in ("", "ai.onnx")]
    assert not custom, f"custom-domain nodes in a standard export: {custom}"


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("opset", [17, 18, 22])
@pytest.mark.parametrize("model_fn", [conv_model, DirectOp], ids=["modules", "direct_op"])
def test_plain_torch_onnx_export(tmp_path: Path, dynamo: bool, opset: int, model_fn, gen: torch.Generator) -> None:  # noqa: ANN001
    """``import torch_mish`` is all torch.onnx.export needs: ONNX Mish from opset 18, the
    Softplus -> Tanh -> Mul composition below it, a dynamic batch that onnxruntime honours."""
    model = model_fn().eval()
    n_mish = sum(isinstance(m, torch_mish.Mish) for m in model.modules()) or 1
    x = torch.randn(2, 3, 16, 16, generator=gen) * 4
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (x,), path, dynamo=dynamo, opset_version=opset, input_names=["x"], dynamic_axes={"x": {0: "batch"}}
    )
    ops = op_types(path)
    assert onnx_opset(path) == opset
    if opset >= 18:
        assert ops.count("Mish") == n_mish and "Softplus" not in ops, ops
    else:
        assert "Mish" not in ops and ops.count("Softplus") == ops.count("Tanh") == n_mish, ops
    assert_standard_domain_only(path)
    x3 = torch.randn(3, 3, 16, 16, generator=gen) * 4  # another batch size: the axis is dynamic
    with torch.no_grad():
        expected = model(x3)
    torch.testing.assert_close(run_onnx(path, x3), expected, rtol=1e-5, atol=1e-5)


class MishToFloat(nn.Module):
    """bfloat16 Mish, returned as float32: onnxruntime's Python API cannot hand back bfloat16 arrays."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mish.mish(x).float()


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("opset", [17, 18])
def test_bfloat16_below_opset_22_runs_in_float32(tmp_path: Path, dynamo: bool, opset: int, gen) -> None:  # noqa: ANN001
    """ONNX Mish and Softplus take bfloat16 only from opset 22: below it the export casts around a
    float32 Mish (a bfloat16 Mish node there is an invalid model that onnxruntime rejects)."""
    x = (torch.randn(256, generator=gen) * 4).bfloat16()
    path = tmp_path / "b.onnx"
    torch.onnx.export(MishToFloat().eval(), (x,), path, dynamo=dynamo, opset_version=opset)
    assert op_types(path).count("Cast") >= 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    bits = x.view(torch.int16).numpy().view("uint16")
    feed = {
        session.get_inputs()[0].name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, onnx.TensorProto.BFLOAT16)
    }
    y = torch.from_numpy(session.run_with_ort_values(None, feed)[0].numpy())
    # A float32 Mish rounded once to bfloat16: half a bfloat16 ulp (2**-9 relative) from float64, one ulp
    # (2**-8) where float32's own error moves a value across a rounding boundary.
    torch.testing.assert_close(y.double(), mish_reference(x), rtol=2**-8, atol=1e-30)


def test_wrapper_takes_torch_onnx_export_arguments(tmp_path: Path, gen: torch.Generator) -> None:
    """torch_mish.onnx.export is called like torch.onnx.export: a bare tensor is one input (not split
    along the batch), opset_version and dynamic_axes keep their meaning with the default exporter."""
    model = conv_model()
    x = torch.randn(1, 3, 16, 16, generator=gen)
    path = tmp_path / "w.onnx"
    mish_onnx.export(model, x, path, opset_version=17, input_names=["images"], dynamic_axes={"images": {0: "n"}})
    graph = onnx.load(str(path)).graph
    (inp,) = graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and dims[1:] == [3, 16, 16] and isinstance(dims[0], str), dims
    assert onnx_opset(path) == 17
    x3 = torch.randn(3, 3, 16, 16, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(path, x3), model(x3), rtol=1e-5, atol=1e-5)


def test_wrapper_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(TypeError, match="opset"):  # torch.onnx.export's own refusal of an unknown argument
        mish_onnx.export(conv_model(), (x,), tmp_path / "x.onnx", opset=18)
    with pytest.raises(ValueError, match="dynamo exporter"):
        mish_onnx.export(conv_model(), (x,), tmp_path / "x.onnx", plugin=True, dynamo=False)


def test_wrapper_refuses_a_file_at_another_opset(tmp_path: Path) -> None:
    """torch's dynamo exporter writes opset 18 where its version converter cannot go lower (Mul has no
    adapter to opset 12), and only logs it: the wrapper raises and leaves no file."""
    path = tmp_path / "x.onnx"
    with pytest.raises(ValueError, match="opset_version=12 was requested and torch.onnx wrote opset 18"):
        mish_onnx.export(conv_model(), (torch.randn(1, 3, 8, 8),), path, opset_version=12)
    assert not path.exists()
    mish_onnx.export(conv_model(), (torch.randn(1, 3, 8, 8),), path, opset_version=12, dynamo=False)
    assert onnx_opset(path) == 12 and "Mish" not in op_types(path)


def test_plugin_export_writes_torchmish_nodes(tmp_path: Path) -> None:
    path = tmp_path / "p.onnx"
    mish_onnx.export(conv_model(), torch.randn(1, 3, 16, 16), path, plugin=True)
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == mish_onnx.PLUGIN_OP]
    assert len(nodes) == 2 and all(n.domain == mish_onnx.PLUGIN_DOMAIN for n in nodes)
    assert "Mish" not in op_types(path)
    attrs = {a.name: a.s.decode() for a in nodes[0].attribute}
    assert attrs == {"plugin_version": mish_onnx.PLUGIN_VERSION, "plugin_namespace": mish_onnx.PLUGIN_DOMAIN}
    # The plugin table applies to that call only: the next plain export writes ONNX Mish again.
    torch.onnx.export(conv_model(), (torch.randn(1, 3, 16, 16),), tmp_path / "s.onnx")
    assert op_types(tmp_path / "s.onnx").count("Mish") == 2
