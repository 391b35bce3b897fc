"""ONNX export of models that call torch.ops.mish.

``import torch_mish`` registers ``torch.ops.mish.mish`` with both of PyTorch's ONNX exporters, so a
plain ``torch.onnx.export`` (``dynamo=True``, the default, or the TorchScript exporter with
``dynamo=False``) works on a model converted with ``convert_mish``:

- opset 18 and above: the standard ONNX ``Mish`` op (a function op since opset 18): what onnxruntime
  runs and what TensorRT's ONNX parser imports as SOFTPLUS -> TANH -> PROD;
- below 18: ``Mul(x, Tanh(Softplus(x)))``, the same function written out;
- bfloat16 below opset 22 (where ``Mish`` and ``Softplus`` take no bfloat16): computed in float32
  between two Casts.

``torch_mish.onnx.export(..., plugin=True)`` writes ``torch_mish::TorchMish`` nodes instead, which
TensorRT's ONNX parser maps to the torch_mish plugin (register the plugin library first:
``trtexec --dynamicPlugins=...`` or ``torch_mish.tensorrt.load_plugin()``).

The dynamo exporter has no public registry: see ``torch_mish._compat`` for the one used.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from torch_mish import _compat
from torch_mish._plugin_identity import (
    NMS_PLUGIN_NAME,
    NMS_PLUGIN_VERSION,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
)

MISH_OPSET = 18  # ONNX Mish exists from opset 18 on
BFLOAT16_MISH_OPSET = 22  # and takes bfloat16 from opset 22
_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _dynamo_mish(x: Any) -> Any:
    """torch.ops.mish.mish for the dynamo exporter (traced with onnxscript ops at export time)."""
    import onnxscript

    op = onnxscript.opset18
    opset = _compat.requested_onnx_opset() or MISH_OPSET
    dtype = getattr(x, "dtype", None)
    if dtype is not None and int(dtype) == _BFLOAT16 and opset < BFLOAT16_MISH_OPSET:
        y = op.Cast(x, to=_FLOAT)
        y = op.Mish(y) if opset >= MISH_OPSET else op.Mul(y, op.Tanh(op.Softplus(y)))
        return op.Cast(y, to=_BFLOAT16)
    # Written at opset 18; the exporter converts Softplus/Tanh/Mul down to a lower requested opset
    # (it cannot convert Mish down: ONNX has no earlier Mish).
    return op.Mish(x) if opset >= MISH_OPSET else op.Mul(x, op.Tanh(op.Softplus(x)))


def _torchscript_mish(g: Any, x: Any) -> Any:
    """torch.ops.mish.mish for the TorchScript exporter (``dynamo=False``), at the export's opset."""
    dtype = x.type().scalarType() if x.type().kind() == "TensorType" else None
    if dtype == "BFloat16" and g.opset < BFLOAT16_MISH_OPSET:
        y = g.op("Cast", x, to_i=_FLOAT)
        y = g.op("Mish", y) if g.opset >= MISH_OPSET else g.op("Mul", y, g.op("Tanh", g.op("Softplus", y)))
        return g.op("Cast", y, to_i=_BFLOAT16)
    if g.opset >= MISH_OPSET:
        return g.op("Mish", x)
    return g.op("Mul", x, g.op("Tanh", g.op("Softplus", x)))


def register_exporters() -> None:
    """Register torch.ops.mish.mish and mish.darknet_nms with both ONNX exporters (``import torch_mish``
    does this)."""
    # Public API; opset 9 is the TorchScript exporter's oldest, the symbolic picks by g.opset.
    torch.onnx.register_custom_op_symbolic("mish::mish", _torchscript_mish, 9)
    _compat.add_onnx_translation(torch.ops.mish.mish.default, _dynamo_mish)
    # ReduceSum and Unsqueeze with axes as inputs: opset 13 on
    torch.onnx.register_custom_op_symbolic("mish::darknet_nms", _torchscript_darknet_nms, 13)
    _compat.add_onnx_translation(torch.ops.mish.darknet_nms.default, _dynamo_darknet_nms)


# --- the TensorRT plugin node ---------------------------------------------------------------------


# The TensorRT plugin creator's name, version and namespace (torch_mish/_plugin_identity.py): the ONNX op
# type, its domain and its attributes.
PLUGIN_OP = PLUGIN_NAME
PLUGIN_DOMAIN = PLUGIN_NAMESPACE


