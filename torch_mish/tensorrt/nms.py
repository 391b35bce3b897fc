"""torch-tensorrt converter for darknet's detection NMS (``torch.ops.mish.darknet_nms``).

Two lowerings, picked by the op's ``kind``:

- ``default`` (IoU): TensorRT layers around ``INMSLayer`` (``add_nms``), so it converts on any
  TensorRT, TensorRT-RTX included. Scores are objectness x class probability with darknet's two
  pre-filters (objectness above ``conf_thresh``, then the score above it: the layer's strict score
  threshold); boxes go in as centre/size in units of the network input, as darknet compares them.
  The selected (image, class, row) triples are scattered as their scores into a dense (N, L) tensor
  (L >= R x C), whose TopK ``max_det`` gives the detections sorted by score; rows and classes come
  from the flat index, boxes are gathered and turned into corners, ``num_dets`` counts the positive
  scores, and rows past it are zero. Its detections can differ from darknet's (and from the op's),
  because ``INMSLayer`` is not darknet's NMS:
    * IoU arithmetic: TensorRT computes IoU its own way; a pair whose IoU lies within float rounding
      of ``iou_thresh`` can be decided the other way (both suppress where IoU > threshold);
    * candidate cap: per image only the ``NMS_TOPK_BOX_LIMIT`` best (box, class) candidates enter the
      NMS (the layer's TopK box limit, set here to TensorRT's maximum); darknet considers all. The
      ones left out cannot suppress better boxes, but are missing as detections, which shows when
      fewer than ``max_det`` detections come from the best candidates (low ``conf_thresh``);
    * ties: equal scores are taken in an order TensorRT leaves unspecified (the op: lower row, then
      lower class), which can change which of two equal-scored overlapping boxes survives, and the
      order of equal-scored detections in the output;
    * degenerate boxes: darknet's IoU is 0 when the intersection or the union is 0 (zero-area
      boxes); TensorRT does not document its value there.
  TensorRT-RTX (1.6, 1.7) converts it but cannot build an engine with it on a CPU-only host: it has
  no ``INMSLayer`` implementation there ("NMS has no runners").
- ``greedynms`` and ``diounms`` (DIoU): one ``DarknetNMS`` IPluginV3 layer (csrc/trt), which runs the
  op's own CUDA launcher: the engine's detections are the op's, bit for bit. A TensorRT whose network
  API cannot add plugin layers (TensorRT-RTX) cannot take these kinds: converting them is an error
  that says so and names ``nms_kind="default"`` as the kind that converts there.

Only the batch dimension may be dynamic: the number of rows and classes, and every scalar argument,
must be constants of the exported program.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorrt as trt
import torch
from torch.fx.node import Node, Target
from torch_tensorrt.dynamo import CompilationSettings
from torch_tensorrt.dynamo.conversion import ConversionContext, dynamo_tensorrt_converter
from torch_tensorrt.dynamo.conversion.converter_utils import get_trt_tensor, set_layer_name
from torch_tensorrt.dynamo.types import TRTTensor

from torch_mish.tensorrt import plugin
from torch_mish.tensorrt.support import can_add_plugin_layers, is_tensorrt_rtx

logger = logging.getLogger("torch_mish.tensorrt")

NMS_OP = torch.ops.mish.darknet_nms.default
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DIOU_KINDS = ("greedynms", "diounms")  # lowered to the DarknetNMS plugin
# INMSLayer's TopK box limit may be at most 5000 (2000 on SM 5.3 / 6.2 devices): the largest allowed.
NMS_TOPK_BOX_LIMIT = 5000
# ITopKLayer takes K up to 3840: the most detections per image the `default` lowering can return.
TOPK_MAX_K = 3840


@dataclass(frozen=True)
class NmsArgs:
    """The op's arguments after ``rows``, bound by its schema (defaults filled in)."""

    conf_thresh: float
    iou_thresh: float
    max_det: int
    kind: str
    beta: float
    net_width: float
    net_height: float


_SCALARS = ("conf_thresh", "iou_thresh", "max_det", "kind", "beta", "net_width", "net_height")


