"""Evaluates a TensorRT network on the CPU with numpy, layer by layer, from the parameters read back
from the network and each layer type's documented semantics (NvInfer.h): what a converter built,
computed without a TensorRT runtime. It covers the layer types the darknet_nms 'default' lowering
uses; INMSLayer is evaluated by a float64 reference of TensorRT's documented NMS (per image and
class, greedy in score order, IoU <= threshold selected, the TopK box limit applied per image).

float32 arithmetic stays float32 (numpy rounds each operation once, as TensorRT's kernels do for
these layers), so values that do not hinge on an NMS decision near its threshold compare exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as(layer: Any, cls: Any) -> Any:
    layer.__class__ = cls
    return layer


def _axis(mask: int) -> int:
    (axes,) = np.nonzero([(mask >> i) & 1 for i in range(8)])
    assert len(axes) == 1, f"one axis expected, got mask {mask:#x}"
    return int(axes[0])


def _iou(a: np.ndarray, b: np.ndarray, centre_sizes: bool) -> float:
    """IoU of two boxes (float64); 0 where the union is 0."""
    if centre_sizes:
        a = np.array([a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2])
        b = np.array([b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2])
    else:  # any two diagonal corners
        a = np.array([min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])])
        b = np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    max_per_class: int,
    iou_thresh: float,
    score_thresh: float,
    topk_limit: int,
    centre_sizes: bool,
) -> np.ndarray:
    """INMSLayer as NvInfer.h documents it: SelectedIndices (M, 3) of (image, class, box)."""
    selected = []
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    for n in range(scores.shape[0]):
        rows, classes = np.nonzero(scores[n] > score_thresh)
        order = np.argsort(-scores[n, rows, classes], kind="stable")[:topk_limit]
        kept: dict[int, list[int]] = {}
        for i in order:
            r, c = int(rows[i]), int(classes[i])
            mine = kept.setdefault(c, [])
            if len(mine) < max_per_class and all(
                _iou(boxes[n, r], boxes[n, s], centre_sizes) <= iou_thresh for s in mine
            ):
                mine.append(r)
                selected.append((n, c, r, scores[n, r, c]))
    selected.sort(key=lambda t: (t[0], -t[3]))
    return np.array([t[:3] for t in selected], dtype=np.int32).reshape(-1, 3)


def evaluate(trt: Any, network: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The network's outputs by name for input arrays by name."""
    values: dict[str, np.ndarray] = dict(inputs)
    numpy_type = {trt.float32: np.float32, trt.float16: np.float16, trt.int32: np.int32, trt.int64: np.int64}
    numpy_type[trt.bool] = np.bool_
    binary = {
        trt.ElementWiseOperation.SUM: np.add,
        trt.ElementWiseOperation.SUB: np.subtract,
        trt.ElementWiseOperation.PROD: np.multiply,
        trt.ElementWiseOperation.DIV: np.divide,
        trt.ElementWiseOperation.FLOOR_DIV: np.floor_divide,
        trt.ElementWiseOperation.MIN: np.minimum,
        trt.ElementWiseOperation.MAX: np.maximum,
        trt.ElementWiseOperation.GREATER: np.greater,
        trt.ElementWiseOperation.LESS: np.less,
        trt.ElementWiseOperation.EQUAL: np.equal,
    }
    pending = [network.get_layer(i) for i in range(network.num_layers)]
    while pending:  # the network lists layers as they were added, not necessarily in data order
        ready = [layer for layer in pending if _inputs_ready(layer, values)]
        assert ready, f"cycle or missing input among {[layer.name for layer in pending]}"
        for layer in ready:
            pending.remove(layer)
            x = [values[layer.get_input(j).name] if layer.get_input(j) else None for j in range(layer.num_inputs)]
            for j, value in enumerate(_evaluate_layer(trt, layer, x, numpy_type, binary)):
                values[layer.get_output(j).name] = value
    return {network.get_output(i).name: values[network.get_output(i).name] for i in range(network.num_outputs)}


