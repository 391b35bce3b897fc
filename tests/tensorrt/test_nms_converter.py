"""torch_mish.tensorrt.nms: the TensorRT network the darknet_nms converter builds, on the CPU with
TensorRT-RTX. kind 'default': the layers around INMSLayer, their parameters read back, and the whole
network evaluated layer by layer (network_eval) against the op; Detectors of yolov4-tiny and yolov4-csp
convert completely into one engine. The DIoU kinds: one DarknetNMS plugin layer where TensorRT can
add plugin layers, a clear error where it cannot (TensorRT-RTX). Nothing here runs an engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from network_eval import evaluate
from tensorrt_helpers import plugin_layer_count, random_rows
from torch import nn

from torch_mish.darknet import Darknet, Detector, packaged_cfg

NET = (608.0, 416.0)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


class Nms(nn.Module):
    """darknet_nms on rows given as the input: the converter alone in a network."""

    def __init__(self, kind: str = "default", conf: float = 0.25, iou: float = 0.45, max_det: int = 50) -> None:
        super().__init__()
        self.args = (conf, iou, max_det, kind, 0.75, *NET)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.mish.darknet_nms(rows, *self.args)


def rows_input(batch: int, num_rows: int, classes: int, dtype: torch.dtype = torch.float32, dynamic: bool = True):  # noqa: ANN201
    import torch_tensorrt

    shape = (num_rows, 5 + classes)
    if not dynamic:
        return torch_tensorrt.Input(shape=(batch, *shape), dtype=dtype)
    return torch_tensorrt.Input(min_shape=(1, *shape), opt_shape=(2, *shape), max_shape=(8, *shape), dtype=dtype)


def layers_of(network) -> list:  # noqa: ANN001
    return [network.get_layer(i) for i in range(network.num_layers)]


def producer(network, tensor):  # noqa: ANN001, ANN201
    """The layer whose output ``tensor`` is."""
    for layer in layers_of(network):
        if any(layer.get_output(j).name == tensor.name for j in range(layer.num_outputs)):
            return layer
    raise AssertionError(f"no layer produces {tensor.name}")


def constant_value(trt, network, tensor) -> np.ndarray:  # noqa: ANN001
    layer = producer(network, tensor)
    assert layer.type == trt.LayerType.CONSTANT, f"{tensor.name} comes from {layer.type}, not a constant"
    layer.__class__ = trt.IConstantLayer
    return np.array(layer.weights).reshape(tuple(layer.shape))


# The layers the 'default' lowering adds, in order (constants left out): the pre-filters and
# relative boxes, INMSLayer, the scatter of the selected scores, TopK, and the four outputs (after a
# CAST to float32 for float16 and bfloat16 rows).
DEFAULT_LAYERS = [
    "GATHER", "GATHER", "GATHER", "ELEMENTWISE", "ELEMENTWISE", "SELECT", "ELEMENTWISE", "NMS",
    "GATHER", "GATHER", "ELEMENTWISE", "GATHER", "ELEMENTWISE", "CONCATENATION", "SHUFFLE", "GATHER", "SHAPE",
    "GATHER", "CONCATENATION", "FILL", "SCATTER", "TOPK", "ELEMENTWISE", "ELEMENTWISE", "ELEMENTWISE",
    "ELEMENTWISE", "ELEMENTWISE", "GATHER", "GATHER", "ELEMENTWISE", "GATHER", "ELEMENTWISE", "ELEMENTWISE",
    "CONCATENATION", "SHUFFLE", "SELECT", "SELECT", "CAST", "REDUCE",
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_network_structure(trt, dtype: torch.dtype) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import build_network
    from torch_mish.tensorrt.nms import NMS_TOPK_BOX_LIMIT

    conf, iou, k = 0.3, 0.55, 37
    built = build_network(Nms(conf=conf, iou=iou, max_det=k), rows_input(2, 120, 4, dtype))
    network = built.network  # valid while `built` holds the weights
    kinds = [str(layer.type).rsplit(".", 1)[-1] for layer in layers_of(network)]
    cast = ["CAST"] if dtype != torch.float32 else []
    assert [t for t in kinds if t != "CONSTANT"] == cast + DEFAULT_LAYERS
    assert plugin_layer_count(trt, network) == 0
    (nms,) = [layer for layer in layers_of(network) if layer.type == trt.LayerType.NMS]
    nms.__class__ = trt.INMSLayer
    assert nms.bounding_box_format == trt.BoundingBoxFormat.CENTER_SIZES
    assert nms.topk_box_limit == NMS_TOPK_BOX_LIMIT == 5000  # TensorRT's largest (NvInfer.h)
    assert constant_value(trt, network, nms.get_input(2)) == k  # max boxes per class
    assert constant_value(trt, network, nms.get_input(3)) == np.float32(iou)
    assert constant_value(trt, network, nms.get_input(4)) == np.float32(conf)
    assert nms.get_input(0).dtype == nms.get_input(1).dtype == trt.float32  # compared in float32, as the op
    boxes = producer(network, nms.get_input(0))  # centre/size divided by the network size, as darknet
    boxes.__class__ = trt.IElementWiseLayer
    assert boxes.op == trt.ElementWiseOperation.DIV
    np.testing.assert_array_equal(constant_value(trt, network, boxes.get_input(1)).ravel(), [*NET, *NET])
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    assert [tuple(o.shape) for o in outputs] == [(-1, 1), (-1, k, 4), (-1, k), (-1, k)]
    assert [o.dtype for o in outputs] == [trt.int32, trt.float32, trt.float32, trt.int32]


CASES = [  # (batch, rows, classes, max_det)
    (2, 300, 3, 50),
    (3, 17, 1, 40),  # fewer (row, class) pairs than max_det: TopK over zero padding
    (2, 1000, 5, 7),  # more detections than max_det
    (1, 2535, 80, 300),  # yolov4-tiny at 416
    (4, 10, 2, 30),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_default_network_computes_the_op(trt, case, dtype: torch.dtype, gen) -> None:  # noqa: ANN001
    """The network, evaluated layer by layer from its read-back parameters (INMSLayer by TensorRT's
    documented semantics), gives the op's outputs exactly on random rows (no IoU within rounding of
    the threshold, fewer candidates than the TopK box limit: where the two NMS agree)."""
    from torch_mish.tensorrt.inspect import build_network

    batch, num_rows, classes, k = case
    rows = random_rows(batch, num_rows, classes, gen, NET).to(dtype)
    model = Nms(max_det=k)
    built = build_network(model, rows_input(batch, num_rows, classes, dtype))
    network = built.network  # valid while `built` holds the weights
    got = evaluate(trt, network, {network.get_input(0).name: rows.float().numpy()})
    expected = model(rows)
    for i, (name, e) in enumerate(zip(("num_dets", "det_boxes", "det_scores", "det_classes"), expected, strict=True)):
        g = torch.from_numpy(got[network.get_output(i).name])
        assert g.dtype == e.dtype and torch.equal(g, e), f"{name}: network {g} != op {e}"
    assert int(expected[0].min()) > 0, "the case should produce detections"


@pytest.fixture(scope="module")
def tiny() -> Darknet:
    torch.manual_seed(0)
    return Darknet(packaged_cfg("yolov4-tiny")).eval()


@pytest.fixture(scope="module")
def csp() -> Darknet:
    torch.manual_seed(0)
    return Darknet(packaged_cfg("yolov4-csp")).eval()


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov4-csp"])
def test_detector_default_converts_into_one_engine(trt, name: str, tiny, csp, tmp_path) -> None:  # noqa: ANN001
    """Coverage 100 %, one TensorRT engine, no fallback: the network holds the model and the NMS."""
    import torch_tensorrt

    from torch_mish.tensorrt.inspect import dry_run

    det = Detector(tiny if name == "yolov4-tiny" else csp, nms_kind="default", max_det=100)
    spec = torch_tensorrt.Input(min_shape=(1, 3, 64, 64), opt_shape=(2, 3, 64, 64), max_shape=(4, 3, 64, 64))
    report = dry_run(det, [spec], tmp_path / "report.txt")
    assert report.coverage == 100.0 and report.engines == 1 and report.fully_converted, report.text
    network = report.network.network
    assert sum(network.get_layer(i).type == trt.LayerType.NMS for i in range(network.num_layers)) == 1
    assert [tuple(network.get_output(i).shape) for i in range(4)] == [(-1, 1), (-1, 100, 4), (-1, 100), (-1, 100)]


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov4-csp"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_detector_default_engine_builds(trt, name: str, dynamic: bool, tiny, csp) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.support import nms_engine_unavailable_reason

    reason = nms_engine_unavailable_reason()
    if reason:
        pytest.skip(f"no TensorRT that builds INMSLayer engines here: {reason}")
    import torch_tensorrt

    from torch_mish.tensorrt.inspect import build_network

    shape = (2, 3, 64, 64)
    spec = (
        torch_tensorrt.Input(min_shape=(1, 3, 64, 64), opt_shape=shape, max_shape=(4, 3, 64, 64))
        if dynamic
        else torch_tensorrt.Input(shape=shape)
    )
    built = build_network(Detector(tiny if name == "yolov4-tiny" else csp, nms_kind="default"), [spec])
    assert len(built.build_serialized_engine()) > 10_000


def test_diou_kinds_refuse_clearly_without_plugin_layers(trt, tiny) -> None:  # noqa: ANN001
    """Where the network API cannot take plugin layers (TensorRT-RTX), a DIoU kind is an error that
    says why and names nms_kind="default", saying its detections differ from darknet's."""
    from torch_mish.tensorrt.inspect import build_network, dry_run
    from torch_mish.tensorrt.plugin import PluginUnavailableError
    from torch_mish.tensorrt.support import can_add_plugin_layers

    if can_add_plugin_layers():
        pytest.skip(f"{trt.__name__} {trt.__version__} can add plugin layers: covered by the plugin network test")
    for kind in ("greedynms", "diounms"):
        with pytest.raises(PluginUnavailableError) as info:
            build_network(Nms(kind), rows_input(2, 30, 3))
        message = str(info.value)
        assert f"kind '{kind}'" in message and "cannot add plugin layers" in message, message
        assert 'nms_kind="default"' in message and "differ from darknet's" in message, message
    # The Detector of a cfg that asks for greedynms (yolov4-tiny), through the dry run users call.
    import torch_tensorrt

    det = Detector(tiny)
    assert det.nms_kind == "greedynms"
    with pytest.raises(PluginUnavailableError, match=r'greedynms.*nms_kind="default"'):
        dry_run(det, [torch_tensorrt.Input(shape=(1, 3, 64, 64))])


