"""A float64 reference of darknet's detections (``detector test``), written from its semantics
(yolo_layer.c get_yolo_detections, box.c do_nms_sort / diounms_sort / box_iou / box_diou /
box_diounms), the plain way: per class, sort by score and walk the list.

Scores are float32 products, as darknet's are (objectness * probability of two float32 values, one
rounding); the geometry is float64. Every criterion the walk compares to the threshold is recorded
as a margin: where the smallest margin is below float32's rounding, float32 kernels may decide the
other way legitimately, and a random test draws another case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch


@dataclass
class Reference:
    num_dets: list[int]
    boxes: np.ndarray  # (N, K, 4) float64: x1, y1, x2, y2
    scores: np.ndarray  # (N, K) float64 holding float32 values
    classes: np.ndarray  # (N, K) int
    rows: np.ndarray  # (N, K) int: the row each detection came from
    margin: float  # smallest |criterion - iou_thresh| among the comparisons that decided something
    survivors_per_class: int  # the largest number of survivors any (image, class) had


def _overlap(c1: np.ndarray, s1: np.ndarray, c2: np.ndarray, s2: np.ndarray) -> np.ndarray:
    left = np.maximum(c1 - s1 / 2, c2 - s2 / 2)
    right = np.minimum(c1 + s1 / 2, c2 + s2 / 2)
    return right - left


def criterion(kind: str, a: np.ndarray, b: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """darknet's criterion of box a (kept) against boxes b, all (x, y, w, h) in relative units, and
    the IoU."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = _overlap(a[0], a[2], b[:, 0], b[:, 2])
        h = _overlap(a[1], a[3], b[:, 1], b[:, 3])
        inter = np.where((w < 0) | (h < 0), 0.0, w * h)
        union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
        iou = np.where((inter == 0) | (union == 0), 0.0, inter / union)
        if kind == "default":
            return iou, iou
        top = np.minimum(a[1] - a[3] / 2, b[:, 1] - b[:, 3] / 2)
        bot = np.maximum(a[1] + a[3] / 2, b[:, 1] + b[:, 3] / 2)
        left = np.minimum(a[0] - a[2] / 2, b[:, 0] - b[:, 2] / 2)
        right = np.maximum(a[0] + a[2] / 2, b[:, 0] + b[:, 2] / 2)
        c = (right - left) ** 2 + (bot - top) ** 2
        d = (a[0] - b[:, 0]) ** 2 + (a[1] - b[:, 1]) ** 2
        return np.where(c == 0, iou, iou - (d / np.where(c == 0, 1.0, c)) ** exponent), iou


def reference_nms(
    rows: torch.Tensor,
    conf_thresh: float,
    iou_thresh: float,
    max_det: int,
    kind: str = "default",
    beta: float = 0.6,
    net_width: float = 1.0,
    net_height: float = 1.0,
) -> Reference:
    values = rows.detach().cpu().to(torch.float32).numpy().astype(np.float64)
    conf = float(np.float32(conf_thresh))
    thresh = float(np.float32(iou_thresh))
    exponent = 0.6 if kind == "greedynms" else float(np.float32(beta))
    n_images, _, width = values.shape
    classes = width - 5
    out_boxes = np.zeros((n_images, max_det, 4))
    out_scores = np.zeros((n_images, max_det))
    out_classes = np.zeros((n_images, max_det), dtype=np.int64)
    out_rows = np.zeros((n_images, max_det), dtype=np.int64)
    num_dets = []
    margin = np.inf
    most = 0
    scale = np.array([net_width, net_height, net_width, net_height])
    for image in range(n_images):
        v = values[image]
        objectness = v[:, 4]
        boxes = v[:, :4] / scale
        detections = []  # (score, row, class)
        for cls in range(classes):
            score = (objectness * v[:, 5 + cls]).astype(np.float32).astype(np.float64)
            candidates = np.nonzero((objectness > conf) & (score > conf))[0]
            order = sorted(candidates.tolist(), key=lambda r, s=score: (-s[r], r))
            suppressed = np.zeros(len(order), dtype=bool)
            kept = 0
            for a, row in enumerate(order):
                if suppressed[a]:
                    continue
                kept += 1
                detections.append((score[row], row, cls))
                later = np.array(order[a + 1 :], dtype=np.int64)
                if later.size == 0:
                    continue
                crit, iou = criterion(kind, boxes[row], boxes[later], exponent)
                # An IoU of exactly 0 (no overlap) is exact in float32 too: only overlapping pairs
                # can be decided differently by rounding.
                open_ = ~suppressed[a + 1 :] & (iou > 0)
                if open_.any():
                    margin = min(margin, float(np.nanmin(np.abs(crit[open_] - thresh), initial=np.inf)))
                suppressed[a + 1 :] |= crit > thresh
            most = max(most, kept)
        detections.sort(key=lambda d: (-d[0], d[1], d[2]))
        top = detections[:max_det]
        num_dets.append(len(top))
        for k, (s, row, cls) in enumerate(top):
            cx, cy, w, h = v[row, :4]
            out_boxes[image, k] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            out_scores[image, k] = s
            out_classes[image, k] = cls
            out_rows[image, k] = row
    return Reference(num_dets, out_boxes, out_scores, out_classes, out_rows, margin, most)