def _plugin_translation() -> Any:
    import onnxscript
    from onnx.defs import OpSchema

    name, version, namespace = PLUGIN_OP, PLUGIN_VERSION, PLUGIN_DOMAIN
    string = OpSchema.AttrType.STRING
    schema = OpSchema(
        name,
        namespace,
        1,
        inputs=[OpSchema.FormalParameter("X", "T")],
        outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "Mish's dtypes")],
        attributes=[
            OpSchema.Attribute("plugin_version", string, "TensorRT plugin creator version"),
            OpSchema.Attribute("plugin_namespace", string, "TensorRT plugin creator namespace"),
        ],
    )
    node = onnxscript.values.Op(onnxscript.values.Opset(namespace, 1), name, op_schema=schema)

    def mish_plugin(x: Any) -> Any:
        # TensorRT's ONNX parser looks an unknown op up in the plugin registry by its op type, with
        # these two attributes naming the creator's version and namespace.
        return node(x, plugin_version=version, plugin_namespace=namespace)

    return mish_plugin


def export(
    model: torch.nn.Module,
    args: Any = (),
    f: str | os.PathLike[str] | None = None,
    *,
    plugin: bool = False,
    **kwargs: Any,
) -> Any:
    """``torch.onnx.export`` with one addition: ``plugin=True`` writes ``torch_mish::TorchMish`` nodes
    for the TensorRT plugin instead of the standard ``Mish``.

    Every other argument is ``torch.onnx.export``'s, with its meaning (``args`` a tensor or a tuple,
    ``opset_version``, ``dynamic_axes`` or ``dynamic_shapes``, ``input_names``, ``dynamo``, ...);
    an argument it does not know raises its TypeError. Returns what ``torch.onnx.export`` returns.

    One check more than ``torch.onnx.export``: a file written at another opset than ``opset_version``
    raises ValueError. (Torch's dynamo exporter writes opset 18 when its version converter cannot
    take the graph lower, and only logs it; the TorchScript exporter, ``dynamo=False``, writes the
    opsets below 18.)
    """
    if plugin:
        if kwargs.get("dynamo", True) is False:
            raise ValueError(
                "plugin=True needs the dynamo exporter: the TorchScript exporter (dynamo=False) is not supported"
            )
        table = dict(kwargs.pop("custom_translation_table", None) or {})
        table[torch.ops.mish.mish.default] = _plugin_translation()
        kwargs["custom_translation_table"] = table
    result = torch.onnx.export(model, args, f, **kwargs)
    requested = kwargs.get("opset_version")
    if requested is not None:
        written = _written_opset(result, f)
        if written is not None and written != requested:
            if isinstance(f, (str, os.PathLike)):
                os.remove(f)
            raise ValueError(
                f"opset_version={requested} was requested and torch.onnx wrote opset {written} "
                f"(its dynamo exporter could not convert the graph to {requested}; the file was removed); "
                "for opsets below 18 export with dynamo=False"
            )
    return result