@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_diou_kinds_lower_to_one_plugin_layer(plugin_layers, plugin_library, kind: str, dtype: torch.dtype) -> None:  # noqa: ANN001
    trt = plugin_layers
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(Nms(kind, max_det=21), rows_input(2, 120, 4, dtype))
    network = built.network
    assert plugin_layer_count(trt, network) == 1
    assert not any(network.get_layer(i).type == trt.LayerType.NMS for i in range(network.num_layers))
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    assert [tuple(o.shape) for o in outputs] == [(-1, 1), (-1, 21, 4), (-1, 21), (-1, 21)]
    assert [o.dtype for o in outputs] == [trt.int32, trt.float32, trt.float32, trt.int32]
    assert len(built.build_serialized_engine()) > 1_000


# --- what the validator admits ------------------------------------------------------------------


def nms_node(model: nn.Module, rows: torch.Tensor, dynamic_shapes: object = None):  # noqa: ANN201
    program = torch.export.export(model, (rows,), dynamic_shapes=dynamic_shapes)
    (node,) = [n for n in program.graph.nodes if n.target == torch.ops.mish.darknet_nms.default]
    return node


def settings(**kw: object):  # noqa: ANN201
    from torch_tensorrt.dynamo import CompilationSettings

    import torch_mish

    with torch_mish.allow_tensorrt_without_gpu():  # CompilationSettings asks for the current GPU
        return CompilationSettings(**kw)