# --- helpers of the tests that use the reference -------------------------------------------------


def make_rows(boxes: list[tuple[float, float, float, float]], objectness: list[float], probs: list[list[float]]):
    """One image's rows from (cx, cy, w, h) boxes, objectness and per-row class probabilities."""
    data = [[*b, o, *p] for b, o, p in zip(boxes, objectness, probs, strict=True)]
    return torch.tensor([data], dtype=torch.float32)


def assert_matches(out: tuple[torch.Tensor, ...], ref: Reference, what: str = "") -> None:
    num, boxes, scores, classes = (t.cpu() for t in out)
    max_det = scores.shape[1]
    assert num.dtype == torch.int32 and classes.dtype == torch.int32
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32
    assert num[:, 0].tolist() == ref.num_dets, what
    for image, k in enumerate(ref.num_dets):
        assert classes[image, :k].tolist() == ref.classes[image, :k].tolist(), f"{what} image {image}: classes"
        assert scores[image, :k].tolist() == ref.scores[image, :k].tolist(), f"{what} image {image}: scores"
        # x1 = cx - w/2 etc.: one float32 rounding of an exact value on both sides
        expected = torch.from_numpy(ref.boxes[image, :k]).float()
        assert torch.equal(boxes[image, :k], expected), f"{what} image {image}: boxes"
        if k < max_det:
            assert not boxes[image, k:].any() and not scores[image, k:].any() and not classes[image, k:].any(), (
                f"{what} image {image}: rows past num_dets must be zero"
            )


def random_rows(gen: torch.Generator, n: int, r: int, classes: int, size: float = 608.0) -> torch.Tensor:
    """Rows with boxes in clusters (so that suppression happens), sizes spread over a decade, and
    objectness and class probabilities uniform in [0, 1]."""
    clusters = torch.rand(n, max(1, r // 6), 2, generator=gen) * size
    pick = torch.randint(0, clusters.shape[1], (n, r), generator=gen)
    centres = torch.gather(clusters, 1, pick[..., None].expand(n, r, 2)) + torch.randn(n, r, 2, generator=gen) * (
        size * 0.03
    )
    wh = size * 0.08 * torch.exp(torch.randn(n, r, 2, generator=gen) * 0.6)
    scores = torch.rand(n, r, 1 + classes, generator=gen)
    return torch.cat([centres, wh, scores], -1)


def assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], what: str = "") -> None:
    for x, y, name in zip(a, b, ("num_dets", "det_boxes", "det_scores", "det_classes"), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what} {name}"
        assert torch.equal(x.cpu(), y.cpu()), f"{what} {name} differs"


def decisive_case(gen: torch.Generator, draw, conf, iou, max_det, kind, beta=0.6, net=(1.0, 1.0)):
    """rows drawn by draw(gen), and their reference, redrawn while a criterion lies within float32's
    rounding of the threshold (then float32 kernels may rightly decide either way)."""
    for _ in range(20):
        rows = draw(gen)
        ref = reference_nms(rows, conf, iou, max_det, kind, beta, *net)
        if ref.margin > 1e-5:
            return rows, ref
    pytest.fail("no case without a near-threshold criterion in 20 draws")