def _written_opset(result: Any, f: Any) -> int | None:
    """The default-domain opset of what an export produced: the file, or the returned program; None
    where it cannot be read (the TorchScript exporter runs without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None

    if isinstance(f, (str, os.PathLike)) and os.path.exists(f):
        proto = onnx.load(os.fspath(f), load_external_data=False)
    elif getattr(result, "model_proto", None) is not None:
        proto = result.model_proto
    else:
        return None
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


# --- darknet_nms: the Detector's NMS ----------------------------------------------------------------
#
# torch.ops.mish.darknet_nms exports two ways, chosen by its kind:
# - "default" (IoU): the standard NonMaxSuppression and the ops around it that make the four
#   fixed-size outputs (score filter before, per-image top max_det after). onnxruntime runs it.
# - "greedynms" / "diounms": one torch_mish::DarknetNMS node (no standard op computes darknet's DIoU
#   NMS). TensorRT's ONNX parser maps it to the DarknetNMS plugin of torch_mish's plugin library;
#   onnxruntime has no kernel for it (see check_onnxruntime).

# The DarknetNMS plugin creator's name and version (csrc/trt/plugin_identity.h).
DARKNET_NMS_OP = NMS_PLUGIN_NAME
DARKNET_NMS_VERSION = NMS_PLUGIN_VERSION
DARKNET_NMS_DOMAIN = PLUGIN_NAMESPACE
_INT32 = 6  # onnx.TensorProto.INT32
_INT64 = 7
_INT64_MAX = 2**63 - 1


class _OnnxscriptEmitter:
    """Writes ONNX ops for the dynamo exporter (onnxscript, traced at export time)."""

    def __init__(self) -> None:
        import onnxscript

        self._op = onnxscript.opset18

    def __call__(self, name: str, *inputs: Any, **attrs: Any) -> Any:
        attrs.pop("_outputs", None)  # onnxscript knows each op's outputs
        return getattr(self._op, name)(*inputs, **attrs)

    def ints(self, values: list[int]) -> Any:
        return self._op.Constant(value_ints=values)

    def scalar(self, value: float | int) -> Any:
        return self._op.Constant(value_int=value) if isinstance(value, int) else self._op.Constant(value_float=value)


class _TorchScriptEmitter:
    """Writes ONNX ops for the TorchScript exporter (``dynamo=False``)."""

    def __init__(self, g: Any) -> None:
        self.g = g

    def __call__(self, name: str, *inputs: Any, **attrs: Any) -> Any:
        outputs = attrs.pop("_outputs", 1)
        kinds = {bool: "i", int: "i", float: "f", str: "s"}
        named = {}
        for key, value in attrs.items():
            first = value[0] if isinstance(value, list) else value
            named[f"{key}_{kinds[type(first)]}"] = value
        return self.g.op(name, *inputs, outputs=outputs, **named)

    def ints(self, values: list[int]) -> Any:
        return self.g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def scalar(self, value: float | int) -> Any:
        dtype = torch.int64 if isinstance(value, int) else torch.float32
        return self.g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def _default_nms(
    op: Any, rows: Any, is_float32: bool, conf_thresh: float, iou_thresh: float, max_det: int
) -> tuple[Any, Any, Any, Any]:
    """darknet_nms with kind "default" from standard ops: the op's outputs, computed as it does
    (float32 products and comparisons; ties in score by row, then class, which is TopK's order on
    the flattened row * classes + class index)."""
    x = rows if is_float32 else op("Cast", rows, to=_FLOAT)

    def cols(first: int, last: int, data: Any = x, axis: int = 2) -> Any:
        return op("Slice", data, op.ints([first]), op.ints([last]), op.ints([axis]))

    boxes, objectness, probs = cols(0, 4), cols(4, 5), cols(5, _INT64_MAX)
    conf = op.scalar(float(conf_thresh))
    zero = op.scalar(0.0)
    score = op("Mul", objectness, probs)  # (N, R, C)
    counts = op("And", op("Greater", objectness, conf), op("Greater", score, conf))
    scores = op("Transpose", op("Where", counts, score, zero), perm=[0, 2, 1])  # (N, C, R)
    selected = op(
        "NonMaxSuppression",
        boxes,
        scores,
        op.scalar(int(max_det)),
        op.scalar(float(iou_thresh)),
        conf,
        center_point_box=1,
    )  # (M, 3): image, class, row
    shape = op("Shape", x)
    n, r = cols(0, 1, shape, 0), cols(1, 2, shape, 0)
    c = op("Sub", cols(2, 3, shape, 0), op.ints([5]))
    flat = op("Add", op("Mul", cols(2, 3, selected, 1), c), cols(1, 2, selected, 1))  # row * C + class
    where = op("Concat", cols(0, 1, selected, 1), flat, axis=1)
    rc = op("Mul", r, c)
    dense = op("ConstantOfShape", op("Concat", n, rc, axis=0))  # zeros (N, R * C)
    dense = op("ScatterND", dense, where, op("GatherND", scores, selected))
    k_max = op.ints([int(max_det)])
    k = op("Min", rc, k_max)  # TopK needs k <= R * C; the rest is padded
    top_scores, top_index = op("TopK", dense, k, axis=1, largest=1, sorted=1, _outputs=2)
    pads = op("Concat", op.ints([0, 0, 0]), op("Sub", k_max, k), axis=0)
    top_scores, top_index = op("Pad", top_scores, pads), op("Pad", top_index, pads)
    found = op("ReduceSum", op("Cast", op("Greater", dense, zero), to=_INT64), op.ints([1]), keepdims=1)
    num = op("Min", found, k_max)  # (N, 1)
    valid = op(
        "Less", op("Unsqueeze", op("Range", op.scalar(0), op.scalar(int(max_det)), op.scalar(1)), op.ints([0])), num
    )
    row, cls = op("Div", top_index, c), op("Mod", top_index, c)
    picked = op("GatherND", boxes, op("Unsqueeze", row, op.ints([2])), batch_dims=1)  # (N, K, 4)
    centre, half = cols(0, 2, picked), op("Mul", cols(2, 4, picked), op.scalar(0.5))
    corners = op("Concat", op("Sub", centre, half), op("Add", centre, half), axis=2)
    return (
        op("Cast", num, to=_INT32),
        op("Where", op("Unsqueeze", valid, op.ints([2])), corners, zero),
        op("Where", valid, top_scores, zero),
        op("Cast", op("Where", valid, cls, op.scalar(0)), to=_INT32),
    )


def _darknet_nms_attributes(
    conf_thresh: float, iou_thresh: float, max_det: int, kind: str, beta: float, net_width: float, net_height: float
) -> dict[str, Any]:
    """The torch_mish::DarknetNMS node's attributes: the op's arguments, and the plugin creator's
    version and namespace (TensorRT's ONNX parser looks the op type up in the plugin registry)."""
    return {
        "conf_thresh": float(conf_thresh),
        "iou_thresh": float(iou_thresh),
        "max_det": int(max_det),
        "kind": str(kind),
        "beta": float(beta),
        "net_width": float(net_width),
        "net_height": float(net_height),
        "plugin_version": DARKNET_NMS_VERSION,
        "plugin_namespace": DARKNET_NMS_DOMAIN,
    }


def _darknet_nms_node() -> Any:
    import onnxscript
    from onnx.defs import OpSchema

    attr = OpSchema.AttrType
    types = {"conf_thresh": attr.FLOAT, "iou_thresh": attr.FLOAT, "max_det": attr.INT, "kind": attr.STRING}
    types |= {"beta": attr.FLOAT, "net_width": attr.FLOAT, "net_height": attr.FLOAT}
    types |= {"plugin_version": attr.STRING, "plugin_namespace": attr.STRING}
    schema = OpSchema(
        DARKNET_NMS_OP,
        DARKNET_NMS_DOMAIN,
        1,
        inputs=[OpSchema.FormalParameter("rows", "T")],
        outputs=[
            OpSchema.FormalParameter("num_dets", "tensor(int32)"),
            OpSchema.FormalParameter("det_boxes", "tensor(float)"),
            OpSchema.FormalParameter("det_scores", "tensor(float)"),
            OpSchema.FormalParameter("det_classes", "tensor(int32)"),
        ],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "darknet rows")],
        attributes=[OpSchema.Attribute(name, kind, name) for name, kind in types.items()],
    )
    return onnxscript.values.Op(onnxscript.values.Opset(DARKNET_NMS_DOMAIN, 1), DARKNET_NMS_OP, op_schema=schema)


