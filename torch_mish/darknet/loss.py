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
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
# box.c, elementwise on tensors of boxes (x, y, w, h: centre and size)


def box_iou(ax: Tensor, ay: Tensor, aw: Tensor, ah: Tensor, bx: Tensor, by: Tensor, bw: Tensor, bh: Tensor) -> Tensor:
    """box_iou: intersection over union; 0 when the intersection or the union is 0."""
    ow = torch.minimum(ax + aw / 2, bx + bw / 2) - torch.maximum(ax - aw / 2, bx - bw / 2)
    oh = torch.minimum(ay + ah / 2, by + bh / 2) - torch.maximum(ay - ah / 2, by - bh / 2)
    inter = torch.where((ow < 0) | (oh < 0), torch.zeros_like(ow), ow * oh)
    union = aw * ah + bw * bh - inter
    ok = (inter != 0) & (union != 0)
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(inter))


def _enclosing(ax: Tensor, ay: Tensor, aw: Tensor, ah: Tensor, bx: Tensor, by: Tensor, bw: Tensor, bh: Tensor):
    top = torch.minimum(ay - ah / 2, by - bh / 2)
    bot = torch.maximum(ay + ah / 2, by + bh / 2)
    left = torch.minimum(ax - aw / 2, bx - bw / 2)
    right = torch.maximum(ax + aw / 2, bx + bw / 2)
    return right - left, bot - top


