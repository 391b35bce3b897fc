"""Darknet's ``[yolo]`` training signal as a PyTorch loss (AlexeyAB/darknet ``src/yolo_layer.c``:
forward_yolo_layer, process_batch, delta_yolo_box, delta_yolo_class; ``src/box.c``: box_iou,
box_giou/diou/ciou, dx_box_iou).

    model = Darknet("yolov4-csp.cfg").train()
    criterion = YoloLoss(model)
    loss = criterion(model(x), targets)  # targets (M, 6): image index, class, cx, cy, w, h
    loss.backward()                      # each head receives minus darknet's delta
    criterion.parts                      # box, objectness and class terms of the last call

The gradient that reaches each head (the head convolution's output after its activation, as
``Darknet`` returns it in training mode) is ``-delta_normalizer * delta``, where ``delta`` is the
buffer darknet's forward_yolo_layer fills, entry for entry; darknet's GPU backward scales it by
``delta_normalizer`` the same way (its CPU backward ignores that option). The loss value is
``sum(delta ** 2)`` over all heads and images: darknet's cost with ``show_details=0``
(:attr:`LossParts.darknet_cost` has the per-head cost as darknet computes it with its default
``show_details=1``). Images are independent and nothing is averaged over them: darknet divides
the learning rate by the batch size instead (see :mod:`torch_mish.darknet.train`).

What darknet does, per head and image, in this order of effects (each rule below is reproduced):

1. Every prediction (cell, anchor) gets objectness delta ``obj_normalizer * (0 - obj)``. Its box
   (decoded as in inference) is compared by IoU with every truth of the image: if the best IoU
   among truths is above ``ignore_thresh`` and any class score of the prediction is above 0.25,
   the delta becomes 0 (``objectness_smooth=1``: the larger of it and
   ``obj_normalizer * (iou - obj)``). If the best IoU is above ``truth_thresh`` the prediction
   becomes a positive for that truth (objectness, classes and box, as in step 2).
2. Every truth, in label order, goes to the cell its centre falls in and to the anchor (of all
   ``num``, not only this head's ``mask``) whose shape has the best IoU with it; if that anchor is
   in this head's mask, that cell and anchor get box deltas (accumulated: ``+=``), objectness
   ``obj_normalizer * (1 - obj)`` (set; with ``objectness_smooth`` only where the delta is still
   0) and class deltas (``1 - p`` for the truth's class; a cell already holding a class delta
   for that class keeps its other classes' deltas, so two truths of different classes in one cell
   train both classes). With ``iou_thresh < 1`` every other anchor of this head whose shape IoU
   (``iou_thresh_kind``) with the truth is above ``iou_thresh`` is trained the same way.
3. With ``iou_thresh < 1``, the box deltas of every cell with a non-zero objectness delta are
   divided by the number of its positive class deltas.

Quirks kept: for ``new_coords=0`` the x, y, objectness and class deltas are ``target - sigmoid(t)``
handed to the logit as is (darknet does not multiply by the sigmoid's derivative); the w, h deltas
are ``log(target) - t`` for ``iou_loss=mse`` and the (G/D/C)IoU gradient times ``exp(t)``
otherwise (``new_coords=1``: the gradient alone); IoU-loss box deltas are clipped to
``max_delta`` per truth, MSE ones are not; ``cls_normalizer`` only scales anything together with
``counters_per_class`` (darknet multiplies it into the class multiplier only).

Targets: one row per box, in each image's label order (order matters where two truths share a
cell and anchor). As in darknet, an image's truth list ends at its first row with ``cx == 0``: that
row and the image's later rows are not used (darknet's loader never produces ``cx == 0``; it drops
such labels), and only the first ``max`` (default 200) rows of an image count. A class outside
``[0, classes)``, an image index outside ``[0, N)``, ``cx, cy`` outside ``[0, 1)``, ``w, h`` outside
``(0, 1]``, a NaN or a non-integral index or class raise ``ValueError`` (darknet would skip or
misread them).

Cost: all heads are computed together, in a few hundred tensor operations whatever the number of
cells, truths or heads. The assignments of step 2 depend on the targets only and are planned on
the host in NumPy, then copied over from pinned memory. Give the targets on the CPU (as a
DataLoader yields them) and, for the family's options (``truth_thresh=1``, one ``iou_loss``), the
loss and its backward never wait for the GPU; targets on the GPU are copied to the host first (one
synchronization), and predictions above ``truth_thresh`` are counted on the host.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch_mish.darknet.layers import Yolo
    from torch_mish.darknet.model import Darknet

IOU_LOSSES = ("mse", "iou", "giou", "diou", "ciou")
IOU_KINDS = ("iou", "giou", "diou", "ciou")
_FLT_MAX = 3.4028234663852886e38  # darknet's "no max_delta" default

# [yolo] keys that change nothing in the training signal: inference, NMS, tracking, data loading
# (jitter, resize: the dataset), multi-scale training (random: the trainer).
_YOLO_NOT_LOSS = frozenset(
    "nms_kind beta_nms jitter resize random track_history_size sim_thresh dets_for_track dets_for_show "
    "track_ciou_norm embedding_layer".split()
)
# [yolo] keys the loss does not implement.
_YOLO_REFUSED = {"map": "a class-id map file (map=)"}
# [net] keys that rewrite a yolo layer's delta during training.
_NET_REFUSED = ("badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "equidistant_point")

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class LossOptionError(ValueError):
    """A cfg option the loss cannot honour (unknown value, or not implemented)."""


def _number(where: str, key: str, value: str, integer: bool) -> float:
    # C's atoi/atof: a leading number, then a comment at most (as torch_mish.darknet.cfg reads them)
    match = (_INT if integer else _FLOAT).match(value)
    if match is None or (match.end() < len(value) and value[match.end()] != "#"):
        raise LossOptionError(f"{where}: {key}={value}: expected {'an integer' if integer else 'a number'}")
    return int(match.group(0)) if integer else float(match.group(0))


@dataclass(frozen=True)
class YoloHeadOptions:
    """One [yolo] section's training options, with darknet's defaults (parser.c parse_yolo)."""

    layer: int
    where: str
    classes: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all num anchors, input pixels
    scale_x_y: float = 1.0
    new_coords: bool = False
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    iou_thresh: float = 1.0
    iou_thresh_kind: str = "iou"
    iou_loss: str = "mse"
    iou_normalizer: float = 0.75
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    max_delta: float = _FLT_MAX
    objectness_smooth: bool = False
    label_smooth_eps: float = 0.0
    focal_loss: bool = False
    class_multipliers: tuple[float, ...] | None = None  # from counters_per_class
    max_boxes: int = 200
    show_details: bool = True

    @classmethod
    def from_layer(cls, yolo: Yolo) -> YoloHeadOptions:
        where = f"{yolo.where}: [yolo] (layer {yolo.index})"
        opts = dict(yolo.train_options)
        for key, what in _YOLO_REFUSED.items():
            if key in opts:
                raise LossOptionError(f"{where}: {key}={opts[key]}: {what} is not implemented by YoloLoss")

        def num(key: str, default: float, integer: bool = False) -> float:
            return default if key not in opts else _number(where, key, opts[key], integer)

        def choice(key: str, default: str, allowed: tuple[str, ...]) -> str:
            value = opts.get(key, default)
            if value not in allowed:
                raise LossOptionError(f"{where}: {key}={value}: not one of {', '.join(allowed)}")
            return value

        classes = yolo.classes
        max_delta = float(num("max_delta", _FLT_MAX))
        multipliers = None
        if "counters_per_class" in opts:
            raw = opts["counters_per_class"].split("#", 1)[0].split(",")
            counters = [int(_number(where, "counters_per_class", v, True)) for v in raw]
            if len(counters) != classes:
                raise LossOptionError(f"{where}: counters_per_class has {len(counters)} values, classes={classes}")
            counters = [max(c, 1) for c in counters]
            top = float(max(counters))
            multipliers = tuple(min(top / c, max_delta) for c in counters)
        max_boxes = int(num("max", 200, integer=True))
        if max_boxes < 1:
            raise LossOptionError(f"{where}: max={max_boxes}: must be >= 1")
        return cls(
            layer=yolo.index,
            where=where,
            classes=classes,
            mask=tuple(yolo.mask),
            anchors=tuple((float(w), float(h)) for w, h in yolo.all_anchors),
            scale_x_y=float(yolo.scale_x_y),
            new_coords=bool(yolo.new_coords),
            ignore_thresh=float(num("ignore_thresh", 0.5)),
            truth_thresh=float(num("truth_thresh", 1.0)),
            iou_thresh=float(num("iou_thresh", 1.0)),
            iou_thresh_kind=choice("iou_thresh_kind", "iou", IOU_KINDS),
            iou_loss=choice("iou_loss", "mse", IOU_LOSSES),
            iou_normalizer=float(num("iou_normalizer", 0.75)),
            obj_normalizer=float(num("obj_normalizer", 1.0)),
            cls_normalizer=float(num("cls_normalizer", 1.0)),
            delta_normalizer=float(num("delta_normalizer", 1.0)),
            max_delta=max_delta,
            objectness_smooth=bool(num("objectness_smooth", 0, integer=True)),
            label_smooth_eps=float(num("label_smooth_eps", 0.0)),
            focal_loss=bool(num("focal_loss", 0, integer=True)),
            class_multipliers=multipliers,
            max_boxes=max_boxes,
            show_details=bool(num("show_details", 1, integer=True)),
        )


@dataclass
class LossParts:
    """The terms of the last :class:`YoloLoss` call, detached (reading them with ``float()``
    synchronizes with the device; nothing in the loss does). ``box + objectness + classes`` is the
    loss value: each is the sum of the squared deltas of those entries over all heads and images.
    ``per_head`` has the same three terms per head; ``darknet_cost`` per head is the cost darknet's
    forward_yolo_layer stores (what its training log averages): ``sum(delta ** 2)`` with
    ``show_details=0`` or ``iou_loss=mse``, else ``obj_normalizer * (objectness + classes)`` plus
    ``iou_normalizer`` times the mean of ``1 - IoU`` (``1 - GIoU`` for giou) over the truths'
    assignments. ``assignments`` counts, per head, the (truth, anchor) pairs trained in step 2."""

    box: Tensor
    objectness: Tensor
    classes: Tensor
    per_head: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    darknet_cost: list[Tensor] = field(default_factory=list)
    assignments: list[Tensor] = field(default_factory=list)

    @property
    def total(self) -> Tensor:
        return self.box + self.objectness + self.classes


# ---------------------------------------------------------------------------------------------
# box.c on tensors of boxes (..., 4): centre x, y and width, height. Written per axis (x and y as a
# trailing pair) with darknet's arithmetic, each axis's value computed as darknet computes it.


def _sides(box: Tensor) -> tuple[Tensor, Tensor]:
    """(x - w/2, y - h/2) and (x + w/2, y + h/2)."""
    c, half = box[..., :2], box[..., 2:] / 2
    return c - half, c + half


def _area(box: Tensor) -> Tensor:
    return box[..., 2] * box[..., 3]


def _intersection(a: Tensor, b: Tensor) -> Tensor:
    a_lo, a_hi = _sides(a)
    b_lo, b_hi = _sides(b)
    overlap = torch.minimum(a_hi, b_hi) - torch.maximum(a_lo, b_lo)
    return torch.where((overlap < 0).any(-1), 0.0, overlap[..., 0] * overlap[..., 1])


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """box_iou: intersection over union; 0 when the intersection or the union is 0."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return torch.where((inter == 0) | (union == 0), 0.0, inter / union)