def test_validator_admits_what_the_lowerings_build(trt, gen) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.nms import TOPK_MAX_K, nms_validator, unsupported_reason

    rows = random_rows(2, 40, 3, gen)
    plain = settings()
    for dtype in DTYPES:
        assert nms_validator(nms_node(Nms(), rows.to(dtype)), plain)
    double = nms_node(Nms(), rows.double())
    assert "float64 converts with truncate_double=True" in unsupported_reason(double, plain)
    assert nms_validator(double, settings(truncate_double=True))
    batch = torch.export.Dim("batch", min=1, max=8)
    assert nms_validator(nms_node(Nms(), rows, ({0: batch},)), plain)
    many = torch.export.Dim("rows", min=2, max=4000)
    assert "R and classes fixed" in unsupported_reason(nms_node(Nms(), rows, ({1: many},)), plain)
    assert nms_validator(nms_node(Nms(max_det=TOPK_MAX_K), rows), plain)
    assert "TopK returns at most 3840" in unsupported_reason(nms_node(Nms(max_det=TOPK_MAX_K + 1), rows), plain)


def test_validator_leaves_diou_to_pytorch_without_the_plugin(trt, gen, monkeypatch) -> None:  # noqa: ANN001
    """On a TensorRT that can add plugin layers but has no DarknetNMS creator registered (a build
    without its headers), the DIoU kinds stay in PyTorch, saying why; on one that cannot add plugin
    layers they are admitted, so the converter's error reaches the user."""
    from torch_mish.tensorrt import nms

    node = nms_node(Nms("diounms"), random_rows(1, 40, 3, gen))
    monkeypatch.setattr(nms, "can_add_plugin_layers", lambda: True)
    monkeypatch.setattr(nms, "_nms_creator_ready", lambda: False)
    assert "needs the DarknetNMS TensorRT plugin, which is not registered" in nms.unsupported_reason(node)
    monkeypatch.setattr(nms, "_nms_creator_ready", lambda: True)
    assert nms.nms_validator(node)
    monkeypatch.setattr(nms, "can_add_plugin_layers", lambda: False)
    monkeypatch.setattr(nms, "_nms_creator_ready", lambda: False)
    assert nms.nms_validator(node)