def bind_nms_args(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``rows`` and the other arguments by name, as the op's schema binds them."""
    bound: dict[str, Any] = {}
    for i, arg in enumerate(NMS_OP._schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
    return bound.pop("rows"), bound


def constant_args(bound: dict[str, Any]) -> NmsArgs | None:
    """The scalar arguments when all are constants of the graph (not values computed at run time)."""
    if any(isinstance(bound.get(k), Node) or k not in bound for k in _SCALARS):
        return None
    return NmsArgs(
        conf_thresh=float(bound["conf_thresh"]),
        iou_thresh=float(bound["iou_thresh"]),
        max_det=int(bound["max_det"]),
        kind=str(bound["kind"]),
        beta=float(bound["beta"]),
        net_width=float(bound["net_width"]),
        net_height=float(bound["net_height"]),
    )


# --- validator -----------------------------------------------------------------------------------


def nms_validator(node: Node, settings: CompilationSettings | None = None) -> bool:
    """What the lowerings can build; anything else stays in PyTorch with a warning saying why (and
    ``require_full_compilation=True`` turns that into an error). A DIoU kind on a TensorRT without
    plugin layers is admitted: its converter then raises the error that names the alternative."""
    reason = unsupported_reason(node, settings)
    if reason is not None:
        logger.warning("torch.ops.mish.darknet_nms is not converted to TensorRT: %s", reason)
    return reason is None


def unsupported_reason(node: Node, settings: CompilationSettings | None = None) -> str | None:
    """Why the converter cannot take this darknet_nms node, or None."""
    rows, bound = bind_nms_args(node.args, dict(node.kwargs))
    val = rows.meta.get("val") if isinstance(rows, Node) else None
    dtype = getattr(val, "dtype", None)
    truncating = settings is not None and getattr(settings, "truncate_double", False)
    args = constant_args(bound)
    if dtype not in SUPPORTED_DTYPES and not (dtype == torch.float64 and truncating):
        extra = " (float64 converts with truncate_double=True)" if dtype == torch.float64 else ""
        return f"rows of dtype {dtype}{extra}"
    if val is None or val.dim() != 3 or not all(isinstance(d, int) for d in val.shape[1:]):
        return f"rows must be (N, R, 5 + classes) with R and classes fixed, got {getattr(val, 'shape', None)}"
    if args is None:
        return "its scalar arguments must be constants (export with a fixed image size)"
    return _kind_reason(args)


def _kind_reason(args: NmsArgs) -> str | None:
    if args.kind in DIOU_KINDS:
        if can_add_plugin_layers() and not _nms_creator_ready():
            return (
                f"kind {args.kind!r} needs the {plugin.NMS_PLUGIN_NAME} TensorRT plugin, which is not registered "
                "(torch_mish was built without this TensorRT's headers)"
            )
        return None
    if args.kind != "default":
        return f"unknown kind {args.kind!r} (expected 'default', 'greedynms' or 'diounms')"
    if args.max_det > TOPK_MAX_K:
        return f"max_det={args.max_det}: the 'default' lowering's TopK returns at most {TOPK_MAX_K}"
    return None


def _nms_creator_ready() -> bool:
    plugin.load_plugin(missing_ok=True)
    return plugin.nms_plugin_available()


# --- the 'default' lowering: TensorRT layers around INMSLayer ------------------------------------

PROD, SUM, SUB = trt.ElementWiseOperation.PROD, trt.ElementWiseOperation.SUM, trt.ElementWiseOperation.SUB
GREATER = trt.ElementWiseOperation.GREATER


class _Layers:
    """Adds named layers for one conversion (names: ``<name>_<step>``)."""

    def __init__(self, ctx: ConversionContext, target: Target, name: str) -> None:
        self.net, self.target, self.name = ctx.net, target, name
        self.ctx = ctx

    def named(self, layer: trt.ILayer, step: str) -> trt.ILayer:
        set_layer_name(layer, self.target, f"{self.name}_{step}")
        return layer

    def const(self, value: np.ndarray, step: str) -> TRTTensor:
        return get_trt_tensor(self.ctx, value, f"{self.name}_{step}", min_rank=value.ndim)

    def columns(self, x: TRTTensor, first: int, count: int, step: str, axis: int = 2) -> TRTTensor:
        index = self.const(np.arange(first, first + count, dtype=np.int32), f"{step}_index")
        return self.named(self.net.add_gather(x, index, axis), step).get_output(0)

    def binary(self, a: TRTTensor, b: TRTTensor, op: trt.ElementWiseOperation, step: str) -> TRTTensor:
        return self.named(self.net.add_elementwise(a, b, op), step).get_output(0)

    def cast(self, x: TRTTensor, dtype: trt.DataType, step: str) -> TRTTensor:
        return x if x.dtype == dtype else self.named(self.net.add_cast(x, dtype), step).get_output(0)

    def select(self, condition: TRTTensor, then: TRTTensor, otherwise: TRTTensor, step: str) -> TRTTensor:
        return self.named(self.net.add_select(condition, then, otherwise), step).get_output(0)

    def zeros(self, batch: TRTTensor, width: int, step: str) -> TRTTensor:
        """float32 zeros (N, width), N from the shape tensor ``batch`` (1,)."""
        shape = self.named(
            self.net.add_concatenation([batch, self.const(np.array([width], np.int64), f"{step}_width")]),
            f"{step}_shape",
        ).get_output(0)
        fill = self.named(self.net.add_fill((0, 0), trt.FillOperation.LINSPACE, trt.float32), step)
        fill.set_input(0, shape)
        fill.set_input(1, self.const(np.array(0.0, np.float32), f"{step}_start"))
        fill.set_input(2, self.const(np.zeros(2, np.float32), f"{step}_delta"))
        return fill.get_output(0)


def add_nms_default(
    ctx: ConversionContext, target: Target, name: str, rows: TRTTensor, classes: int, num_rows: int, a: NmsArgs
) -> tuple[TRTTensor, TRTTensor, TRTTensor, TRTTensor]:
    """darknet_nms with kind 'default' from TensorRT layers (INMSLayer for the suppression)."""
    L = _Layers(ctx, target, name)
    f32, i32 = trt.float32, trt.int32
    x = L.cast(rows, f32, "rows_float")  # every comparison in float32, as the op makes them
    boxes = L.columns(x, 0, 4, "boxes")  # (N, R, 4) cx, cy, w, h
    objectness = L.columns(x, 4, 1, "objectness")  # (N, R, 1)
    probs = L.columns(x, 5, classes, "probs")  # (N, R, C)
    zero = L.const(np.zeros((1, 1, 1), np.float32), "zero")
    conf = L.const(np.full((1, 1, 1), a.conf_thresh, np.float32), "conf_thresh")
    # darknet: a row is a candidate when its objectness is above conf_thresh; a class's score is
    # objectness * probability (float32), kept above conf_thresh (INMSLayer's score threshold, strict).
    candidate = L.binary(objectness, conf, GREATER, "candidate")
    product = L.binary(objectness, probs, PROD, "score")
    scores = L.select(candidate, product, zero, "scores")  # (N, R, C)
    # darknet compares boxes in units of the network input.
    net_size = np.array([[[a.net_width, a.net_height, a.net_width, a.net_height]]], np.float32)
    relative = L.binary(boxes, L.const(net_size, "net_size"), trt.ElementWiseOperation.DIV, "relative_boxes")

    layer = L.named(ctx.net.add_nms(relative, scores, L.const(np.array(a.max_det, np.int32), "max_per_class")), "nms")
    layer.bounding_box_format = trt.BoundingBoxFormat.CENTER_SIZES
    layer.topk_box_limit = NMS_TOPK_BOX_LIMIT
    layer.set_input(3, L.const(np.array(a.iou_thresh, np.float32), "iou_thresh"))
    layer.set_input(4, L.const(np.array(a.conf_thresh, np.float32), "score_thresh"))
    selected = L.cast(layer.get_output(0), i32, "selected")  # (M, 3): image, class, row

    # The selected scores, scattered into zeros at (image, row * C + class): a dense (N, width) tensor.
    c_const = L.const(np.array([[classes]], np.int32), "classes")
    image = L.columns(selected, 0, 1, "selected_image", axis=1)
    row_offset = L.binary(L.columns(selected, 2, 1, "selected_row", axis=1), c_const, PROD, "selected_row_offset")
    flat = L.binary(row_offset, L.columns(selected, 1, 1, "selected_class", axis=1), SUM, "selected_flat")
    index = L.named(ctx.net.add_concatenation([image, flat]), "scatter_index")
    index.axis = 1
    scores_flat = L.named(ctx.net.add_shuffle(scores), "scores_flat")
    scores_flat.reshape_dims = (0, -1)
    picked = L.named(
        ctx.net.add_gather_v2(scores_flat.get_output(0), index.get_output(0), trt.GatherMode.ND), "selected_scores"
    )
    batch = L.columns(L.named(ctx.net.add_shape(rows), "rows_shape").get_output(0), 0, 1, "batch", axis=0)
    width = max(num_rows * classes, a.max_det)  # TopK needs at least K columns: the padding stays zero
    scatter = ctx.net.add_scatter(
        L.zeros(batch, width, "dense_zeros"), index.get_output(0), picked.get_output(0), trt.ScatterMode.ND
    )
    dense = L.named(scatter, "dense").get_output(0)

    # The max_det best, sorted by score; each index is row * C + class.
    topk = L.named(ctx.net.add_topk(dense, trt.TopKOperation.MAX, a.max_det, 1 << 1), "topk")
    det_scores, flat_index = topk.get_output(0), L.cast(topk.get_output(1), i32, "topk_index")
    valid = L.binary(det_scores, L.const(np.zeros((1, 1), np.float32), "zero_score"), GREATER, "valid")
    det_row = L.binary(flat_index, c_const, trt.ElementWiseOperation.FLOOR_DIV, "det_row")
    det_class = L.binary(flat_index, L.binary(det_row, c_const, PROD, "det_row_offset"), SUB, "det_class")
    # Padding columns (index >= R * C) score zero, never valid: clamp their row to gather in range.
    last_row = L.const(np.array([[num_rows - 1]], np.int32), "last_row")
    det_row = L.binary(det_row, last_row, trt.ElementWiseOperation.MIN, "det_row_clamped")
    gather = L.named(ctx.net.add_gather(boxes, det_row, 1), "det_centre_boxes")
    gather.num_elementwise_dims = 1
    centre = gather.get_output(0)  # (N, K, 4) cx, cy, w, h
    half = L.const(np.full((1, 1, 1), 0.5, np.float32), "half")
    half_size = L.binary(L.columns(centre, 2, 2, "det_size"), half, PROD, "det_half_size")  # exact: w * 0.5
    centre_xy = L.columns(centre, 0, 2, "det_centre")
    low = L.binary(centre_xy, half_size, SUB, "det_corner_low")
    high = L.binary(centre_xy, half_size, SUM, "det_corner_high")
    corners = L.named(ctx.net.add_concatenation([low, high]), "det_corners")
    corners.axis = 2
    valid_3d = L.named(ctx.net.add_shuffle(valid), "valid_3d")
    valid_3d.reshape_dims = (0, 0, 1)
    det_boxes = L.select(valid_3d.get_output(0), corners.get_output(0), zero, "det_boxes")
    det_classes = L.select(valid, det_class, L.const(np.zeros((1, 1), np.int32), "zero_class"), "det_classes")
    count = L.named(
        ctx.net.add_reduce(L.cast(valid, i32, "valid_int"), trt.ReduceOperation.SUM, 1 << 1, True), "num_dets"
    )
    return count.get_output(0), det_boxes, det_scores, det_classes


# --- the DIoU kinds: the DarknetNMS plugin -------------------------------------------------------


def nms_plugin_fields(a: NmsArgs) -> list[trt.PluginField]:
    """The DarknetNMS fields for the op's arguments (csrc/trt/README.md)."""
    floats = {
        "conf_thresh": a.conf_thresh,
        "iou_thresh": a.iou_thresh,
        "beta": a.beta,
        "net_width": a.net_width,
        "net_height": a.net_height,
    }
    fields = [trt.PluginField(k, np.array([v], np.float32), trt.PluginFieldType.FLOAT32) for k, v in floats.items()]
    fields.append(trt.PluginField("max_det", np.array([a.max_det], np.int32), trt.PluginFieldType.INT32))
    kind = np.frombuffer(a.kind.encode() + b"\0", np.int8)
    fields.append(trt.PluginField("kind", kind, trt.PluginFieldType.CHAR))
    return fields


def add_nms_plugin(
    ctx: ConversionContext, target: Target, name: str, rows: TRTTensor, a: NmsArgs
) -> tuple[TRTTensor, TRTTensor, TRTTensor, TRTTensor]:
    """One DarknetNMS IPluginV3 layer: the op's CUDA launcher."""
    if not can_add_plugin_layers():
        raise plugin.PluginUnavailableError(
            f"darknet_nms kind {a.kind!r} ({name}) lowers to the {plugin.NMS_PLUGIN_NAME} TensorRT plugin, but this "
            f"TensorRT ({trt.__name__} {trt.__version__}) cannot add plugin layers to a network "
            "(INetworkDefinition.add_plugin_v3 is missing" + (", as in TensorRT-RTX)." if is_tensorrt_rtx() else ")."),
            advice=(
                'Use nms_kind="default" (Detector(..., nms_kind="default")), which lowers to TensorRT\'s own '
                "layers (INMSLayer, plain IoU) and converts here: its detections can differ from darknet's "
                f"{a.kind!r}. Darknet's DIoU NMS in an engine needs full TensorRT with the torch_mish plugin library."
            ),
        )
    layer = ctx.net.add_plugin_v3([rows], [], plugin.create_nms_plugin(name, nms_plugin_fields(a)))
    set_layer_name(layer, target, f"{name}_plugin")
    return tuple(layer.get_output(i) for i in range(4))  # type: ignore[return-value]


@dynamo_tensorrt_converter(NMS_OP, capability_validator=nms_validator, supports_dynamic_shapes=True)
def convert_darknet_nms(
    ctx: ConversionContext, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> tuple[TRTTensor, TRTTensor, TRTTensor, TRTTensor]:
    rows, bound = bind_nms_args(args, kwargs)
    a = constant_args(bound)
    if a is None:  # the validator admits constants only
        raise ValueError(f"{name}: darknet_nms's scalar arguments must be constants")
    if not isinstance(rows, TRTTensor):
        rows = get_trt_tensor(ctx, rows, f"{name}_rows")
    if a.kind in DIOU_KINDS:
        return add_nms_plugin(ctx, target, name, rows, a)
    _, num_rows, width = rows.shape
    return add_nms_default(ctx, target, name, rows, width - 5, num_rows, a)