def _inputs_ready(layer: Any, values: dict[str, np.ndarray]) -> bool:
    return all(layer.get_input(j) is None or layer.get_input(j).name in values for j in range(layer.num_inputs))


def _evaluate_layer(trt: Any, layer: Any, x: list, numpy_type: dict, binary: dict) -> list[np.ndarray]:  # noqa: C901, PLR0912
    T = trt.LayerType
    if True:
        if layer.type == T.CONSTANT:
            c = _as(layer, trt.IConstantLayer)
            out = [np.array(c.weights).reshape(tuple(c.shape))]
        elif layer.type == T.CAST:
            out = [x[0].astype(numpy_type[_as(layer, trt.ICastLayer).to_type])]
        elif layer.type == T.ELEMENTWISE:
            out = [binary[_as(layer, trt.IElementWiseLayer).op](x[0], x[1])]
        elif layer.type == T.SELECT:
            out = [np.where(x[0], x[1], x[2])]
        elif layer.type == T.GATHER:
            out = [_gather(trt, _as(layer, trt.IGatherLayer), x[0], x[1])]
        elif layer.type == T.SCATTER:
            s = _as(layer, trt.IScatterLayer)
            assert s.mode == trt.ScatterMode.ND
            data = x[0].copy()
            data[tuple(x[1].T)] = x[2]
            out = [data]
        elif layer.type == T.CONCATENATION:
            out = [np.concatenate(x, axis=_as(layer, trt.IConcatenationLayer).axis)]
        elif layer.type == T.SHUFFLE:
            out = [_shuffle(trt, _as(layer, trt.IShuffleLayer), x[0])]
        elif layer.type == T.SHAPE:
            out = [np.array(x[0].shape, dtype=np.int64)]
        elif layer.type == T.FILL:
            f = _as(layer, trt.IFillLayer)
            assert f.operation == trt.FillOperation.LINSPACE
            grid = np.indices(tuple(x[0])).astype(np.float64)
            out = [(x[1] + np.tensordot(x[2], grid, axes=1)).astype(numpy_type[f.to_type])]
        elif layer.type == T.TOPK:
            k = _as(layer, trt.ITopKLayer)
            assert k.op == trt.TopKOperation.MAX
            axis = _axis(k.axes)
            index = np.argsort(-x[0], axis=axis, kind="stable").take(range(k.k), axis=axis)
            out = [np.take_along_axis(x[0], index, axis=axis), index.astype(np.int32)]
        elif layer.type == T.REDUCE:
            r = _as(layer, trt.IReduceLayer)
            assert r.op == trt.ReduceOperation.SUM
            out = [x[0].sum(axis=_axis(r.axes), keepdims=r.keep_dims).astype(x[0].dtype)]
        elif layer.type == T.NMS:
            m = _as(layer, trt.INMSLayer)
            centre = m.bounding_box_format == trt.BoundingBoxFormat.CENTER_SIZES
            sel = nms_reference(x[0], x[1], int(x[2]), float(x[3]), float(x[4]), m.topk_box_limit, centre)
            out = [sel, np.array(len(sel), np.int32)]
        else:
            raise NotImplementedError(f"{layer.type} ({layer.name})")
    return out


def _gather(trt: Any, g: Any, data: np.ndarray, index: np.ndarray) -> np.ndarray:
    if g.mode == trt.GatherMode.ND:
        assert g.num_elementwise_dims == 0
        return data[tuple(index.T)]
    assert g.mode == trt.GatherMode.DEFAULT
    if g.num_elementwise_dims == 0:
        return np.take(data, index, axis=g.axis)
    assert g.num_elementwise_dims == 1 and g.axis >= 1
    return np.stack([np.take(data[b], index[b], axis=g.axis - 1) for b in range(data.shape[0])])


def _shuffle(trt: Any, s: Any, x: np.ndarray) -> np.ndarray:
    assert tuple(s.first_transpose)[: x.ndim] == tuple(range(x.ndim)), "transposes are not evaluated"
    dims = list(s.reshape_dims)
    if s.zero_is_placeholder:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)
