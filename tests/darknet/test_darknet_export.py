"""A Darknet model with the rest of torch_mish: convert_mish (a no-op), fuse_batchnorm_mish for
training, torch.export, TorchScript tracing, ONNX in onnxruntime, and TensorRT coverage on the CPU
(decode included: the eval graph ends in the decoded detections)."""

from __future__ import annotations

import copy
import importlib.util
import warnings

import pytest
import torch

import torch_mish
from torch_mish.darknet import Darknet, packaged_cfg

SIZE = 64


def model(name: str) -> Darknet:
    torch.manual_seed(0)
    m = Darknet(packaged_cfg(name))
    # random BatchNorm statistics, so eval-mode BatchNorm is not the identity
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def csp() -> Darknet:
    return model("yolov4-csp").eval()


@pytest.fixture(scope="module")
def tiny() -> Darknet:
    return model("yolov4-tiny").eval()


def mish_nodes(graph: torch.fx.Graph) -> int:
    return sum(n.op == "call_function" and n.target == torch.ops.mish.mish.default for n in graph.nodes)


def test_convert_mish_is_a_no_op(csp: Darknet, gen: torch.Generator) -> None:
    before = dict(csp.named_modules())
    converted = torch_mish.convert_mish(csp)
    assert converted is csp and dict(csp.named_modules()) == before
    assert sum(isinstance(m, torch_mish.Mish) for m in csp.modules()) == 112


def test_fuse_batchnorm_mish_trains_the_same(gen: torch.Generator) -> None:
    plain = model("yolov4-csp").train()
    fused = torch_mish.fuse_batchnorm_mish(copy.deepcopy(plain))
    assert sum(isinstance(m, torch_mish.BatchNormMish) for m in fused.modules()) == 112
    x = torch.rand(2, 3, 32, 32, generator=gen)
    out_plain, out_fused = plain(x), fused(x)
    for a, b in zip(out_plain, out_fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    sum(t.square().mean() for t in out_plain).backward()
    sum(t.square().mean() for t in out_fused).backward()
    grads = dict(fused.named_parameters())
    for name, p in plain.named_parameters():
        # float32 sums in another order through ~150 layers: compare each gradient as a whole
        error = (grads[name].grad - p.grad).norm() / p.grad.norm().clamp_min(1e-12)
        assert error < 1e-3, f"{name}: relative error {error:.2e}"
    buffers = dict(fused.named_buffers())
    for name, b in plain.named_buffers():
        torch.testing.assert_close(buffers[name], b, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(("name", "mish"), [("yolov4-csp", 112), ("yolov4-tiny", 0)])
def test_torch_export_one_graph_with_mish(name: str, mish: int, csp, tiny, gen: torch.Generator) -> None:  # noqa: ANN001
    m = csp if name == "yolov4-csp" else tiny
    x = torch.rand(1, 3, SIZE, SIZE, generator=gen)
    ep = torch.export.export(m, (x,))
    assert mish_nodes(ep.graph) == mish
    x2 = torch.rand(1, 3, SIZE, SIZE, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x2), m(x2))


def test_torchscript_trace(tiny: Darknet, gen: torch.Generator) -> None:
    x = torch.rand(2, 3, SIZE, SIZE, generator=gen)
    with torch.no_grad(), warnings.catch_warnings():
        # newer torch deprecates TorchScript with a FutureWarning, older releases (2.11) do not
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(tiny, x)
        x2 = torch.rand(2, 3, SIZE, SIZE, generator=gen)
        torch.testing.assert_close(traced(x2), tiny(x2))


def test_onnx_in_onnxruntime(csp: Darknet, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx, onnxscript and onnxruntime are not installed (pip install torch_mish[onnx])")
    import onnx
    import onnxruntime as ort

    import torch_mish.onnx

    x = torch.rand(1, 3, SIZE, SIZE, generator=gen)
    path = str(tmp_path / "csp.onnx")
    torch_mish.onnx.export(csp, (x,), path)
    assert sum(n.op_type == "Mish" for n in onnx.load(path).graph.node) == 112
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = csp(x)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "lowering"),
    [("yolov4-tiny", "native"), ("yolov4-csp", "native"), ("yolov4-csp", "plugin")],
)
def test_tensorrt_full_coverage_one_engine(name: str, lowering: str, trt, tmp_path, csp, tiny) -> None:  # noqa: ANN001
    import torch_tensorrt

    from torch_mish.tensorrt.inspect import dry_run
    from torch_mish.tensorrt.support import can_add_plugin_layers

    if lowering == "plugin" and not can_add_plugin_layers():
        pytest.skip(f"needs full TensorRT: {trt.__name__} {trt.__version__} cannot add plugin layers to a network")
    m = csp if name == "yolov4-csp" else tiny
    inputs = [torch_tensorrt.Input(shape=(1, 3, SIZE, SIZE), dtype=torch.float32)]
    report = dry_run(m, inputs, str(tmp_path / "report.txt"), lowering=lowering)
    assert report.coverage == 100.0 and report.engines == 1, report.text
