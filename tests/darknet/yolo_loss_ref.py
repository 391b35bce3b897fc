"""A reference of darknet's [yolo] training forward in float64 Python scalars, written as a plain
transcription of the semantics of AlexeyAB/darknet src/yolo_layer.c (forward_yolo_layer,
process_batch, delta_yolo_box, delta_yolo_class, averages_yolo_deltas) and src/box.c (box_iou,
box_giou/diou/ciou, dx_box_iou): loops over images, cells, anchors and truths on darknet's flat
layout (entry_index), one statement per darknet statement where it matters, independent of
torch_mish.darknet.loss's tensor formulation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from torch_mish.darknet.loss import YoloHeadOptions

FLT_MAX = 3.4028234663852886e38


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float


def overlap(x1: float, w1: float, x2: float, w2: float) -> float:
    l1, l2 = x1 - w1 / 2, x2 - w2 / 2
    left = l1 if l1 > l2 else l2
    r1, r2 = x1 + w1 / 2, x2 + w2 / 2
    right = r1 if r1 < r2 else r2
    return right - left


def box_intersection(a: Box, b: Box) -> float:
    w = overlap(a.x, a.w, b.x, b.w)
    h = overlap(a.y, a.h, b.y, b.h)
    if w < 0 or h < 0:
        return 0.0
    return w * h


def box_union(a: Box, b: Box) -> float:
    return a.w * a.h + b.w * b.h - box_intersection(a, b)


def box_iou(a: Box, b: Box) -> float:
    i, u = box_intersection(a, b), box_union(a, b)
    if i == 0 or u == 0:
        return 0.0
    return i / u


def _box_c(a: Box, b: Box) -> tuple[float, float]:
    top = min(a.y - a.h / 2, b.y - b.h / 2)
    bot = max(a.y + a.h / 2, b.y + b.h / 2)
    left = min(a.x - a.w / 2, b.x - b.w / 2)
    right = max(a.x + a.w / 2, b.x + b.w / 2)
    return right - left, bot - top


def box_giou(a: Box, b: Box) -> float:
    w, h = _box_c(a, b)
    c = w * h
    iou = box_iou(a, b)
    if c == 0:
        return iou
    return iou - (c - box_union(a, b)) / c


def box_diou(a: Box, b: Box) -> float:
    w, h = _box_c(a, b)
    c = w * w + h * h
    iou = box_iou(a, b)
    if c == 0:
        return iou
    d = (a.x - b.x) ** 2 + (a.y - b.y) ** 2
    return iou - (d / c) ** 0.6


def box_ciou(a: Box, b: Box) -> float:
    w, h = _box_c(a, b)
    c = w * w + h * h
    iou = box_iou(a, b)
    if c == 0:
        return iou
    d = ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) / c
    ar = math.atan(b.w / b.h) - math.atan(a.w / a.h)
    ar_loss = 4 / (math.pi * math.pi) * ar * ar
    alpha = ar_loss / (1 - iou + ar_loss + 0.000001)
    return iou - (d + alpha * ar_loss)


def box_iou_kind(a: Box, b: Box, kind: str) -> float:
    return {"iou": box_iou, "giou": box_giou, "diou": box_diou, "ciou": box_ciou}[kind](a, b)


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * (math.copysign(1, b))
    return a / b


def dx_box_iou(pred: Box, truth: Box, kind: str) -> tuple[float, float, float, float]:
    pt0, pb0 = pred.y - pred.h / 2, pred.y + pred.h / 2
    pl0, pr0 = pred.x - pred.w / 2, pred.x + pred.w / 2
    pred_t, pred_b = min(pt0, pb0), max(pt0, pb0)
    pred_l, pred_r = min(pl0, pr0), max(pl0, pr0)
    t_top, t_bot = truth.y - truth.h / 2, truth.y + truth.h / 2
    t_left, t_right = truth.x - truth.w / 2, truth.x + truth.w / 2
    X = (pred_b - pred_t) * (pred_r - pred_l)
    Xhat = (t_bot - t_top) * (t_right - t_left)
    Ih = min(pred_b, t_bot) - max(pred_t, t_top)
    Iw = min(pred_r, t_right) - max(pred_l, t_left)
    I = Iw * Ih  # noqa: E741
    U = X + Xhat - I
    S = (pred.x - truth.x) ** 2 + (pred.y - truth.y) ** 2
    gCw = max(pred_r, t_right) - min(pred_l, t_left)
    gCh = max(pred_b, t_bot) - min(pred_t, t_top)
    gC = gCw * gCh
    dX = {"t": -(pred_r - pred_l), "b": pred_r - pred_l, "l": -(pred_b - pred_t), "r": pred_b - pred_t}
    dI = {
        "t": -Iw if pred_t > t_top else 0.0,
        "b": Iw if pred_b < t_bot else 0.0,
        "l": -Ih if pred_l > t_left else 0.0,
        "r": Ih if pred_r < t_right else 0.0,
    }
    dU = {k: dX[k] - dI[k] for k in dX}
    dC = {
        "t": -gCw if pred_t < t_top else 0.0,
        "b": gCw if pred_b > t_bot else 0.0,
        "l": -gCh if pred_l < t_left else 0.0,
        "r": gCh if pred_r > t_right else 0.0,
    }
    p = dict.fromkeys("tblr", 0.0)
    if U > 0:
        for k in p:
            p[k] = (U * dI[k] - I * dU[k]) / (U * U)
    p["t"] = p["t"] if pt0 < pb0 else p["b"]
    p["b"] = p["b"] if pt0 < pb0 else p["t"]
    p["l"] = p["l"] if pl0 < pr0 else p["r"]
    p["r"] = p["r"] if pl0 < pr0 else p["l"]
    if kind == "giou":
        if gC > 0:
            for k in p:
                p[k] += (gC * dU[k] - U * dC[k]) / (gC * gC)
        if Iw <= 0 or Ih <= 0:
            for k in p:
                p[k] = _div(gC * dU[k] - U * dC[k], gC * gC)
    Ct = min(pred.y - pred.h / 2, truth.y - truth.h / 2)
    Cb = max(pred.y + pred.h / 2, truth.y + truth.h / 2)
    Cl = min(pred.x - pred.w / 2, truth.x - truth.w / 2)
    Cr = max(pred.x + pred.w / 2, truth.x + truth.w / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    dCt_dy = 1.0 if pred_t < t_top else 0.0
    dCt_dh = -0.5 if pred_t < t_top else 0.0
    dCb_dy = 1.0 if pred_b > t_bot else 0.0
    dCb_dh = 0.5 if pred_b > t_bot else 0.0
    dCl_dx = 1.0 if pred_l < t_left else 0.0
    dCl_dw = -0.5 if pred_l < t_left else 0.0
    dCr_dx = 1.0 if pred_r > t_right else 0.0
    dCr_dw = 0.5 if pred_r > t_right else 0.0
    dCw_dx, dCw_dy, dCw_dw, dCw_dh = dCr_dx - dCl_dx, 0.0, dCr_dw - dCl_dw, 0.0
    dCh_dx, dCh_dy, dCh_dw, dCh_dh = 0.0, dCb_dy - dCt_dy, 0.0, dCb_dh - dCt_dh
    p_dx, p_dy = p["l"] + p["r"], p["t"] + p["b"]
    p_dw, p_dh = p["r"] - p["l"], p["b"] - p["t"]
    if kind in ("diou", "ciou"):
        ar_dw = ar_dh = alpha = 0.0
        if kind == "ciou":
            ar = math.atan(truth.w / truth.h) - math.atan(pred.w / pred.h)
            ar_loss = 4 / (math.pi * math.pi) * ar * ar
            alpha = ar_loss / (1 - _div(I, U) + ar_loss + 0.000001)
            ar_dw = 8 / (math.pi * math.pi) * ar * pred.h
            ar_dh = -8 / (math.pi * math.pi) * ar * pred.w

        def terms() -> tuple[float, float, float, float]:
            cc = C * C
            return (
                _div(2 * (truth.x - pred.x) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S, cc),
                _div(2 * (truth.y - pred.y) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S, cc),
                _div((2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S, cc) + alpha * ar_dw,
                _div((2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S, cc) + alpha * ar_dh,
            )

        if C > 0:
            ex, ey, ew, eh = terms()
            p_dx, p_dy, p_dw, p_dh = p_dx + ex, p_dy + ey, p_dw + ew, p_dh + eh
        if Iw <= 0 or Ih <= 0:
            p_dx, p_dy, p_dw, p_dh = terms()
    return p_dx, p_dy, p_dw, p_dh


def fix_nan_inf(v: float) -> float:
    return 0.0 if (math.isnan(v) or math.isinf(v)) else v


def clip_value(v: float, m: float) -> float:
    return m if v > m else (-m if v < -m else v)


class Layer:
    """One [yolo] layer's buffers for a batch, in darknet's layout."""

    def __init__(self, opts: YoloHeadOptions, head: torch.Tensor, net_w: int, net_h: int) -> None:
        n, a, h, w, k = head.shape
        self.o = opts
        self.batch, self.n, self.h, self.w, self.classes = n, a, h, w, k - 5
        self.outputs = a * h * w * k
        self.net_w, self.net_h = net_w, net_h
        self.biases = [v for wh in opts.anchors for v in wh]
        self.total = len(opts.anchors)
        # (N, A, H, W, 5 + C) -> per image: anchor, entry, row, column
        flat = head.detach().double().permute(0, 1, 4, 2, 3).reshape(n, -1).cpu().numpy()
        self.output = flat.reshape(-1).copy()
        self.delta = np.zeros_like(self.output)
        self.count = 0
        self.tot_iou_loss = 0.0
        self.tot_giou_loss = 0.0

    def entry_index(self, b: int, location: int, entry: int) -> int:
        n, loc = location // (self.w * self.h), location % (self.w * self.h)
        return b * self.outputs + n * self.w * self.h * (4 + self.classes + 1) + entry * self.w * self.h + loc

    def activate(self) -> None:
        s = self.o.scale_x_y
        for b in range(self.batch):
            for n in range(self.n):
                box = self.entry_index(b, n * self.w * self.h, 0)
                if not self.o.new_coords:
                    for q in range(box, box + 2 * self.w * self.h):
                        self.output[q] = 1 / (1 + math.exp(-self.output[q]))
                    obj = self.entry_index(b, n * self.w * self.h, 4)
                    for q in range(obj, obj + (1 + self.classes) * self.w * self.h):
                        self.output[q] = 1 / (1 + math.exp(-self.output[q]))
                for q in range(box, box + 2 * self.w * self.h):
                    self.output[q] = self.output[q] * s + (-0.5 * (s - 1))

    def get_yolo_box(self, n: int, index: int, i: int, j: int) -> Box:
        x, st, bi = self.output, self.w * self.h, self.biases
        bx = (i + x[index]) / self.w
        by = (j + x[index + st]) / self.h
        if self.o.new_coords:
            bw = x[index + 2 * st] * x[index + 2 * st] * 4 * bi[2 * n] / self.net_w
            bh = x[index + 3 * st] * x[index + 3 * st] * 4 * bi[2 * n + 1] / self.net_h
        else:
            bw = math.exp(x[index + 2 * st]) * bi[2 * n] / self.net_w
            bh = math.exp(x[index + 3 * st]) * bi[2 * n + 1] / self.net_h
        return Box(bx, by, bw, bh)

    def delta_yolo_box(self, truth: Box, n: int, index: int, i: int, j: int, scale: float, norm: float) -> float:
        x, d, st, bi, o = self.output, self.delta, self.w * self.h, self.biases, self.o
        pred = self.get_yolo_box(n, index, i, j)
        iou = box_iou(pred, truth)
        giou = box_giou(pred, truth)
        if pred.w == 0:
            pred.w = 1.0
        if pred.h == 0:
            pred.h = 1.0
        if o.iou_loss == "mse":
            tx = truth.x * self.w - i
            ty = truth.y * self.h - j
            if o.new_coords:
                tw = math.sqrt(truth.w * self.net_w / (4 * bi[2 * n]))
                th = math.sqrt(truth.h * self.net_h / (4 * bi[2 * n + 1]))
            else:
                tw = math.log(truth.w * self.net_w / bi[2 * n])
                th = math.log(truth.h * self.net_h / bi[2 * n + 1])
            d[index] += scale * (tx - x[index]) * norm
            d[index + st] += scale * (ty - x[index + st]) * norm
            d[index + 2 * st] += scale * (tw - x[index + 2 * st]) * norm
            d[index + 3 * st] += scale * (th - x[index + 3 * st]) * norm
        else:
            dx, dy, dw, dh = dx_box_iou(pred, truth, o.iou_loss)
            if not o.new_coords:
                dw *= math.exp(x[index + 2 * st])
                dh *= math.exp(x[index + 3 * st])
            dx, dy, dw, dh = (fix_nan_inf(v * norm) for v in (dx, dy, dw, dh))
            if o.max_delta != FLT_MAX:
                dx, dy, dw, dh = (clip_value(v, o.max_delta) for v in (dx, dy, dw, dh))
            d[index] += dx
            d[index + st] += dy
            d[index + 2 * st] += dw
            d[index + 3 * st] += dh
        return iou, giou

    def delta_yolo_class(self, index: int, class_id: int) -> None:
        out, d, st, o = self.output, self.delta, self.w * self.h, self.o
        mult = o.class_multipliers
        eps = o.label_smooth_eps
        if d[index + st * class_id]:
            y_true = 1.0
            if eps:
                y_true = y_true * (1 - eps) + 0.5 * eps
            r = y_true - out[index + st * class_id]
            if not (math.isnan(r) or math.isinf(r)):
                d[index + st * class_id] = r
            if mult:
                d[index + st * class_id] *= mult[class_id]
            return
        if o.focal_loss:
            alpha = 0.5
            pt = out[index + st * class_id] + 0.000000000000001
            grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
            for c in range(self.classes):
                d[index + st * c] = (1.0 if c == class_id else 0.0) - out[index + st * c]
                d[index + st * c] *= alpha * grad
            return
        for c in range(self.classes):
            y_true = 1.0 if c == class_id else 0.0
            if eps:
                y_true = y_true * (1 - eps) + 0.5 * eps
            r = y_true - out[index + st * c]
            if not (math.isnan(r) or math.isinf(r)):
                d[index + st * c] = r
            if mult and c == class_id:
                d[index + st * class_id] *= mult[class_id] * o.cls_normalizer

    def process_batch(self, b: int, truths: list[tuple[Box, int]]) -> None:  # noqa: PLR0912 - darknet's own branches
        o, st, out, d = self.o, self.w * self.h, self.output, self.delta
        mult = o.class_multipliers
        truths = truths[: o.max_boxes]
        for t, (tb, _) in enumerate(truths):  # the list ends at the first x == 0
            if not tb.x:
                truths = truths[:t]
                break
        for j in range(self.h):
            for i in range(self.w):
                for n in range(self.n):
                    loc = n * st + j * self.w + i
                    class_index = self.entry_index(b, loc, 5)
                    obj_index = self.entry_index(b, loc, 4)
                    box_index = self.entry_index(b, loc, 0)
                    pred = self.get_yolo_box(o.mask[n], box_index, i, j)
                    best_match_iou, best_iou, best_t = 0.0, 0.0, 0
                    for t, (truth, _) in enumerate(truths):
                        match = any(out[class_index + st * c] > 0.25 for c in range(self.classes))
                        iou = box_iou(pred, truth)
                        if iou > best_match_iou and match:
                            best_match_iou = iou
                        if iou > best_iou:
                            best_iou, best_t = iou, t
                    d[obj_index] = o.obj_normalizer * (0 - out[obj_index])
                    if best_match_iou > o.ignore_thresh:
                        if o.objectness_smooth:
                            delta_obj = o.obj_normalizer * (best_match_iou - out[obj_index])
                            d[obj_index] = max(d[obj_index], delta_obj)
                        else:
                            d[obj_index] = 0
                    if best_iou > o.truth_thresh:
                        iou_multiplier = best_iou * best_iou
                        if o.objectness_smooth:
                            d[obj_index] = o.obj_normalizer * (iou_multiplier - out[obj_index])
                        else:
                            d[obj_index] = o.obj_normalizer * (1 - out[obj_index])
                        truth, class_id = truths[best_t]
                        self.delta_yolo_class(class_index, class_id)
                        cm = mult[class_id] if mult else 1.0
                        if o.objectness_smooth:
                            d[class_index + st * class_id] = cm * (iou_multiplier - out[class_index + st * class_id])
                        self.delta_yolo_box(
                            truth, o.mask[n], box_index, i, j, 2 - truth.w * truth.h, o.iou_normalizer * cm
                        )
        for truth, class_id in truths:
            i = int(truth.x * self.w)
            j = int(truth.y * self.h)
            shift = Box(0, 0, truth.w, truth.h)
            best_iou, best_n = 0.0, 0
            for n in range(self.total):
                iou = box_iou(Box(0, 0, self.biases[2 * n] / self.net_w, self.biases[2 * n + 1] / self.net_h), shift)
                if iou > best_iou:
                    best_iou, best_n = iou, n
            anchors = [best_n]
            if o.iou_thresh < 1:
                for n in range(self.total):
                    if n == best_n or n not in o.mask:
                        continue
                    anchor = Box(0, 0, self.biases[2 * n] / self.net_w, self.biases[2 * n + 1] / self.net_h)
                    if box_iou_kind(anchor, shift, o.iou_thresh_kind) > o.iou_thresh:
                        anchors.append(n)
            for n in anchors:
                if n not in o.mask:
                    continue
                mask_n = o.mask.index(n)
                loc = mask_n * st + j * self.w + i
                box_index = self.entry_index(b, loc, 0)
                cm = mult[class_id] if mult else 1.0
                iou, giou = self.delta_yolo_box(truth, n, box_index, i, j, 2 - truth.w * truth.h, o.iou_normalizer * cm)
                self.count += 1
                self.tot_iou_loss += 1 - iou
                self.tot_giou_loss += 1 - giou
                obj_index = self.entry_index(b, loc, 4)
                if o.objectness_smooth:
                    delta_obj = cm * o.obj_normalizer * (1 - out[obj_index])
                    if d[obj_index] == 0:
                        d[obj_index] = delta_obj
                else:
                    d[obj_index] = cm * o.obj_normalizer * (1 - out[obj_index])
                self.delta_yolo_class(self.entry_index(b, loc, 5), class_id)
        if o.iou_thresh < 1:
            for j in range(self.h):
                for i in range(self.w):
                    for n in range(self.n):
                        loc = n * st + j * self.w + i
                        obj_index = self.entry_index(b, loc, 4)
                        if d[obj_index] != 0:
                            box_index = self.entry_index(b, loc, 0)
                            class_index = self.entry_index(b, loc, 5)
                            positive = sum(1 for c in range(self.classes) if d[class_index + st * c] > 0)
                            if positive > 0:
                                for q in range(4):
                                    d[box_index + q * st] /= positive

    def cost(self) -> float:
        total = float(np.sum(self.delta**2))
        o = self.o
        if o.iou_loss == "mse" or not o.show_details:
            return total
        no_box = self.delta.reshape(self.batch, self.n, 5 + self.classes, -1).copy()
        no_box[:, :, :4] = 0
        count = self.count if self.count else 1
        tot = self.tot_giou_loss if o.iou_loss == "giou" else self.tot_iou_loss
        return o.iou_normalizer * (tot / count) + o.obj_normalizer * float(np.sum(no_box**2))

    def delta_as_head(self) -> torch.Tensor:
        d = torch.from_numpy(self.delta).view(self.batch, self.n, 5 + self.classes, self.h, self.w)
        return d.permute(0, 1, 3, 4, 2).contiguous()


def reference_deltas(
    options: list[YoloHeadOptions], heads: list[torch.Tensor], targets: torch.Tensor, net_w: int, net_h: int
) -> tuple[list[torch.Tensor], list[float]]:
    """darknet's delta per head ((N, A, H, W, 5 + C) float64) and its cost, for targets
    (M, 6) image index, class, cx, cy, w, h (each image's rows in order)."""
    n = heads[0].shape[0]
    per_image: list[list[tuple[Box, int]]] = [[] for _ in range(n)]
    for row in targets.double().tolist():
        per_image[int(row[0])].append((Box(row[2], row[3], row[4], row[5]), int(row[1])))
    deltas, costs = [], []
    for opts, head in zip(options, heads, strict=True):
        layer = Layer(opts, head, net_w, net_h)
        layer.activate()
        for b in range(n):
            layer.process_batch(b, per_image[b])
        deltas.append(layer.delta_as_head())
        costs.append(layer.cost())
    return deltas, costs