def _dynamo_darknet_nms(
    rows: Any,
    conf_thresh: float,
    iou_thresh: float,
    max_det: int,
    kind: str = "default",
    beta: float = 0.6,
    net_width: float = 1.0,
    net_height: float = 1.0,
) -> Any:
    """torch.ops.mish.darknet_nms for the dynamo exporter."""
    if kind != "default":
        attrs = _darknet_nms_attributes(conf_thresh, iou_thresh, max_det, kind, beta, net_width, net_height)
        return _darknet_nms_node()(rows, **attrs)
    dtype = getattr(rows, "dtype", None)
    return _default_nms(
        _OnnxscriptEmitter(), rows, dtype is not None and int(dtype) == _FLOAT, conf_thresh, iou_thresh, max_det
    )


def _torchscript_darknet_nms(
    g: Any,
    rows: Any,
    conf_thresh: Any,
    iou_thresh: Any,
    max_det: Any,
    kind: Any,
    beta: Any,
    net_width: Any,
    net_height: Any,
) -> Any:
    """torch.ops.mish.darknet_nms for the TorchScript exporter (``dynamo=False``)."""
    from torch.onnx import symbolic_helper

    values = [
        symbolic_helper._parse_arg(v, t)
        for v, t in zip((conf_thresh, iou_thresh, max_det, kind, beta, net_width, net_height), "ffisfff", strict=True)
    ]
    op = _TorchScriptEmitter(g)
    if values[3] != "default":
        attrs = _darknet_nms_attributes(*values)
        return op(f"{DARKNET_NMS_DOMAIN}::{DARKNET_NMS_OP}", rows, _outputs=4, **attrs)
    dtype = rows.type().scalarType() if rows.type().kind() == "TensorType" else None
    return _default_nms(op, rows, dtype == "Float", values[0], values[1], values[2])


def plugin_nodes(model: Any) -> list[str]:
    """The torch_mish plugin nodes (domain torch_mish: TorchMish, DarknetNMS) of an ONNX model: a
    path or a ModelProto, as ``op_type (node name)``."""
    import onnx

    proto = onnx.load(os.fspath(model), load_external_data=False) if isinstance(model, (str, os.PathLike)) else model
    return [f"{n.op_type} ({n.name})" for n in proto.graph.node if n.domain == PLUGIN_NAMESPACE]


def check_onnxruntime(model: Any) -> None:
    """Raise a ValueError naming the nodes when an ONNX model (path or ModelProto) holds torch_mish
    plugin nodes, which only TensorRT (with torch_mish's plugin library) can run: onnxruntime would
    fail to load it with its own error. A Detector with nms_kind "greedynms" or "diounms" exports
    such a node; nms_kind="default" exports the standard NonMaxSuppression instead (IoU NMS: its
    detections can differ from darknet's DIoU NMS)."""
    found = plugin_nodes(model)
    if found:
        raise ValueError(
            f"this ONNX model has {', '.join(found)}: TensorRT plugin nodes (domain {PLUGIN_NAMESPACE}) that "
            "onnxruntime cannot run. Build a TensorRT engine with torch_mish's plugin library, or export a "
            "Detector with nms_kind='default' (standard NonMaxSuppression, IoU: detections can differ from "
            "darknet's DIoU NMS) and, for Mish, without plugin=True"
        )