def _enclosing(a: Tensor, b: Tensor) -> Tensor:
    """box_c's width and height (..., 2)."""
    a_lo, a_hi = _sides(a)
    b_lo, b_hi = _sides(b)
    return torch.maximum(a_hi, b_hi) - torch.minimum(a_lo, b_lo)


def box_iou_kind(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """box_iou_kind(a, b, kind): box_iou, box_giou, box_diou or box_ciou (a is the prediction)."""
    iou = box_iou(a, b)
    if kind == "iou":
        return iou
    ext = _enclosing(a, b)
    if kind == "giou":
        c = ext[..., 0] * ext[..., 1]
        union = _area(a) + _area(b) - _intersection(a, b)
        return torch.where(c == 0, iou, iou - (c - union) / c)
    c = (ext * ext).sum(-1)
    dist = ((a[..., :2] - b[..., :2]) ** 2).sum(-1)
    if kind == "diou":
        return torch.where(c == 0, iou, iou - torch.pow(dist / c, 0.6))
    if kind != "ciou":
        raise ValueError(f"unknown IoU kind {kind!r}")
    dar = torch.atan(b[..., 2] / b[..., 3]) - torch.atan(a[..., 2] / a[..., 3])
    ar_loss = (4 / (math.pi * math.pi)) * dar * dar
    alpha = ar_loss / (1 - iou + ar_loss + 0.000001)
    return torch.where(c == 0, iou, iou - (dist / c + alpha * ar_loss))


def dx_box_iou(pred: Tensor, truth: Tensor, kind: str) -> Tensor:
    """dx_box_iou(pred, truth, iou_loss) for (R, 4) boxes: the gradient of the (G/D/C)IoU with
    respect to the prediction's x, y, w, h as darknet computes it (its ``dt, db, dl, dr`` fields,
    which hold dx, dy, dw, dh), as (R, 4).

    darknet writes it per side (t, b, l, r); here the sides are (R, axis, side) with axis x (l, r)
    and y (t, b), side low (l, t) and high (r, b): ``sign`` is -1 for the low side."""
    lo0, hi0 = _sides(pred)  # (R, 2): to_tblr, unordered
    p = torch.stack([torch.minimum(lo0, hi0), torch.maximum(lo0, hi0)], -1)  # (R, axis, side)
    t_lo, t_hi = _sides(truth)
    q = torch.stack([t_lo, t_hi], -1)
    sign = torch.arange(-1, 2, 2, dtype=pred.dtype, device=pred.device)  # made there: a copy from the host would wait
    ext = p[..., 1] - p[..., 0]  # (R, 2): the prediction's width, height
    area = ext[:, 0] * ext[:, 1]  # X
    q_ext = q[..., 1] - q[..., 0]
    area_hat = q_ext[:, 0] * q_ext[:, 1]  # Xhat
    i_ext = torch.minimum(p[..., 1], q[..., 1]) - torch.maximum(p[..., 0], q[..., 0])  # Iw, Ih
    inter = i_ext[:, 0] * i_ext[:, 1]  # not clamped: may be a product of two negative extents
    union = area + area_hat - inter
    s = ((pred[:, :2] - truth[:, :2]) ** 2).sum(1)
    g_ext = torch.maximum(p[..., 1], q[..., 1]) - torch.minimum(p[..., 0], q[..., 0])  # giou_Cw, giou_Ch
    g_c = g_ext[:, 0] * g_ext[:, 1]
    # d/d side of X, I and C: the other axis' extent, signed, where the side counts
    inside = (p - q) * sign < 0  # t: pred_t > truth top, b: pred_b < truth bottom, ...
    outside = (p - q) * sign > 0  # t: pred_t < truth top, b: pred_b > truth bottom, ...
    d_x = sign * ext.flip(1)[..., None]
    d_i = torch.where(inside, sign * i_ext.flip(1)[..., None], 0.0)
    d_u = d_x - d_i
    d_c = torch.where(outside, sign * g_ext.flip(1)[..., None], 0.0)
    u = union[:, None, None]
    d = torch.where(u > 0, (u * d_i - inter[:, None, None] * d_u) / (u * u), 0.0)
    # darknet assigns these in sequence: where low >= high both sides take the high side's value
    ordered = (lo0 < hi0)[..., None]
    d = torch.stack([torch.where(ordered[..., 0], d[..., 0], d[..., 1]), d[..., 1]], -1)
    no_overlap = ((i_ext[:, 0] <= 0) | (i_ext[:, 1] <= 0))[:, None]
    if kind == "giou":
        gc = g_c[:, None, None]
        g = (gc * d_u - u * d_c) / (gc * gc)
        d = torch.where(gc > 0, d + g, d)
        d = torch.where(no_overlap[..., None], g, d)
    dxy = d.sum(-1)  # dx = dl + dr, dy = dt + db
    dwh = d[..., 1] - d[..., 0]  # dw = dr - dl, dh = db - dt
    if kind in ("diou", "ciou"):
        c_ext = torch.maximum(hi0, t_hi) - torch.minimum(lo0, t_lo)  # Cw, Ch
        c = (c_ext * c_ext).sum(1)[:, None]
        dc_dc = outside[..., 1].to(pred.dtype) - outside[..., 0].to(pred.dtype)  # dCw/dx, dCh/dy
        dc_dwh = 0.5 * outside[..., 1].to(pred.dtype) + 0.5 * outside[..., 0].to(pred.dtype)  # dCw/dw, dCh/dh
        exy = (2 * (truth[:, :2] - pred[:, :2]) * c - (2 * c_ext * dc_dc) * s[:, None]) / (c * c)
        ewh = (2 * c_ext * dc_dwh) * s[:, None] / (c * c)
        if kind == "ciou":
            dar = torch.atan(truth[:, 2] / truth[:, 3]) - torch.atan(pred[:, 2] / pred[:, 3])
            ar_loss = (4 / (math.pi * math.pi)) * dar * dar
            alpha = ar_loss / (1 - inter / union + ar_loss + 0.000001)
            ar_d = (8 / (math.pi * math.pi)) * dar[:, None] * torch.stack([pred[:, 3], -pred[:, 2]], 1)
            ewh = ewh + alpha[:, None] * ar_d
        dxy = torch.where(no_overlap, exy, torch.where(c > 0, dxy + exy, dxy))
        dwh = torch.where(no_overlap, ewh, torch.where(c > 0, dwh + ewh, dwh))
    return torch.cat([dxy, dwh], 1)


def _fix_nan_inf(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# The loss


_A = TypeVar("_A", np.ndarray, Tensor)  # the plan's arrays: NumPy on the host, tensors on the device


@dataclass
class _Truths(Generic[_A]):
    """Valid target rows sorted by image (label order kept), each row's rank in its image, the rank
    of the image's first ``cx == 0`` row (the end of its truth list), and the largest rank + 1."""

    image: _A  # (K,) int64
    cls: _A  # (K,) int64
    box: _A  # (K, 4) compute dtype
    rank: _A  # (K,) int64
    end: _A  # (K,) int64: the end of the row's image's truth list
    per_image: int  # the most rows of one image


class _PerHead:
    """A per-head option: a Python number when every head has the same value, else a tensor
    indexed by head. ``at(index)`` gives the number or the values at those heads."""

    def __init__(self, values: Sequence[float | bool], device: torch.device, dtype: torch.dtype) -> None:
        self.uniform = all(v == values[0] for v in values)
        self.value = values[0]
        self.table = None if self.uniform else torch.tensor(values, dtype=dtype, device=device)

    def at(self, index: Tensor) -> Tensor | float | bool:
        return self.value if self.table is None else self.table[index]

    @property
    def any(self) -> bool:
        return bool(self.value) if self.table is None else True


def _where(cond: Tensor | bool, a: Tensor | float, b: Tensor | float) -> Tensor | float:
    if isinstance(cond, bool):
        return a if cond else b
    return torch.where(cond, a, b)


@dataclass
class _Setup:
    """Every head's predictions of an image as one list (head, anchor, row, column order, P of
    them), with each prediction's constants; per-head options; built once per device, dtype and
    input size."""

    sizes: list[tuple[int, int, int]]  # (anchors, rows, columns) per head
    offsets: list[int]
    count: int  # P
    gx: Tensor  # (P,) column
    gy: Tensor
    lw: Tensor  # (P,) the head's columns
    lh: Tensor
    aw: Tensor  # (P,) the anchor's width and height, pixels
    ah: Tensor
    head: Tensor  # (P,) int64
    anchors: Tensor  # (H, T, 2) each head's num anchors (padded with zeros to the largest num)
    anchor_of: Tensor  # (H, T) int64: the anchor's position in the head's mask (-1: not in it)
    head_lw: Tensor  # (H,) int64
    head_lh: Tensor
    head_offset: Tensor  # (H,) int64
    opt: dict[str, _PerHead]  # per-head options
    pred_opt: dict[str, Tensor | float | bool]  # per-prediction options
    cls_mult: Tensor | None  # (H, C) counters_per_class multipliers (1 where a head has none)
    cls_factor: Tensor | None  # (H, C) what delta_yolo_class multiplies a fresh class delta by
    kinds: list[str]  # iou_loss per head
    thresh_kinds: list[str]  # iou_thresh_kind per head
    show_details: Tensor  # (H,) bool: heads whose darknet cost is the show_details form

    @functools.cached_property
    def plan_constants(self) -> _PlanConstants:
        return _PlanConstants.from_setup(self)


def _setup(opts: list[YoloHeadOptions], sizes: list[tuple[int, int, int]], device: torch.device, dtype: torch.dtype):
    offsets, parts = [], []
    total = 0
    for k, (o, (a, lh, lw)) in enumerate(zip(opts, sizes, strict=True)):
        offsets.append(total)
        total += a * lh * lw
        anchors = torch.tensor([o.anchors[m] for m in o.mask], dtype=dtype).view(a, 1, 1, 2).expand(a, lh, lw, 2)
        gy, gx = torch.meshgrid(torch.arange(lh, dtype=dtype), torch.arange(lw, dtype=dtype), indexing="ij")
        parts.append(
            torch.stack(
                [
                    gx.expand(a, lh, lw),
                    gy.expand(a, lh, lw),
                    torch.full((a, lh, lw), lw, dtype=dtype),
                    torch.full((a, lh, lw), lh, dtype=dtype),
                    anchors[..., 0],
                    anchors[..., 1],
                    torch.full((a, lh, lw), k, dtype=dtype),
                ],
                -1,
            ).reshape(-1, 7)
        )
    table = torch.cat(parts).to(device)
    gx, gy, lw_p, lh_p, aw, ah, head = table.unbind(1)
    head = head.long()
    most = max(len(o.anchors) for o in opts)
    anchors = torch.zeros(len(opts), most, 2, dtype=dtype)
    anchor_of = torch.full((len(opts), most), -1, dtype=torch.long)
    for k, o in enumerate(opts):
        anchors[k, : len(o.anchors)] = torch.tensor(o.anchors, dtype=dtype)
        anchor_of[k, : len(o.anchors)] = torch.tensor(_mask_positions(o.mask, len(o.anchors)))

    def per_head(name: str, kind: torch.dtype) -> _PerHead:
        return _PerHead([getattr(o, name) for o in opts], device, kind)

    names = [
        "scale_x_y", "ignore_thresh", "truth_thresh", "iou_thresh", "iou_normalizer", "obj_normalizer",
        "delta_normalizer", "max_delta", "label_smooth_eps", "max_boxes",
    ]  # fmt: skip
    opt = {name: per_head(name, dtype) for name in names}
    opt["max_boxes"] = per_head("max_boxes", torch.long)
    for name in ("new_coords", "objectness_smooth", "focal_loss"):
        opt[name] = per_head(name, torch.bool)
    opt["giou_cost"] = _PerHead([o.iou_loss == "giou" for o in opts], device, torch.bool)  # cost: 1 - GIoU
    pred_opt = {name: opt[name].at(head) for name in ("scale_x_y", "ignore_thresh", "truth_thresh", "obj_normalizer")}
    for name in ("new_coords", "objectness_smooth", "delta_normalizer", "max_boxes"):
        pred_opt[name] = opt[name].at(head)
    for name, value in pred_opt.items():
        if isinstance(value, Tensor) and value.dim() == 1 and name not in ("max_boxes",):
            pred_opt[name] = value[:, None] if name == "delta_normalizer" else value
    cls_mult = cls_factor = None
    if any(o.class_multipliers is not None for o in opts):
        classes = opts[0].classes
        ones = (1.0,) * classes
        cls_mult = torch.tensor([o.class_multipliers or ones for o in opts], dtype=dtype, device=device)
        cls_factor = torch.tensor(
            [[m * o.cls_normalizer for m in o.class_multipliers] if o.class_multipliers else ones for o in opts],
            dtype=dtype,
            device=device,
        )
    return _Setup(
        sizes=sizes,
        offsets=offsets,
        count=total,
        gx=gx,
        gy=gy,
        lw=lw_p,
        lh=lh_p,
        aw=aw,
        ah=ah,
        head=head,
        anchors=anchors.to(device),
        anchor_of=anchor_of.to(device),
        head_lw=torch.tensor([s[2] for s in sizes], device=device),
        head_lh=torch.tensor([s[1] for s in sizes], device=device),
        head_offset=torch.tensor(offsets, device=device),
        opt=opt,
        pred_opt=pred_opt,
        cls_mult=cls_mult,
        cls_factor=cls_factor,
        kinds=[o.iou_loss for o in opts],
        thresh_kinds=[o.iou_thresh_kind for o in opts],
        show_details=torch.tensor([o.iou_loss != "mse" and o.show_details for o in opts], device=device),
    )


class _Gradients(torch.autograd.Function):
    """Hands precomputed gradients to the heads; its forward returns the loss value."""

    @staticmethod
    def forward(ctx, value: Tensor, grad: Tensor, offsets: list[int], *heads: Tensor) -> Tensor:  # noqa: ARG004
        ctx.save_for_backward(grad)
        ctx.offsets = offsets
        ctx.shapes = [h.shape for h in heads]
        ctx.dtypes = [h.dtype for h in heads]
        return value.clone()

    @staticmethod
    def backward(ctx, out_grad: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        grads = []
        for off, shape, dtype in zip(ctx.offsets, ctx.shapes, ctx.dtypes, strict=True):
            size = shape[1] * shape[2] * shape[3]
            grads.append((grad[:, off : off + size] * out_grad).to(dtype).view(shape))
        return None, None, None, *grads


class YoloLoss(nn.Module):
    """Darknet's training signal for every [yolo] head of ``model`` (see the module docstring).

    ``forward(heads, targets, input_size=None)``: ``heads`` as ``model(x)`` returns them in
    training mode, ``targets`` (M, 6) floating: image index, class, cx, cy, w, h (cx..h relative to
    the input). ``input_size`` (height, width) of ``x`` defaults to the heads' sizes times the
    model's strides. Returns the loss value (float32; float64 for float64 heads); the gradient
    reaching head ``h`` is ``-delta_normalizer * delta_h``. After each call :attr:`parts` holds the
    terms (:class:`LossParts`) and :attr:`deltas` darknet's delta per head.

    ``targets`` may be on the CPU or on the heads' device; on the CPU (recommended with a GPU) the
    call does not wait for the device.

    ``compile``: run the element-wise steps through ``torch.compile`` (dynamic shapes). Eagerly they
    are several hundred small kernels whose launches bound the loss on a GPU; compiled, a few fused
    ones. ``None`` (default) compiles for heads on a CUDA device where Triton is available, and the
    first call then waits for the compilation; ``False`` never compiles.
    """

    def __init__(self, model: Darknet, compile: bool | None = None) -> None:  # noqa: A002 - torch's own word
        super().__init__()
        self.compile = compile
        yolos = model.yolo_layers
        if not yolos:
            raise ValueError(f"{model.source}: the model has no [yolo] layers; YoloLoss trains [yolo] heads")
        for key in _NET_REFUSED:
            value = model.net_options.get(key)
            if value is not None and _number(f"{model.source}: [net]", key, value, False) != 0:
                raise LossOptionError(f"{model.source}: [net] {key}={value}: rejecting deltas is not implemented")
        self.options = [YoloHeadOptions.from_layer(y) for y in yolos]
        if len({o.classes for o in self.options}) != 1:
            raise LossOptionError(
                f"{model.source}: the [yolo] layers have different classes= "
                f"({', '.join(str(o.classes) for o in self.options)}); YoloLoss needs one number of classes"
            )
        self.strides: list[tuple[float, float]] = []
        for yolo in yolos:
            _, h, w = model.shapes[yolo.index]
            self.strides.append((model.height / h, model.width / w))
        self.parts: LossParts | None = None
        self.deltas: list[Tensor] = []
        self._setups: dict[tuple, _Setup] = {}

    def extra_repr(self) -> str:
        return ", ".join(f"layer {o.layer}: {o.iou_loss}" for o in self.options)

    def forward(self, heads: Sequence[Tensor], targets: Tensor, input_size: tuple[int, int] | None = None) -> Tensor:
        heads = self._check_heads(heads)
        n = heads[0].shape[0]
        net_h, net_w = self._input_size(heads, input_size)
        dtype = torch.promote_types(heads[0].dtype, torch.float32)
        device = heads[0].device
        sizes = [(h.shape[1], h.shape[2], h.shape[3]) for h in heads]
        setup = self._setup(device, dtype, sizes)
        truths = _prepare_targets(targets, n, self.options[0].classes, device, dtype)
        plan = _plan(truths, setup.plan_constants, n, net_h, net_w).to(device)
        t = torch.cat([h.detach().reshape(n, -1, h.shape[-1]) for h in heads], 1).to(dtype)
        steps = self._steps(device)
        delta, stats = _delta(t, plan, setup, net_h, net_w, steps)
        need_grad = any(h.requires_grad for h in heads)
        per_head, grad = steps.totals(delta, setup.head, len(heads), setup.pred_opt["delta_normalizer"], need_grad)
        value = per_head.sum()
        if grad is not None:
            value = _Gradients.apply(value, grad, setup.offsets, *heads)
        opts = setup.opt
        obj_norm = (
            opts["obj_normalizer"].table if opts["obj_normalizer"].table is not None else opts["obj_normalizer"].value
        )
        iou_norm = (
            opts["iou_normalizer"].table if opts["iou_normalizer"].table is not None else opts["iou_normalizer"].value
        )
        count, iou_loss = stats
        cost = torch.where(
            setup.show_details,
            iou_norm * (iou_loss / count.clamp(min=1)) + obj_norm * (per_head[1] + per_head[2]),
            per_head.sum(0),
        )
        self.deltas = [
            delta[:, off : off + a * lh * lw].view(n, a, lh, lw, -1)
            for off, (a, lh, lw) in zip(setup.offsets, sizes, strict=True)
        ]
        self.parts = LossParts(
            box=per_head[0].sum(),
            objectness=per_head[1].sum(),
            classes=per_head[2].sum(),
            per_head=[tuple(per_head[:, k]) for k in range(len(heads))],
            darknet_cost=list(cost),
            assignments=list(count),
        )
        return value

    def _steps(self, device: torch.device) -> _Steps:
        compiled = self.compile
        if compiled is None:
            compiled = device.type == "cuda" and _has_triton()
        return _compiled_steps() if compiled else _EAGER

    def _setup(self, device: torch.device, dtype: torch.dtype, sizes: list[tuple[int, int, int]]) -> _Setup:
        key = (device, dtype, tuple(sizes))
        setup = self._setups.get(key)
        if setup is None:
            setup = self._setups[key] = _setup(self.options, sizes, device, dtype)
        return setup

    def _check_heads(self, heads: Sequence[Tensor]) -> list[Tensor]:
        if isinstance(heads, Tensor) or not isinstance(heads, (list, tuple)):
            raise TypeError(
                f"heads must be the list of per-head tensors a Darknet model returns in training mode "
                f"(call model.train()), got {type(heads).__name__}"
            )
        heads = list(heads)
        if len(heads) != len(self.options):
            raise ValueError(f"heads: {len(heads)} tensors for a model with {len(self.options)} [yolo] layers")
        n = None
        for k, (head, opts) in enumerate(zip(heads, self.options, strict=True)):
            want = f"(N, {len(opts.mask)}, H, W, {5 + opts.classes})"
            if not isinstance(head, Tensor):
                raise TypeError(f"heads[{k}] (layer {opts.layer}) is a {type(head).__name__}, expected a tensor {want}")
            if head.dim() != 5 or head.shape[1] != len(opts.mask) or head.shape[4] != 5 + opts.classes:
                raise ValueError(f"heads[{k}] (layer {opts.layer}) has shape {tuple(head.shape)}, expected {want}")
            if not head.is_floating_point():
                raise TypeError(f"heads[{k}] (layer {opts.layer}) is {head.dtype}, expected a floating tensor")
            if n is not None and (head.shape[0] != n or head.device != heads[0].device or head.dtype != heads[0].dtype):
                raise ValueError(
                    f"heads[{k}] (layer {opts.layer}): batch {head.shape[0]} {head.dtype} on {head.device}, "
                    f"heads[0]: batch {n} {heads[0].dtype} on {heads[0].device}; all heads come from one forward pass"
                )
            n = head.shape[0]
        return heads

    def _input_size(self, heads: list[Tensor], input_size: tuple[int, int] | None) -> tuple[int, int]:
        if input_size is not None:
            h, w = (int(v) for v in input_size)
            if h < 1 or w < 1:
                raise ValueError(f"input_size={input_size}: must be a positive (height, width)")
            return h, w
        sizes = {(head.shape[2] * sh, head.shape[3] * sw) for head, (sh, sw) in zip(heads, self.strides, strict=True)}
        if len(sizes) != 1 or any(v != int(v) for v in next(iter(sizes))):
            raise ValueError(
                f"cannot infer the input size from the heads' sizes and the model's strides ({sorted(sizes)}); "
                "pass input_size=(height, width)"
            )
        h, w = next(iter(sizes))
        return int(h), int(w)


def _prepare_targets(targets: Tensor, n: int, classes: int, device: torch.device, dtype: torch.dtype) -> _Truths:
    """Check the targets and sort them by image on the host, in NumPy: a few hundred rows, where
    each torch operation would cost more to dispatch than to compute."""
    if not isinstance(targets, Tensor):
        raise TypeError(
            f"targets must be a tensor (M, 6): image index, class, cx, cy, w, h; got {type(targets).__name__}"
        )
    if targets.dim() != 2 or targets.shape[1] != 6:
        raise ValueError(
            f"targets must be (M, 6): image index, class, cx, cy, w, h (relative); got shape {tuple(targets.shape)}"
        )
    if not targets.is_floating_point():
        raise TypeError(f"targets must be a floating tensor (M, 6), got {targets.dtype}; use targets.float()")
    if targets.device != device and targets.device.type != "cpu":
        raise ValueError(f"targets are on {targets.device}, the heads on {device}; give them on the CPU or on {device}")
    t = targets.detach().to(device="cpu", dtype=dtype).numpy()  # on the heads' GPU: one synchronization
    img, cls, x, y, w, h = t.T
    problems = (
        (~np.isfinite(t).all(1), "is not finite"),
        ((img != np.floor(img)) | (img < 0) | (img >= n), f"has an image index outside 0..{n - 1} (batch of {n})"),
        ((cls != np.floor(cls)) | (cls < 0) | (cls >= classes), f"has a class outside 0..{classes - 1}"),
        ((x < 0) | (x >= 1) | (y < 0) | (y >= 1), "has a centre (cx, cy) outside [0, 1)"),
        ((w <= 0) | (w > 1) | (h <= 0) | (h > 1), "has a size (w, h) outside (0, 1]"),
    )
    for mask, what in problems:
        rows = np.flatnonzero(mask)
        if rows.size:
            r = int(rows[0])
            row = ", ".join(f"{v:g}" for v in targets[r].tolist())
            raise ValueError(
                f"targets row {r} ({row}) {what}; rows are image index, class, cx, cy, w, h ({rows.size} bad row(s))"
            )
    k = t.shape[0]
    image = img.astype(np.int64)
    counts = np.bincount(image, minlength=n)
    order = np.argsort(image, kind="stable")
    t, image = t[order], image[order]
    rank = np.arange(k) - (np.cumsum(counts) - counts)[image]
    first_zero = np.full(n, k, dtype=np.int64)
    np.minimum.at(first_zero, image, np.where(t[:, 2] == 0, rank, k))
    per_image = int(counts.max()) if k else 0
    return _Truths(image, t[:, 1].astype(np.int64), np.ascontiguousarray(t[:, 2:6]), rank, first_zero[image], per_image)


@dataclass
class _Plan(Generic[_A]):
    """What depends on the targets only, computed on the host (NumPy arrays) and then copied to the
    heads' device (tensors): the truths, padded per image for step 1, and step 2's (truth, anchor)
    assignments, grouped by cell in darknet's order within a cell, with the rounds of writes (one
    assignment per cell per round)."""

    truths: _Truths[_A]
    padded: _A  # (N, per_image, 4)
    listed: _A  # (N,) the length of each image's truth list
    head: _A  # (R,) per assignment: its head
    cell: _A  # (R,) image * P + the head's offset + prediction
    rounds: _A  # (R,) assignment indices, round after round
    round_sizes: list[int]
    counts: _A  # (H,) assignments per head
    average: _A  # cells step 3 looks at (assignments of heads with iou_thresh < 1)
    # per assignment, gathered on the host rather than by launches on the device:
    box: _A  # (R, 4) the truth's box
    cls: _A  # (R,) its class
    anchor_wh: _A  # (R, 2) its anchor's w, h (pixels)
    cols: _A  # (R, 4) the cell's column and row, its head's columns and rows (compute dtype)

    def to(self: _Plan[np.ndarray], device: torch.device) -> _Plan[Tensor]:
        """The tensors on ``device``, in two transfers from pinned memory, without waiting for it."""
        tr = self.truths
        pinned = device.type == "cuda"

        def move(*parts: np.ndarray) -> list[Tensor]:
            flat = torch.from_numpy(np.concatenate([a.reshape(-1) for a in parts]))
            flat = (flat.pin_memory() if pinned else flat).to(device, non_blocking=pinned)
            return [t.view(a.shape) for t, a in zip(flat.split([a.size for a in parts]), parts, strict=True)]

        image, truth_cls, rank, end, listed, head, cell, rounds, counts, average, cls = move(
            tr.image, tr.cls, tr.rank, tr.end, self.listed, self.head, self.cell, self.rounds, self.counts,
            self.average, self.cls,
        )  # fmt: skip
        truth_box, padded, box, anchor_wh, cols = move(tr.box, self.padded, self.box, self.anchor_wh, self.cols)
        return _Plan(
            _Truths(image, truth_cls, truth_box, rank, end, tr.per_image), padded, listed, head, cell, rounds,
            self.round_sizes, counts, average, box, cls, anchor_wh, cols,
        )  # fmt: skip


@dataclass
class _PlanConstants:
    """The per-head constants planning reads, as NumPy arrays (built once per dtype and input size)."""

    anchors: np.ndarray  # (H, T, 2) pixels
    anchor_of: np.ndarray  # (H, T)
    head_lw: np.ndarray  # (H,)
    head_lh: np.ndarray
    head_offset: np.ndarray
    count: int  # P
    iou_thresh: np.ndarray  # (H,)
    max_boxes: np.ndarray  # (H,)
    thresh_kinds: list[str]

    @classmethod
    def from_setup(cls, s: _Setup) -> _PlanConstants:
        def table(name: str, dtype: torch.dtype) -> np.ndarray:
            # in the compute dtype, as darknet compares its float options with float IoUs
            o = s.opt[name]
            values = torch.full((len(s.sizes),), o.value, dtype=dtype) if o.table is None else o.table.cpu()
            return values.to(dtype).numpy()

        return cls(
            s.anchors.cpu().numpy(), s.anchor_of.cpu().numpy(), s.head_lw.cpu().numpy(), s.head_lh.cpu().numpy(),
            s.head_offset.cpu().numpy(), s.count, table("iou_thresh", s.anchors.dtype),
            table("max_boxes", torch.long), s.thresh_kinds,
        )  # fmt: skip


def _shape_iou(anchor_wh: np.ndarray, box: np.ndarray, kind: str = "iou") -> np.ndarray:
    """(H, K, T): each head's anchor shapes (H, T, 2), relative, against the truths' (K, 4) w, h,
    all centred at 0. For "iou" the same operations as box_iou in NumPy (min(w) is the overlap of
    centred sides); the other kinds through box_iou_kind."""
    a = anchor_wh[:, None]  # (H, 1, T, 2)
    b = box[None, :, None, 2:]  # (1, K, 1, 2)
    if kind != "iou":
        zeros = np.zeros_like
        centred = (torch.from_numpy(np.concatenate([zeros(v), v], -1)) for v in np.broadcast_arrays(a, b))
        return box_iou_kind(kind, *centred).numpy()
    overlap = np.minimum(a, b)
    inter = overlap[..., 0] * overlap[..., 1]
    union = a[..., 0] * a[..., 1] + b[..., 0] * b[..., 1] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter == 0) | (union == 0), 0.0, inter / union).astype(box.dtype)


def _plan(truths: _Truths[np.ndarray], c: _PlanConstants, n: int, net_h: int, net_w: int) -> _Plan[np.ndarray]:
    """Step 2's assignments: each truth to its best anchor of all ``num`` (shape IoU), and with
    iou_thresh < 1 to the other anchors of the head's mask whose shape IoU (iou_thresh_kind) is
    above it; only heads whose mask holds the anchor."""
    heads, p = len(c.head_lw), c.count
    listed = truths.rank < truths.end
    # at least one column (zeros that no image lists), so that step 1 has the same shape of work with no truths
    padded = np.zeros((n, max(truths.per_image, 1), 4), dtype=truths.box.dtype)
    padded[truths.image[listed], truths.rank[listed]] = truths.box[listed]
    count = np.bincount(truths.image[listed], minlength=n)
    empty = np.zeros(0, dtype=np.int64)
    nothing = np.zeros((0, 4), dtype=padded.dtype)
    none = _Plan(
        truths, padded, count, empty, empty, empty, [], np.zeros(heads, dtype=np.int64), empty, nothing, empty,
        nothing[:, :2], nothing,
    )  # fmt: skip
    k_total = truths.image.shape[0]
    if not k_total:
        return none
    # each head's anchor shapes against each truth's, as boxes centred at 0: (H, K, T)
    anchor_wh = c.anchors / np.array([net_w, net_h], dtype=truths.box.dtype)
    best_n = _shape_iou(anchor_wh, truths.box).argmax(2)  # the first of equal IoUs, as darknet's strict '>'
    in_mask = (c.anchor_of >= 0)[:, None, :]
    is_best = np.arange(c.anchor_of.shape[1]) == best_n[..., None]
    match = in_mask & is_best
    thr = c.iou_thresh
    if (thr < 1).any():
        kind_iou = np.zeros(match.shape, dtype=thr.dtype)
        for kind in sorted(set(c.thresh_kinds)):
            uses = np.array([k == kind for k in c.thresh_kinds])[:, None, None]
            kind_iou = np.where(uses, _shape_iou(anchor_wh, truths.box, kind), kind_iou)
        match |= in_mask & ~is_best & (kind_iou > thr[:, None, None]) & (thr < 1)[:, None, None]
    kept = listed[None] & (truths.rank[None] < c.max_boxes[:, None])
    mh, mk, mn = np.nonzero(match & kept[..., None])  # head, truth, anchor
    if not mh.size:
        return none
    # darknet's order within a head and image: truths in label order, for each its best anchor
    # first, then the others in anchor order
    order = (mh * k_total + mk) * (c.anchor_of.shape[1] + 1) + np.where(is_best[mh, mk, mn], 0, mn + 1)
    by_order = np.argsort(order, kind="stable")
    mh, mk, mn = mh[by_order], mk[by_order], mn[by_order]
    lw, lh = c.head_lw[mh], c.head_lh[mh]
    box = truths.box
    ti = (box[mk, 0] * lw.astype(box.dtype)).astype(np.int64)  # (int)(truth.x * l.w)
    tj = (box[mk, 1] * lh.astype(box.dtype)).astype(np.int64)
    cell = truths.image[mk] * p + c.head_offset[mh] + (c.anchor_of[mh, mn] * lh + tj) * lw + ti
    by_cell = np.argsort(cell, kind="stable")  # grouped per cell, in that order within a cell
    mh, mk, mn, cell, ti, tj, lw, lh = (v[by_cell] for v in (mh, mk, mn, cell, ti, tj, lw, lh))
    pos = np.arange(cell.shape[0])
    first = np.ones(cell.shape, dtype=bool)
    first[1:] = cell[1:] != cell[:-1]
    round_of = pos - np.maximum.accumulate(np.where(first, pos, 0))
    rounds = np.argsort(round_of, kind="stable")
    average = cell[first & (thr[mh] < 1)]
    return _Plan(
        truths, padded, count, mh, cell, rounds, np.bincount(round_of).tolist(), np.bincount(mh, minlength=heads),
        average, box[mk], truths.cls[mk], c.anchors[mh, mn].astype(box.dtype),
        np.stack([ti, tj, lw, lh], 1).astype(box.dtype),
    )  # fmt: skip


def _class_write(current: Tensor, out_cls: Tensor, cls: Tensor, head: Tensor, s: _Setup) -> Tensor:
    """delta_yolo_class on rows of class deltas (R, C): ``current`` the deltas before the call,
    ``out_cls`` the class scores, ``cls`` (R,) the truth's class, ``head`` (R,) its head. Returns
    the rows after it."""
    r = torch.arange(cls.shape[0], device=cls.device)
    eps = s.opt["label_smooth_eps"].at(head)  # with eps = 0 these are exactly 1 and 0
    y_pos = 1.0 * (1 - eps) + 0.5 * eps
    y_neg = 0.0 * (1 - eps) + 0.5 * eps
    cur_c = current[r, cls]
    o_c = out_cls[r, cls]
    # the truth's class already has a delta: only that entry is rewritten
    v = y_pos - o_c
    single = torch.where(torch.isfinite(v), v, cur_c)
    if s.cls_mult is not None:
        single = single * s.cls_mult[head, cls]
    rows_a = current.clone()
    rows_a[r, cls] = single
    # otherwise every class is (re)written
    # scatter_ with a number: index_put_ with one would copy it to the device and wait
    onehot = torch.zeros_like(current).scatter_(1, cls[:, None], 1.0)
    if isinstance(eps, Tensor):
        y_pos, y_neg = y_pos[:, None], y_neg[:, None]
    y = onehot * (y_pos - y_neg) + y_neg
    vb = y - out_cls
    rows_b = torch.where(torch.isfinite(vb), vb, current)
    if s.cls_factor is not None:
        rows_b[r, cls] = rows_b[r, cls] * s.cls_factor[head, cls]
    focal = s.opt["focal_loss"].at(head)
    if focal is not False:
        pt = o_c + 0.000000000000001
        grad = -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
        rows_f = (onehot - out_cls) * (0.5 * grad)[:, None]
        rows_b = _where(focal if isinstance(focal, bool) else focal[:, None], rows_f, rows_b)
    return torch.where((cur_c != 0)[:, None], rows_a, rows_b)


def _box_delta(
    pred: Tensor,
    out_xy: Tensor,
    raw_wh: Tensor,
    truth: Tensor,
    anchor: Tensor,
    i: Tensor,
    j: Tensor,
    lw: Tensor,
    lh: Tensor,
    net_w: int,
    net_h: int,
    norm: Tensor,
    new_coords: Tensor | bool,
    max_delta: Tensor | float,
    kind: str,
) -> Tensor:
    """delta_yolo_box's contribution (R, 4) for R (prediction, truth) pairs of one iou_loss kind:
    ``pred``/``truth`` (R, 4) boxes, ``out_xy`` (R, 2) the outputs x, y, ``raw_wh`` (R, 2) w, h;
    ``norm`` is iou_normalizer times the class multiplier."""
    tx, ty, tw, th = truth.unbind(1)
    aw, ah = anchor.unbind(1)
    if kind == "mse":
        scale = 2 - tw * th
        gx = tx * lw - i
        gy = ty * lh - j
        if new_coords is True:
            gw, gh = torch.sqrt(tw * net_w / (4 * aw)), torch.sqrt(th * net_h / (4 * ah))
        elif new_coords is False:
            gw, gh = torch.log(tw * net_w / aw), torch.log(th * net_h / ah)
        else:
            gw = torch.where(new_coords, torch.sqrt(tw * net_w / (4 * aw)), torch.log(tw * net_w / aw))
            gh = torch.where(new_coords, torch.sqrt(th * net_h / (4 * ah)), torch.log(th * net_h / ah))
        target = torch.stack([gx, gy, gw, gh], 1)
        return scale[:, None] * (target - torch.cat([out_xy, raw_wh], 1)) * norm[:, None]
    wh = pred[:, 2:]
    pred = torch.cat([pred[:, :2], torch.where(wh == 0, 1.0, wh)], 1)  # darknet: "avoid nan in dx_box_iou"
    d = dx_box_iou(pred, truth, kind)
    if new_coords is False:  # predict exponential: the gradient of exp(t) for w, h only
        d = torch.cat([d[:, :2], d[:, 2:] * torch.exp(raw_wh)], 1)
    elif new_coords is not True:
        d = torch.cat([d[:, :2], d[:, 2:] * torch.where(new_coords[:, None], 1.0, torch.exp(raw_wh))], 1)
    d = _fix_nan_inf(d * norm[:, None])
    if isinstance(max_delta, Tensor):
        md = max_delta[:, None]
        return torch.minimum(torch.maximum(d, -md), md)
    return d.clamp(-max_delta, max_delta) if max_delta != _FLT_MAX else d


def _iou_shortfall(pred: Tensor, truth: Tensor, giou: Tensor | bool) -> Tensor:
    """1 - IoU per assignment (1 - GIoU where ``giou``): what darknet's cost averages."""
    iou = box_iou(pred, truth)
    if giou is False:
        return 1 - iou
    return 1 - _where(giou, box_iou_kind("giou", pred, truth), iou)


def _totals(delta: Tensor, head: Tensor, heads: int, dn: Tensor | float, grad: bool) -> tuple[Tensor, Tensor | None]:
    """Per head the box, objectness and class sums of delta² (3, H), and with ``grad`` the gradient
    handed to the heads, ``-delta_normalizer * delta``."""
    sq = (delta * delta).sum(0)
    terms = torch.stack([sq[:, :4].sum(1), sq[:, 4], sq[:, 5:].sum(1)])  # (3, P)
    per_head = torch.zeros(3, heads, dtype=delta.dtype, device=delta.device).index_add_(1, head, terms)
    if not grad:
        return per_head, None
    return per_head, -delta if isinstance(dn, float) and dn == 1 else delta * (-dn)


def _mask_positions(mask: tuple[int, ...], total: int) -> list[int]:
    """int_index(mask, n): the first position of anchor n in the mask, -1 if absent."""
    positions = [-1] * total
    for p, m in enumerate(mask):
        if positions[m] < 0:
            positions[m] = p
    return positions


def _boxes_by_kind(head: Tensor, kinds: list[str], compute: Callable[[str, Tensor | None], Tensor]) -> Tensor:
    """compute(kind, rows) for each iou_loss kind present among ``head``'s heads, into one (R, 4)."""
    if len(set(kinds)) == 1:
        return compute(kinds[0], None)
    out = None
    for kind in sorted(set(kinds)):
        heads = torch.tensor([k == kind for k in kinds], device=head.device)
        rows = heads[head].nonzero().squeeze(1)
        part = compute(kind, rows)
        out = torch.zeros(head.shape[0], 4, dtype=part.dtype, device=head.device) if out is None else out
        out[rows] = part
    assert out is not None
    return out


@dataclass
class _Decoded:
    """The heads' outputs as darknet's forward_yolo_layer sees them, flattened (N, P)."""

    raw: Tensor  # (N, P, 5 + C) the input of the yolo layer
    out_xy: Tensor  # (N, P, 2) activated and scaled x, y
    out_obj: Tensor  # (N, P)
    out_cls: Tensor  # (N, P, C)
    pred: Tensor  # (N, P, 4) x, y, w, h relative to the input

    def at(self, cells: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(pred box, output x/y, raw w/h) at flat (image * P + prediction) indices."""
        return (
            self.pred.reshape(-1, 4)[cells],
            self.out_xy.reshape(-1, 2)[cells],
            self.raw[..., 2:4].reshape(-1, 2)[cells],
        )


def _decode(t: Tensor, s: _Setup, net_h: int, net_w: int) -> _Decoded:
    o = s.pred_opt
    nc = o["new_coords"]
    # forward_yolo_layer's activation: logistic on x, y, objectness and classes unless new_coords
    if nc is True:
        out = t
    elif nc is False:
        out = torch.sigmoid(t)
    else:
        out = torch.where(nc[:, None], t, torch.sigmoid(t))
    sxy = o["scale_x_y"]
    sxy = sxy[:, None] if isinstance(sxy, Tensor) else sxy
    out_xy = out[..., :2] * sxy - 0.5 * (sxy - 1)
    raw_w, raw_h = t[..., 2], t[..., 3]
    px = (s.gx + out_xy[..., 0]) / s.lw
    py = (s.gy + out_xy[..., 1]) / s.lh
    if nc is True:
        pw, ph = raw_w * raw_w * 4 * s.aw / net_w, raw_h * raw_h * 4 * s.ah / net_h
    elif nc is False:
        pw, ph = torch.exp(raw_w) * s.aw / net_w, torch.exp(raw_h) * s.ah / net_h
    else:
        pw = torch.where(nc, raw_w * raw_w * 4 * s.aw / net_w, torch.exp(raw_w) * s.aw / net_w)
        ph = torch.where(nc, raw_h * raw_h * 4 * s.ah / net_h, torch.exp(raw_h) * s.ah / net_h)
    return _Decoded(t, out_xy, out[..., 4], out[..., 5:], torch.stack([px, py, pw, ph], -1))


def _best_truths(d: _Decoded, padded: Tensor, limit: Tensor, chunked: bool = True) -> tuple[Tensor, Tensor]:
    """Step 1: per prediction, the best IoU with a truth of its image's list and that truth's rank.
    ``padded`` (N, T, 4) each image's truths, ``limit`` (N, 1, P) how many of them count. Eagerly
    the (N, T, P) IoU is taken in chunks of truths to bound its memory; compiled (``chunked=False``)
    it is fused into the reduction and never stored."""
    n, p, _ = d.pred.shape
    tmax = padded.shape[1]
    chunk = max(1, (1 << 24) // (n * p)) if chunked else tmax
    best_iou = best_t = None
    for c0 in range(0, tmax, chunk):  # in truth order: a later chunk wins only with a larger IoU
        tb = padded[:, c0 : c0 + chunk, None]  # (N, c, 1, 4)
        iou = box_iou(d.pred[:, None], tb)  # (N, c, P)
        index = torch.arange(c0, c0 + tb.shape[1], device=padded.device).view(1, -1, 1)
        iou = torch.where(index < limit, iou, 0.0)
        idx = iou.argmax(1)  # the first of equal IoUs, as darknet's strict '>'
        m = iou.gather(1, idx[:, None]).squeeze(1)
        if best_iou is None:
            best_iou, best_t = m, idx
            continue
        better = m > best_iou
        best_iou = torch.where(better, m, best_iou)
        best_t = torch.where(better, idx + c0, best_t)
    assert best_iou is not None and best_t is not None
    return best_iou, best_t


def _truth_limit(plan: _Plan, s: _Setup, p: int) -> Tensor:
    """(N, 1, P): how many of each image's padded truths step 1 compares with (its list, at most
    the head's ``max``)."""
    limit = plan.listed.view(-1, 1, 1)
    most = s.pred_opt["max_boxes"]
    if isinstance(most, Tensor):
        return torch.minimum(limit, most.view(1, 1, p))
    return limit.clamp(max=most) if most < plan.padded.shape[1] else limit


def _step_one(
    t: Tensor, padded: Tensor, limit: Tensor, s: _Setup, net_h: int, net_w: int, chunked: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The dense part of step 1 for every prediction: the decoded outputs (out_xy, out_obj,
    out_cls, pred), the best truth's IoU and rank, and the objectness delta."""
    d = _decode(t, s, net_h, net_w)
    best_iou, best_t = _best_truths(d, padded, limit, chunked)
    return d.out_xy, d.out_obj, d.out_cls, d.pred, best_iou, best_t, _objectness(d, best_iou, s)


def _objectness(d: _Decoded, best_iou: Tensor, s: _Setup) -> Tensor:
    """Step 1's objectness delta of every prediction (before truth_thresh)."""
    o = s.pred_opt
    on, out_obj = o["obj_normalizer"], d.out_obj
    best_match = torch.where((d.out_cls > 0.25).any(-1), best_iou, 0.0)
    d_obj = on * (0 - out_obj)
    ignored = best_match > o["ignore_thresh"]
    smooth = o["objectness_smooth"]
    if smooth is not False:  # the larger of the two
        raised = ignored & (on * (best_match - out_obj) > d_obj)
        d_obj = torch.where(raised if smooth is True else raised & smooth, on * (best_match - out_obj), d_obj)
    if smooth is not True:
        d_obj = torch.where(ignored if smooth is False else ignored & ~smooth, 0.0, d_obj)
    return d_obj


def _delta(
    t: Tensor, plan: _Plan, s: _Setup, net_h: int, net_w: int, steps: _Steps
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """darknet's delta for every head at once: ``t`` (N, P, 5 + C) the heads' outputs (the yolo
    layers' inputs). Returns the delta and, per head, the number of (truth, anchor) assignments
    and the sum of 1 - IoU (1 - GIoU for giou) over them."""
    n, p, _ = t.shape
    out_xy, out_obj, out_cls, pred, best_iou, best_t, d_obj = steps.step_one(
        t, plan.padded, _truth_limit(plan, s, p), s, net_h, net_w, steps.chunked
    )
    d = _Decoded(t, out_xy, out_obj, out_cls, pred)
    delta = torch.zeros_like(t)
    flat = delta.view(n * p, -1)
    touched = []
    if not s.opt["truth_thresh"].uniform or s.opt["truth_thresh"].value < 1:
        o = s.pred_opt
        on, smooth = o["obj_normalizer"], o["objectness_smooth"]
        over = best_iou > o["truth_thresh"]
        positive = _where(smooth, on * (best_iou * best_iou - d.out_obj), on * (1 - d.out_obj))
        d_obj = torch.where(over, positive, d_obj)
        delta[..., 4] = d_obj
        touched.append(_truth_thresh_positives(flat, d, over, best_iou, best_t, plan.truths, s, net_h, net_w, steps))
    else:
        delta[..., 4] = d_obj
    iou_loss = _assign_truths(flat, d, plan, s, net_h, net_w, steps)

    # step 3: a cell's box deltas divided by its number of positive class deltas
    thr = s.opt["iou_thresh"]
    cells = plan.average
    if touched and touched[0].numel() and (not thr.uniform or thr.value < 1):  # truth_thresh's cells too
        extra = touched[0] if thr.uniform else touched[0][thr.at(s.head[touched[0] % p]) < 1]
        cells = torch.unique(torch.cat([cells, extra]))
    if cells.numel():
        rows = flat[cells]
        positives = (rows[:, 5:] > 0).sum(1)
        divide = (rows[:, 4] != 0) & (positives > 0)
        factor = torch.where(divide, positives.to(t.dtype), 1.0)
        flat[cells, :4] = rows[:, :4] / factor[:, None]
    return delta, (plan.counts, iou_loss)


def _truth_thresh_positives(
    flat: Tensor, d: _Decoded, over: Tensor, best_iou: Tensor, best_t: Tensor, truths: _Truths, s: _Setup,
    net_h: int, net_w: int, steps: _Steps,
) -> Tensor:  # fmt: skip
    """Step 1's predictions above truth_thresh: class and box deltas for their best truth. Returns
    the flat cells written."""
    n, p = over.shape
    cells = over.view(-1).nonzero().squeeze(1)
    if not cells.numel():
        return cells
    b, q = cells // p, cells % p
    head = s.head[q]
    listed = truths.rank < truths.end
    lookup = torch.full((n, truths.per_image), -1, dtype=torch.long, device=cells.device)
    lookup[truths.image[listed], truths.rank[listed]] = listed.nonzero().squeeze(1)
    k = lookup[b, best_t.view(-1)[cells]]
    cls = truths.cls[k]
    cm = s.cls_mult[head, cls] if s.cls_mult is not None else torch.ones_like(cells, dtype=flat.dtype)
    out_cls = d.out_cls.reshape(n * p, -1)[cells]
    rows = steps.class_write(torch.zeros_like(out_cls), out_cls, cls, head, s)
    smooth = s.opt["objectness_smooth"].at(head)
    if smooth is not False:
        r = torch.arange(rows.shape[0], device=cells.device)
        value = cm * (best_iou.view(-1)[cells] ** 2 - out_cls[r, cls])
        rows[r, cls] = _where(smooth, value, rows[r, cls])
    flat[cells, 5:] = rows
    pred, oxy, rwh = d.at(cells)
    anchor = torch.stack([s.aw[q], s.ah[q]], 1)  # the prediction's own anchor

    def compute(kind: str, sel: Tensor | None) -> Tensor:
        pick = (lambda v: v) if sel is None else (lambda v: v[sel])
        h = pick(head)
        return steps.box_delta(
            pick(pred), pick(oxy), pick(rwh), truths.box[pick(k)],
            pick(anchor), pick(s.gx[q]), pick(s.gy[q]), pick(s.lw[q]), pick(s.lh[q]), net_w, net_h,
            s.opt["iou_normalizer"].at(h) * pick(cm), s.opt["new_coords"].at(h), s.opt["max_delta"].at(h), kind,
        )  # fmt: skip

    flat[cells, :4] += _boxes_by_kind(head, s.kinds, compute)
    return cells


def _assign_truths(flat: Tensor, d: _Decoded, plan: _Plan, s: _Setup, net_h: int, net_w: int, steps: _Steps) -> Tensor:
    """Step 2's writes: box deltas added, objectness set (with objectness_smooth only where still
    0), class deltas by delta_yolo_class, one assignment per cell per round in darknet's order.
    Returns per head the sum of 1 - IoU (1 - GIoU for giou) over the assignments."""
    heads = len(s.sizes)
    dtype = flat.dtype
    iou_loss = torch.zeros(heads, dtype=dtype, device=flat.device)
    if not plan.cell.numel():
        return iou_loss
    mh, cell, tbox, cls, cols = plan.head, plan.cell, plan.box, plan.cls, plan.cols
    cm = s.cls_mult[mh, cls] if s.cls_mult is not None else torch.ones_like(mh, dtype=dtype)
    pred, oxy, rwh = d.at(cell)
    anchor = plan.anchor_wh  # the truth's anchor (n), whose shape the mask position has

    def compute(kind: str, sel: Tensor | None) -> Tensor:
        pick = (lambda v: v) if sel is None else (lambda v: v[sel])
        h, c = pick(mh), pick(cols)
        return steps.box_delta(
            pick(pred), pick(oxy), pick(rwh), pick(tbox), pick(anchor), c[:, 0], c[:, 1], c[:, 2], c[:, 3], net_w,
            net_h, s.opt["iou_normalizer"].at(h) * pick(cm), s.opt["new_coords"].at(h), s.opt["max_delta"].at(h),
            kind,
        )  # fmt: skip

    box_d = _boxes_by_kind(mh, s.kinds, compute)
    obj_v = cm * s.opt["obj_normalizer"].at(mh) * (1 - d.out_obj.reshape(-1)[cell])
    out_cls = d.out_cls.reshape(flat.shape[0], -1)[cell]
    iou_loss.index_add_(0, mh, steps.iou_shortfall(pred, tbox, s.opt["giou_cost"].at(mh)))
    smooth = s.opt["objectness_smooth"].at(mh)
    start = 0
    for size in plan.round_sizes:  # a cell at most once a round: its rows read, rewritten, put back
        sel = plan.rounds[start : start + size]
        start += size
        c = cell[sel]
        flat[c] = steps.round_rows(flat[c], sel, box_d, obj_v, out_cls, cls, mh, smooth, s)
    return iou_loss


def _round_rows(
    rows: Tensor, sel: Tensor, box_d: Tensor, obj_v: Tensor, out_cls: Tensor, cls: Tensor, head: Tensor,
    smooth: Tensor | bool, s: _Setup,
) -> Tensor:  # fmt: skip
    """One round of step 2's writes on the rows (R, 5 + C) of its cells: the assignments ``sel``'s
    box deltas added, objectness set (with objectness_smooth only where still 0), class deltas by
    delta_yolo_class."""
    obj = obj_v[sel]
    if smooth is not False:
        cur = rows[:, 4]
        obj = torch.where((cur != 0) if smooth is True else (cur != 0) & smooth[sel], cur, obj)
    classes = _class_write(rows[:, 5:], out_cls[sel], cls[sel], head[sel], s)
    return torch.cat([rows[:, :4] + box_d[sel], obj[:, None], classes], 1)


@dataclass(frozen=True)
class _Steps:
    """The loss's element-wise pieces, called eagerly or through torch.compile. Eagerly each is
    tens to hundreds of small kernels on tensors of a few thousand elements, whose launches, not
    their work, bound the loss on a GPU; compiled, each is a few fused kernels."""

    step_one: Callable[..., tuple[Tensor, ...]]
    box_delta: Callable[..., Tensor]
    class_write: Callable[..., Tensor]
    round_rows: Callable[..., Tensor]
    iou_shortfall: Callable[..., Tensor]
    totals: Callable[..., tuple[Tensor, Tensor | None]]
    chunked: bool  # step 1's IoU in chunks of truths (eager); compiled, the reduction never stores it


_EAGER = _Steps(_step_one, _box_delta, _class_write, _round_rows, _iou_shortfall, _totals, chunked=True)


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return False
    return has_triton()


@functools.cache
def _compiled_steps() -> _Steps:
    # dynamic shapes: the number of truths and of assignments changes with every batch
    return _Steps(
        torch.compile(_step_one, dynamic=True),
        torch.compile(_box_delta, dynamic=True),
        torch.compile(_class_write, dynamic=True),
        torch.compile(_round_rows, dynamic=True),
        torch.compile(_iou_shortfall, dynamic=True),
        torch.compile(_totals, dynamic=True),
        chunked=False,
    )


__all__ = ["IOU_LOSSES", "LossOptionError", "LossParts", "YoloHeadOptions", "YoloLoss", "box_iou", "dx_box_iou"]
