"""The torch_mish::DarknetNMS ONNX node (the DIoU kinds' export) for TensorRT's ONNX parser with the
plugin library. The parser finds the creator by op type, plugin_version and plugin_namespace, and
passes each attribute whose name the creator lists as a field typed by the attribute (FLOAT ->
kFLOAT32, INT -> kINT32, STRING -> kCHAR with its NUL); attributes it does not list are left out.
On the CPU: that mapping applied to the exported node makes the plugin, with the op's arguments. With
a TensorRT that can add plugin layers: the parser itself; with a runtime: the engine against the op."""

from __future__ import annotations

import ctypes
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorrt_helpers import random_rows
from test_nms_plugin import BUILD, FIELD_CHAR, FIELD_FLOAT32, FIELD_INT32, decode

if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
    pytest.skip("onnx and onnxscript are needed (pip install torch_mish[onnx])", allow_module_level=True)

import onnx

NET = (640.0, 480.0)
EXPORTERS = [pytest.param(True, id="dynamo"), pytest.param(False, id="torchscript")]
OUTPUTS = ["num_dets", "det_boxes", "det_scores", "det_classes"]


class Nms(torch.nn.Module):
    def __init__(self, kind: str, conf: float = 0.3, iou: float = 0.5, max_det: int = 40, beta: float = 0.8) -> None:
        super().__init__()
        self.args = (conf, iou, max_det, kind, beta, *NET)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.mish.darknet_nms(rows, *self.args)


def export(model: torch.nn.Module, rows: torch.Tensor, path: Path, dynamo: bool) -> onnx.ModelProto:
    kwargs: dict = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=8)},)} if dynamo else {}
    if not dynamo:
        kwargs["dynamic_axes"] = {"rows": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (rows,), str(path), dynamo=dynamo, opset_version=18, input_names=["rows"], output_names=OUTPUTS,
            external_data=False, **kwargs,
        )  # fmt: skip
    return onnx.load(str(path))


def parser_fields(node: onnx.NodeProto, creator_fields: list[tuple[str, int]]) -> list[tuple]:
    """The plugin fields TensorRT's ONNX parser makes from ``node`` (onnx-tensorrt's loadFields): the
    creator's fields in its order, those the node has as attributes, typed by the attribute."""
    attrs = {a.name: a for a in node.attribute}
    fields = []
    for name, _ in creator_fields:
        if name not in attrs:
            continue  # the parser warns and leaves the default to the creator
        a = attrs[name]
        if a.type == onnx.AttributeProto.FLOAT:
            fields.append((name, FIELD_FLOAT32, ctypes.pointer(ctypes.c_float(a.f)), 1))
        elif a.type == onnx.AttributeProto.INT:
            fields.append((name, FIELD_INT32, ctypes.pointer(ctypes.c_int32(a.i)), 1))
        elif a.type == onnx.AttributeProto.STRING:
            raw = a.s + b"\0"
            fields.append((name, FIELD_CHAR, ctypes.create_string_buffer(raw, len(raw)), len(raw)))
        else:
            raise AssertionError(f"attribute {name} of type {a.type}: the parser does not pass it to a plugin")
    return fields


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
def test_node_maps_onto_the_plugin_creator(harness, kind: str, dynamo: bool, tmp_path: Path, gen) -> None:  # noqa: ANN001
    from torch_mish import _plugin_identity as plugin  # not torch_mish.tensorrt: no torch-tensorrt needed

    model = Nms(kind)
    onnx_model = export(model, random_rows(2, 60, 3, gen), tmp_path / "nms.onnx", dynamo)
    (node,) = [n for n in onnx_model.graph.node if n.domain == plugin.PLUGIN_NAMESPACE]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == plugin.NMS_PLUGIN_NAME
    assert attrs["plugin_version"].decode() == plugin.NMS_PLUGIN_VERSION
    assert attrs["plugin_namespace"].decode() == plugin.PLUGIN_NAMESPACE
    creator = harness.creator(node.op_type)
    creator_fields = harness.creator_fields(creator)
    # Every other attribute is a creator field of the type the parser will give it.
    parser_type = {onnx.AttributeProto.FLOAT: FIELD_FLOAT32, onnx.AttributeProto.INT: FIELD_INT32}
    parser_type[onnx.AttributeProto.STRING] = FIELD_CHAR
    expected_types = dict(creator_fields)
    for a in node.attribute:
        if a.name not in ("plugin_version", "plugin_namespace"):
            assert parser_type.get(a.type) == expected_types.get(a.name), f"attribute {a.name}"
    p = harness.create_with(creator, BUILD, parser_fields(node, creator_fields))
    assert p, harness.take_log()
    values = decode(harness.serialized_fields(p))
    harness.lib.h_destroy(p)
    conf, iou, max_det, _, beta, width, height = model.args
    f32 = [float(np.float32(v)) for v in (conf, iou, beta, width, height)]
    assert values == {
        "format_version": 1,
        "conf_thresh": f32[0],
        "iou_thresh": f32[1],
        "max_det": max_det,
        "kind": kind.encode() + b"\0",
        "beta": f32[2],
        "net_width": f32[3],
        "net_height": f32[4],
    }


def parse(trt, data: bytes):  # noqa: ANN001, ANN201
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(data)
    errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
    return builder, network, parser, ok, errors


@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
def test_node_parses_into_the_plugin_layer(plugin_layers, plugin_library, kind: str, tmp_path: Path, gen) -> None:  # noqa: ANN001
    """TensorRT's parser imports the node as one DarknetNMS layer, after load_plugin(); the engine builds."""
    trt = plugin_layers
    export(Nms(kind), random_rows(2, 60, 3, gen), tmp_path / "nms.onnx", True)
    builder, network, _parser, ok, errors = parse(trt, (tmp_path / "nms.onnx").read_bytes())
    assert ok and not errors, errors
    kinds = [network.get_layer(i).type for i in range(network.num_layers)]
    assert kinds.count(trt.LayerType.PLUGIN_V3) == 1 and trt.LayerType.NMS not in kinds
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("rows", (1, 60, 8), (2, 60, 8), (8, 60, 8))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
def test_parsed_engine_matches_the_op(
    trt_runtime,
    plugin_layers,
    plugin_library,
    kind: str,
    tmp_path: Path,
    gen,  # noqa: ANN001
) -> None:
    """Parsed, built and run: the op's CUDA outputs, bit for bit (the plugin runs the op's launcher)."""
    trt = trt_runtime
    model = Nms(kind)
    rows = random_rows(3, 60, 3, gen, NET)
    export(model, rows, tmp_path / "nms.onnx", True)
    builder, network, _parser, ok, errors = parse(trt, (tmp_path / "nms.onnx").read_bytes())
    assert ok, errors
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("rows", (1, 60, 8), (3, 60, 8), (8, 60, 8))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    context = engine.create_execution_context()
    x = rows.cuda()
    expected = model(x)
    got = [torch.empty_like(e) for e in expected]
    context.set_input_shape("rows", tuple(x.shape))
    context.set_tensor_address("rows", x.data_ptr())
    for name, tensor in zip(OUTPUTS, got, strict=True):
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    for name, e, g in zip(OUTPUTS, expected, got, strict=True):
        assert torch.equal(g, e), name