def box_iou_kind(kind: str, a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> Tensor:
    """box_iou_kind(a, b, kind): box_iou, box_giou, box_diou or box_ciou (a is the prediction)."""
    iou = box_iou(*a, *b)
    if kind == "iou":
        return iou
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    cw, ch = _enclosing(*a, *b)
    if kind == "giou":
        c = cw * ch
        union = aw * ah + bw * bh - _intersection(*a, *b)
        safe = torch.where(c == 0, torch.ones_like(c), c)
        return torch.where(c == 0, iou, iou - (c - union) / safe)
    c = cw * cw + ch * ch
    safe = torch.where(c == 0, torch.ones_like(c), c)
    dist = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    if kind == "diou":
        return torch.where(c == 0, iou, iou - torch.pow(dist / safe, 0.6))
    if kind != "ciou":
        raise ValueError(f"unknown IoU kind {kind!r}")
    dar = torch.atan(bw / bh) - torch.atan(aw / ah)
    ar_loss = (4 / (math.pi * math.pi)) * dar * dar
    alpha = ar_loss / (1 - iou + ar_loss + 0.000001)
    return torch.where(c == 0, iou, iou - (dist / safe + alpha * ar_loss))


def _intersection(ax: Tensor, ay: Tensor, aw: Tensor, ah: Tensor, bx: Tensor, by: Tensor, bw: Tensor, bh: Tensor):
    ow = torch.minimum(ax + aw / 2, bx + bw / 2) - torch.maximum(ax - aw / 2, bx - bw / 2)
    oh = torch.minimum(ay + ah / 2, by + bh / 2) - torch.maximum(ay - ah / 2, by - bh / 2)
    return torch.where((ow < 0) | (oh < 0), torch.zeros_like(ow), ow * oh)


def _div(num: Tensor, den: Tensor) -> Tensor:
    return num / den  # IEEE: x/0 is +-inf, 0/0 NaN; darknet's fix_nan_inf maps both to 0 at the end


def dx_box_iou(pred: tuple[Tensor, ...], truth: tuple[Tensor, ...], kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx_box_iou(pred, truth, iou_loss): the gradient of the (G/D/C)IoU with respect to the
    prediction's x, y, w, h as darknet computes it (its ``dt, db, dl, dr`` fields, which hold
    dx, dy, dw, dh)."""
    px, py, pw, ph = pred
    tx, ty, tw, th = truth
    p_top, p_bot, p_left, p_right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    pred_t, pred_b = torch.minimum(p_top, p_bot), torch.maximum(p_top, p_bot)
    pred_l, pred_r = torch.minimum(p_left, p_right), torch.maximum(p_left, p_right)
    t_top, t_bot, t_left, t_right = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    x_area = (pred_b - pred_t) * (pred_r - pred_l)
    xhat = (t_bot - t_top) * (t_right - t_left)
    ih = torch.minimum(pred_b, t_bot) - torch.maximum(pred_t, t_top)
    iw = torch.minimum(pred_r, t_right) - torch.maximum(pred_l, t_left)
    inter = iw * ih  # not clamped: darknet's I here may be a product of two negative extents
    union = x_area + xhat - inter
    s = (px - tx) * (px - tx) + (py - ty) * (py - ty)
    g_cw = torch.maximum(pred_r, t_right) - torch.minimum(pred_l, t_left)
    g_ch = torch.maximum(pred_b, t_bot) - torch.minimum(pred_t, t_top)
    g_c = g_cw * g_ch
    zero = torch.zeros_like(px)

    dx_t, dx_b = -(pred_r - pred_l), pred_r - pred_l
    dx_l, dx_r = -(pred_b - pred_t), pred_b - pred_t
    di_t = torch.where(pred_t > t_top, -iw, zero)
    di_b = torch.where(pred_b < t_bot, iw, zero)
    di_l = torch.where(pred_l > t_left, -ih, zero)
    di_r = torch.where(pred_r < t_right, ih, zero)
    du_t, du_b, du_l, du_r = dx_t - di_t, dx_b - di_b, dx_l - di_l, dx_r - di_r
    dc_t = torch.where(pred_t < t_top, -g_cw, zero)
    dc_b = torch.where(pred_b > t_bot, g_cw, zero)
    dc_l = torch.where(pred_l < t_left, -g_ch, zero)
    dc_r = torch.where(pred_r > t_right, g_ch, zero)

    uu = union * union
    pos = union > 0
    p_dt = torch.where(pos, _div(union * di_t - inter * du_t, uu), zero)
    p_db = torch.where(pos, _div(union * di_b - inter * du_b, uu), zero)
    p_dl = torch.where(pos, _div(union * di_l - inter * du_l, uu), zero)
    p_dr = torch.where(pos, _div(union * di_r - inter * du_r, uu), zero)
    # darknet assigns these in sequence: where top >= bottom both become the old p_db
    p_dt = torch.where(p_top < p_bot, p_dt, p_db)
    p_dl = torch.where(p_left < p_right, p_dl, p_dr)

    no_overlap = (iw <= 0) | (ih <= 0)
    if kind == "giou":
        cc = g_c * g_c
        g = [_div(g_c * du - union * dc, cc) for du, dc in ((du_t, dc_t), (du_b, dc_b), (du_l, dc_l), (du_r, dc_r))]
        p = [torch.where(g_c > 0, v + gv, v) for v, gv in zip((p_dt, p_db, p_dl, p_dr), g, strict=True)]
        p_dt, p_db, p_dl, p_dr = (torch.where(no_overlap, gv, v) for v, gv in zip(p, g, strict=True))

    c_t = torch.minimum(py - ph / 2, ty - th / 2)
    c_b = torch.maximum(py + ph / 2, ty + th / 2)
    c_l = torch.minimum(px - pw / 2, tx - tw / 2)
    c_r = torch.maximum(px + pw / 2, tx + tw / 2)
    cw, ch = c_r - c_l, c_b - c_t
    c = cw * cw + ch * ch

    p_dx, p_dy = p_dl + p_dr, p_dt + p_db
    p_dw, p_dh = p_dr - p_dl, p_db - p_dt
    if kind in ("diou", "ciou"):
        one = torch.ones_like(px)
        dct_dy = torch.where(pred_t < t_top, one, zero)
        dct_dh = torch.where(pred_t < t_top, -0.5 * one, zero)
        dcb_dy = torch.where(pred_b > t_bot, one, zero)
        dcb_dh = torch.where(pred_b > t_bot, 0.5 * one, zero)
        dcl_dx = torch.where(pred_l < t_left, one, zero)
        dcl_dw = torch.where(pred_l < t_left, -0.5 * one, zero)
        dcr_dx = torch.where(pred_r > t_right, one, zero)
        dcr_dw = torch.where(pred_r > t_right, 0.5 * one, zero)
        dcw_dx, dcw_dw = dcr_dx - dcl_dx, dcr_dw - dcl_dw
        dch_dy, dch_dh = dcb_dy - dct_dy, dcb_dh - dct_dh
        # dCw/dy, dCw/dh, dCh/dx, dCh/dw are 0: their products are left out
        cc = c * c
        ex = _div(2 * (tx - px) * c - (2 * cw * dcw_dx) * s, cc)
        ey = _div(2 * (ty - py) * c - (2 * ch * dch_dy) * s, cc)
        ew = _div((2 * cw * dcw_dw) * s, cc)
        eh = _div((2 * ch * dch_dh) * s, cc)
        if kind == "ciou":
            dar = torch.atan(tw / th) - torch.atan(pw / ph)
            ar_loss = (4 / (math.pi * math.pi)) * dar * dar
            alpha = ar_loss / (1 - _div(inter, union) + ar_loss + 0.000001)
            ew = ew + alpha * ((8 / (math.pi * math.pi)) * dar * ph)
            eh = eh + alpha * ((-8 / (math.pi * math.pi)) * dar * pw)
        p = [torch.where(c > 0, v + e, v) for v, e in zip((p_dx, p_dy, p_dw, p_dh), (ex, ey, ew, eh), strict=True)]
        p_dx, p_dy, p_dw, p_dh = (torch.where(no_overlap, e, v) for v, e in zip(p, (ex, ey, ew, eh), strict=True))
    return p_dx, p_dy, p_dw, p_dh


def _fix_nan_inf(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# The loss


@dataclass
class _Truths:
    """Valid target rows sorted by image (label order kept), with each row's rank in its image and
    the rank of the image's first ``cx == 0`` row (the end of its truth list)."""

    image: Tensor  # (K,) int64
    cls: Tensor  # (K,) int64
    box: Tensor  # (K, 4) compute dtype
    rank: Tensor  # (K,) int64
    end: Tensor  # (K,) int64: the truth list's end (first cx == 0 rank, or K) for the row's image


class _HeadGradient(torch.autograd.Function):
    """Hands a precomputed gradient to a head; its forward returns the loss value."""

    @staticmethod
    def forward(ctx, head: Tensor, grad: Tensor, value: Tensor) -> Tensor:  # noqa: ARG004
        ctx.save_for_backward(grad)
        ctx.dtype = head.dtype
        return value.clone()

    @staticmethod
    def backward(ctx, out_grad: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return (grad * out_grad).to(ctx.dtype), None, None


class YoloLoss(nn.Module):
    """Darknet's training signal for every [yolo] head of ``model`` (see the module docstring).

    ``forward(heads, targets, input_size=None)``: ``heads`` as ``model(x)`` returns them in
    training mode, ``targets`` (M, 6) floating: image index, class, cx, cy, w, h (cx..h relative to
    the input). ``input_size`` (height, width) of ``x`` defaults to the heads' sizes times the
    model's strides. Returns the loss value (float32; float64 for float64 heads); the gradient
    reaching head ``h`` is ``-delta_normalizer * delta_h``. After each call :attr:`parts` holds the
    terms (:class:`LossParts`) and :attr:`deltas` darknet's delta per head.
    """

    def __init__(self, model: Darknet) -> None:
        super().__init__()
        yolos = model.yolo_layers
        if not yolos:
            raise ValueError(f"{model.source}: the model has no [yolo] layers; YoloLoss trains [yolo] heads")
        for key in _NET_REFUSED:
            value = model.net_options.get(key)
            if value is not None and _number(f"{model.source}: [net]", key, value, False) != 0:
                raise LossOptionError(f"{model.source}: [net] {key}={value}: rejecting deltas is not implemented")
        self.options = [YoloHeadOptions.from_layer(y) for y in yolos]
        self.strides: list[tuple[float, float]] = []
        for yolo in yolos:
            _, h, w = model.shapes[yolo.index]
            self.strides.append((model.height / h, model.width / w))
        self.parts: LossParts | None = None
        self.deltas: list[Tensor] = []

    def extra_repr(self) -> str:
        return ", ".join(f"layer {o.layer}: {o.iou_loss}" for o in self.options)

    def forward(self, heads: Sequence[Tensor], targets: Tensor, input_size: tuple[int, int] | None = None) -> Tensor:
        heads = self._check_heads(heads)
        n = heads[0].shape[0]
        net_h, net_w = self._input_size(heads, input_size)
        dtype = torch.promote_types(heads[0].dtype, torch.float32)
        truths = _prepare_targets(targets, n, min(o.classes for o in self.options), heads[0].device, dtype)
        total = None
        per_head, costs, counts, deltas = [], [], [], []
        for head, opts in zip(heads, self.options, strict=True):
            delta, cost, count = _head_delta(head.detach().to(dtype), truths, opts, net_h, net_w)
            sq = delta * delta
            terms = (sq[..., :4].sum(), sq[..., 4].sum(), sq[..., 5:].sum())
            value = terms[0] + terms[1] + terms[2]
            if head.requires_grad:
                grad = delta * (-opts.delta_normalizer) if opts.delta_normalizer != 1 else -delta
                value = _HeadGradient.apply(head, grad, value)
            total = value if total is None else total + value
            per_head.append(terms)
            costs.append(cost)
            counts.append(count)
            deltas.append(delta)
        self.deltas = deltas
        self.parts = LossParts(
            box=sum(t[0] for t in per_head),
            objectness=sum(t[1] for t in per_head),
            classes=sum(t[2] for t in per_head),
            per_head=per_head,
            darknet_cost=costs,
            assignments=counts,
        )
        return total

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
            if n is not None and (head.shape[0] != n or head.device != heads[0].device):
                raise ValueError(
                    f"heads[{k}] (layer {opts.layer}): batch {head.shape[0]} on {head.device}, "
                    f"heads[0]: batch {n} on {heads[0].device}; all heads come from one forward pass"
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
    if targets.device != device:
        raise ValueError(f"targets are on {targets.device}, the heads on {device}; move them with targets.to(...)")
    t = targets.detach().to(dtype)
    img, cls, x, y, w, h = t.unbind(1)
    problems = (
        (~torch.isfinite(t).all(1), "is not finite"),
        ((img != torch.floor(img)) | (img < 0) | (img >= n), f"has an image index outside 0..{n - 1} (batch of {n})"),
        ((cls != torch.floor(cls)) | (cls < 0) | (cls >= classes), f"has a class outside 0..{classes - 1}"),
        ((x < 0) | (x >= 1) | (y < 0) | (y >= 1), "has a centre (cx, cy) outside [0, 1)"),
        ((w <= 0) | (w > 1) | (h <= 0) | (h > 1), "has a size (w, h) outside (0, 1]"),
    )
    bad = torch.stack([p for p, _ in problems]) if t.shape[0] else None
    if bad is not None and bool(bad.any()):
        for mask, what in problems:
            rows = mask.nonzero()
            if rows.numel():
                r = int(rows[0])
                row = ", ".join(f"{v:g}" for v in targets[r].tolist())
                raise ValueError(
                    f"targets row {r} ({row}) {what}; rows are image index, class, cx, cy, w, h "
                    f"({rows.numel()} bad row(s))"
                )
    order = torch.sort(img, stable=True).indices
    t = t[order]
    img = t[:, 0].long()
    k = t.shape[0]
    pos = torch.arange(k, device=device)
    start = torch.zeros(n, dtype=torch.long, device=device)
    counts = torch.bincount(img, minlength=n)
    start[1:] = torch.cumsum(counts, 0)[:-1]
    rank = pos - start[img]
    first_zero = torch.full((n,), k, dtype=torch.long, device=device)
    zero_rank = torch.where(t[:, 2] == 0, rank, torch.full_like(rank, k))
    first_zero = first_zero.scatter_reduce(0, img, zero_rank, "amin")
    return _Truths(img, t[:, 1].long(), t[:, 2:6].contiguous(), rank, first_zero[img])


def _class_write(current: Tensor, out_cls: Tensor, cls: Tensor, opts: YoloHeadOptions) -> Tensor:
    """delta_yolo_class on rows of class deltas (R, C): ``current`` the deltas before the call,
    ``out_cls`` the class scores, ``cls`` (R,) the truth's class. Returns the rows after it."""
    r = torch.arange(cls.shape[0], device=cls.device)
    eps = opts.label_smooth_eps
    y_pos = 1.0 * (1 - eps) + 0.5 * eps if eps else 1.0
    y_neg = 0.0 * (1 - eps) + 0.5 * eps if eps else 0.0
    mult = None
    if opts.class_multipliers is not None:
        mult = torch.tensor(opts.class_multipliers, dtype=current.dtype, device=current.device)[cls]
    cur_c = current[r, cls]
    o_c = out_cls[r, cls]
    # the truth's class already has a delta: only that entry is rewritten
    v = y_pos - o_c
    single = torch.where(torch.isfinite(v), v, cur_c)
    if mult is not None:
        single = single * mult
    rows_a = current.clone()
    rows_a[r, cls] = single
    # otherwise every class is (re)written
    onehot = torch.zeros_like(current)
    onehot[r, cls] = 1
    if opts.focal_loss:
        pt = o_c + 0.000000000000001
        grad = -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
        rows_b = (onehot - out_cls) * (0.5 * grad)[:, None]
    else:
        y = onehot * (y_pos - y_neg) + y_neg if eps else onehot
        vb = y - out_cls
        rows_b = torch.where(torch.isfinite(vb), vb, current)
        if mult is not None:
            rows_b[r, cls] = rows_b[r, cls] * (mult * opts.cls_normalizer)
    return torch.where((cur_c != 0)[:, None], rows_a, rows_b)


def _box_delta(
    pred: tuple[Tensor, ...],
    out_xy: tuple[Tensor, Tensor],
    raw_wh: tuple[Tensor, Tensor],
    truth: Tensor,
    anchor: Tensor,
    i: Tensor,
    j: Tensor,
    lw: int,
    lh: int,
    net_w: int,
    net_h: int,
    norm: Tensor,
    opts: YoloHeadOptions,
) -> Tensor:
    """delta_yolo_box's contribution (R, 4) for R (prediction, truth) pairs; ``norm`` is
    iou_normalizer times the class multiplier (R,)."""
    tx, ty, tw, th = truth.unbind(1)
    aw, ah = anchor.unbind(1)
    if opts.iou_loss == "mse":
        scale = 2 - tw * th
        gx = tx * lw - i
        gy = ty * lh - j
        if opts.new_coords:
            gw = torch.sqrt(tw * net_w / (4 * aw))
            gh = torch.sqrt(th * net_h / (4 * ah))
        else:
            gw = torch.log(tw * net_w / aw)
            gh = torch.log(th * net_h / ah)
        targets = (gx, gy, gw, gh)
        outs = (*out_xy, *raw_wh)
        return torch.stack([scale * (g - o) * norm for g, o in zip(targets, outs, strict=True)], 1)
    px, py, pw, ph = pred
    pw = torch.where(pw == 0, torch.ones_like(pw), pw)  # darknet: "avoid nan in dx_box_iou"
    ph = torch.where(ph == 0, torch.ones_like(ph), ph)
    dx, dy, dw, dh = dx_box_iou((px, py, pw, ph), (tx, ty, tw, th), opts.iou_loss)
    if not opts.new_coords:
        dw = dw * torch.exp(raw_wh[0])
        dh = dh * torch.exp(raw_wh[1])
    d = torch.stack([dx, dy, dw, dh], 1) * norm[:, None]
    d = _fix_nan_inf(d)
    if opts.max_delta != _FLT_MAX:
        d = d.clamp(-opts.max_delta, opts.max_delta)
    return d


def _mask_positions(mask: tuple[int, ...], total: int) -> list[int]:
    """int_index(mask, n): the first position of anchor n in the mask, -1 if absent."""
    positions = [-1] * total
    for p, m in enumerate(mask):
        if positions[m] < 0:
            positions[m] = p
    return positions


@dataclass
class _Decoded:
    """One head's outputs as darknet's forward_yolo_layer sees them, and its predicted boxes."""

    out_xy: Tensor  # (N, A, H, W, 2) activated and scaled x, y
    raw_w: Tensor  # (N, A, H, W) w, h entries (never activated)
    raw_h: Tensor
    out_obj: Tensor  # (N, A, H, W)
    out_cls: Tensor  # (N, A, H, W, C)
    pred: tuple[Tensor, Tensor, Tensor, Tensor]  # x, y, w, h relative to the input
    anchors: Tensor  # (total, 2) all anchors, pixels
    mult: Tensor | None  # class multipliers (C,)

    def at(self, cells: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """(pred box, output x/y, raw w/h) at flat cell indices."""
        pred = tuple(p.reshape(-1)[cells] for p in self.pred)
        oxy = (self.out_xy[..., 0].reshape(-1)[cells], self.out_xy[..., 1].reshape(-1)[cells])
        return pred, oxy, (self.raw_w.reshape(-1)[cells], self.raw_h.reshape(-1)[cells])


def _decode(t: Tensor, opts: YoloHeadOptions, net_h: int, net_w: int) -> _Decoded:
    n, a, lh, lw, _ = t.shape
    dev, dtype = t.device, t.dtype
    s = opts.scale_x_y
    # forward_yolo_layer's activation of its input (the head convolution's output)
    if opts.new_coords:
        out_xy = t[..., :2] * s - 0.5 * (s - 1)
        out_obj, out_cls = t[..., 4], t[..., 5:]
    else:
        out_xy = torch.sigmoid(t[..., :2]) * s - 0.5 * (s - 1)
        out_obj, out_cls = torch.sigmoid(t[..., 4]), torch.sigmoid(t[..., 5:])
    raw_w, raw_h = t[..., 2], t[..., 3]
    all_anchors = torch.tensor(opts.anchors, dtype=dtype, device=dev)
    anchors = all_anchors[torch.tensor(opts.mask, dtype=torch.long, device=dev)]
    aw, ah = anchors[:, 0].view(1, a, 1, 1), anchors[:, 1].view(1, a, 1, 1)
    px = (torch.arange(lw, device=dev, dtype=dtype).view(1, 1, 1, lw) + out_xy[..., 0]) / lw
    py = (torch.arange(lh, device=dev, dtype=dtype).view(1, 1, lh, 1) + out_xy[..., 1]) / lh
    if opts.new_coords:
        pw = raw_w * raw_w * 4 * aw / net_w
        ph = raw_h * raw_h * 4 * ah / net_h
    else:
        pw = torch.exp(raw_w) * aw / net_w
        ph = torch.exp(raw_h) * ah / net_h
    mult = None if opts.class_multipliers is None else torch.tensor(opts.class_multipliers, dtype=dtype, device=dev)
    return _Decoded(out_xy, raw_w, raw_h, out_obj, out_cls, (px, py, pw, ph), all_anchors, mult)


def _best_truths(d: _Decoded, truths: _Truths, keep: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Per prediction, the best IoU with a truth of its image and that truth's rank (step 1)."""
    timg, trank, tbox = truths.image[keep], truths.rank[keep], truths.box[keep]
    px, py, pw, ph = d.pred
    best_iou = torch.zeros_like(px)
    best_t = torch.zeros(px.shape, dtype=torch.long, device=px.device)
    tmax = int(trank.max()) + 1 if trank.numel() else 0
    if not tmax:
        return best_iou, best_t
    padded = torch.zeros(n, tmax, 4, dtype=px.dtype, device=px.device)
    padded[timg, trank] = tbox
    valid = torch.zeros(n, tmax, dtype=torch.bool, device=px.device)
    valid[timg, trank] = True
    chunk = max(1, (1 << 24) // px[0].numel())  # bounds the (N, A, H, W, chunk) IoU tensor
    for c0 in range(0, tmax, chunk):  # in truth order: a later chunk wins only with a larger IoU
        tb = padded[:, c0 : c0 + chunk]
        shape = (n, 1, 1, 1, tb.shape[1])
        iou = box_iou(
            px[..., None], py[..., None], pw[..., None], ph[..., None], *(tb[..., q].view(shape) for q in range(4))
        )
        iou = torch.where(valid[:, c0 : c0 + chunk].view(shape), iou, torch.zeros_like(iou))
        idx = iou.argmax(-1)  # the first of equal IoUs, as darknet's strict '>'
        m = iou.gather(-1, idx[..., None]).squeeze(-1)
        better = m > best_iou
        best_iou = torch.where(better, m, best_iou)
        best_t = torch.where(better, idx + c0, best_t)
    return best_iou, best_t


def _objectness(d: _Decoded, best_iou: Tensor, opts: YoloHeadOptions) -> Tensor:
    """Step 1's objectness delta of every prediction."""
    on, o = opts.obj_normalizer, d.out_obj
    best_match = torch.where((d.out_cls > 0.25).any(-1), best_iou, torch.zeros_like(best_iou))
    d_obj = on * (0 - o)
    ignored = best_match > opts.ignore_thresh
    if opts.objectness_smooth:
        smooth = on * (best_match - o)
        d_obj = torch.where(ignored & (smooth > d_obj), smooth, d_obj)
    else:
        d_obj = torch.where(ignored, torch.zeros_like(d_obj), d_obj)
    over = best_iou > opts.truth_thresh
    positive = on * (best_iou * best_iou - o) if opts.objectness_smooth else on * (1 - o)
    return torch.where(over, positive, d_obj)


def _truth_thresh_positives(
    flat: Tensor, d: _Decoded, truths: _Truths, keep: Tensor, best: tuple[Tensor, Tensor], opts: YoloHeadOptions,
    net_h: int, net_w: int,
) -> Tensor:  # fmt: skip
    """Step 1's predictions above truth_thresh: class and box deltas for their best truth. Returns
    the flat cells written."""
    best_iou, best_t = best
    n, a, lh, lw = best_iou.shape
    cells = (best_iou > opts.truth_thresh).view(-1).nonzero().squeeze(1)
    if not cells.numel():
        return cells
    timg, trank, tcls, tbox = truths.image[keep], truths.rank[keep], truths.cls[keep], truths.box[keep]
    b = cells // (a * lh * lw)
    anchor = (cells // (lh * lw)) % a
    j, i = (cells // lw) % lh, cells % lw
    lookup = torch.full((n, int(trank.max()) + 1), -1, dtype=torch.long, device=cells.device)
    lookup[timg, trank] = torch.arange(timg.shape[0], device=cells.device)
    k = lookup[b, best_t.view(-1)[cells]]
    cls = tcls[k]
    cm = d.mult[cls] if d.mult is not None else torch.ones_like(cells, dtype=flat.dtype)
    out_cls = d.out_cls.reshape(flat.shape[0], -1)[cells]
    rows = _class_write(torch.zeros_like(out_cls), out_cls, cls, opts)
    if opts.objectness_smooth:
        r = torch.arange(rows.shape[0], device=cells.device)
        rows[r, cls] = cm * (best_iou.view(-1)[cells] ** 2 - out_cls[r, cls])
    flat[cells, 5:] = rows
    anchors = d.anchors[torch.tensor(opts.mask, dtype=torch.long, device=cells.device)]
    pred, oxy, rwh = d.at(cells)
    flat[cells, :4] += _box_delta(
        pred, oxy, rwh, tbox[k], anchors[anchor], i.to(flat.dtype), j.to(flat.dtype), lw, lh, net_w, net_h,
        opts.iou_normalizer * cm, opts,
    )  # fmt: skip
    return cells


def _assign_truths(
    flat: Tensor, d: _Decoded, truths: _Truths, keep: Tensor, shape: tuple[int, ...], opts: YoloHeadOptions,
    net_h: int, net_w: int,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Step 2: each truth to its best anchor and, with iou_thresh < 1, to the other anchors of the
    mask above it, applied per cell in darknet's order. Returns the flat cells written, the number
    of assignments and the sum of 1 - IoU (1 - GIoU for giou) over them."""
    n, a, lh, lw = shape
    dev, dtype = flat.device, flat.dtype
    timg, tcls, tbox = truths.image[keep], truths.cls[keep], truths.box[keep]
    none = (torch.zeros(0, dtype=torch.long, device=dev), torch.zeros((), dtype=torch.long, device=dev))
    if not timg.numel():
        return *none, torch.zeros((), dtype=dtype, device=dev)
    total = d.anchors.shape[0]
    mask_index = torch.tensor(_mask_positions(opts.mask, total), dtype=torch.long, device=dev)
    ti = (tbox[:, 0] * lw).long()  # (int)(truth.x * l.w)
    tj = (tbox[:, 1] * lh).long()
    zero = torch.zeros_like(tbox[:, :1])
    shape_anchor = (zero, zero, (d.anchors[:, 0] / net_w)[None], (d.anchors[:, 1] / net_h)[None])
    shape_truth = (zero, zero, tbox[:, 2:3], tbox[:, 3:4])
    best_n = box_iou(*shape_anchor, *shape_truth).argmax(1)  # the first of equal IoUs, as darknet's strict '>'
    in_mask = (mask_index >= 0)[None]
    is_best = torch.arange(total, device=dev)[None] == best_n[:, None]
    match = in_mask & is_best
    if opts.iou_thresh < 1:
        kind_iou = box_iou_kind(opts.iou_thresh_kind, shape_anchor, shape_truth)
        match = match | (in_mask & ~is_best & (kind_iou > opts.iou_thresh))
    mk, mn = match.nonzero(as_tuple=True)  # row-major: truth order, then anchor order
    if not mk.numel():
        return *none, torch.zeros((), dtype=dtype, device=dev)
    # darknet's order: truths in label order; per truth its best anchor, then the others ascending
    order = mk * (total + 1) + torch.where(is_best[mk, mn], torch.zeros_like(mn), mn + 1)
    by_order = torch.argsort(order)
    mk, mn = mk[by_order], mn[by_order]
    cell = ((timg[mk] * a + mask_index[mn]) * lh + tj[mk]) * lw + ti[mk]
    by_cell = torch.sort(cell, stable=True).indices  # group per cell, keeping that order within a cell
    mk, mn, cell = mk[by_cell], mn[by_cell], cell[by_cell]
    pos = torch.arange(cell.shape[0], device=dev)
    first = torch.ones_like(cell, dtype=torch.bool)
    first[1:] = cell[1:] != cell[:-1]
    round_of = pos - torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values

    cls = tcls[mk]
    cm = d.mult[cls] if d.mult is not None else torch.ones_like(mk, dtype=dtype)
    pred, oxy, rwh = d.at(cell)
    box_d = _box_delta(
        pred, oxy, rwh, tbox[mk], d.anchors[mn], ti[mk].to(dtype), tj[mk].to(dtype), lw, lh, net_w, net_h,
        opts.iou_normalizer * cm, opts,
    )  # fmt: skip
    obj_v = cm * opts.obj_normalizer * (1 - d.out_obj.reshape(-1)[cell])
    out_cls = d.out_cls.reshape(flat.shape[0], -1)[cell]
    ious = box_iou_kind("giou" if opts.iou_loss == "giou" else "iou", pred, tuple(tbox[mk].unbind(1)))
    for r in range(int(round_of.max()) + 1):  # one (truth, anchor) per cell per round, in darknet's order
        sel = (round_of == r).nonzero().squeeze(1)
        c = cell[sel]
        flat[c, :4] += box_d[sel]
        if opts.objectness_smooth:
            cur = flat[c, 4]
            flat[c, 4] = torch.where(cur == 0, obj_v[sel], cur)
        else:
            flat[c, 4] = obj_v[sel]
        flat[c, 5:] = _class_write(flat[c, 5:], out_cls[sel], cls[sel], opts)
    return cell, torch.tensor(mk.shape[0], device=dev), (1 - ious).sum()


def _head_delta(
    t: Tensor, truths: _Truths, opts: YoloHeadOptions, net_h: int, net_w: int
) -> tuple[Tensor, Tensor, Tensor]:
    """darknet's delta for one head: (N, A, H, W, 5 + C) in t's dtype, its cost, and the number of
    (truth, anchor) assignments."""
    n, a, lh, lw, _ = t.shape
    d = _decode(t, opts, net_h, net_w)
    keep = (truths.rank < opts.max_boxes) & (truths.rank < truths.end)
    delta = torch.zeros(t.shape, dtype=t.dtype, device=t.device)
    flat = delta.view(n * a * lh * lw, -1)
    best = _best_truths(d, truths, keep, n)
    delta[..., 4] = _objectness(d, best[0], opts)
    touched = [_truth_thresh_positives(flat, d, truths, keep, best, opts, net_h, net_w)]
    cells, count, iou_loss = _assign_truths(flat, d, truths, keep, (n, a, lh, lw), opts, net_h, net_w)
    touched.append(cells)
    # step 3: a cell's box deltas divided by its number of positive class deltas
    touched_cells = torch.cat(touched)
    if opts.iou_thresh < 1 and touched_cells.numel():
        cells = torch.unique(touched_cells)
        rows = flat[cells]
        positives = (rows[:, 5:] > 0).sum(1)
        divide = (rows[:, 4] != 0) & (positives > 0)
        factor = torch.where(divide, positives.to(t.dtype), torch.ones_like(rows[:, 4]))
        flat[cells, :4] = rows[:, :4] / factor[:, None]
    sq = delta * delta
    if opts.iou_loss == "mse" or not opts.show_details:
        cost = sq.sum()
    else:
        cost = opts.iou_normalizer * (iou_loss / count.clamp(min=1)) + opts.obj_normalizer * sq[..., 4:].sum()
    return delta, cost, count


__all__ = ["IOU_LOSSES", "LossOptionError", "LossParts", "YoloHeadOptions", "YoloLoss", "box_iou", "dx_box_iou"]
