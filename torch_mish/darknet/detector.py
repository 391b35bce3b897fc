"""Detections as darknet's ``detector test`` makes them: thresholds and its NMS, in one op.

    from torch_mish.darknet import Darknet, Detector, packaged_cfg
    model = Darknet(packaged_cfg("yolov4-csp")).eval()
    det = Detector(model, conf_thresh=0.25, iou_thresh=0.45, max_det=300)
    num_dets, det_boxes, det_scores, det_classes = det(x)

The work is ``torch.ops.mish.darknet_nms`` (CPU and CUDA kernels, a fake kernel): ``torch.export``
keeps it as one node, ``torch.compile(fullgraph=True)`` traces through it, and on a GPU it never
synchronizes with the host, so a whole Detector captures in one CUDA graph.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from torch_mish.darknet.layers import Yolo
from torch_mish.ops import NMS_KINDS, check_nms_options

DEFAULT_BETA_NMS = 0.6  # darknet's default beta_nms ([yolo], parser.c)
# The Detector's outputs by the names deployment stacks (Triton, DeepStream YOLO parsers) bind them by.
OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")

_nms = torch.ops.mish.darknet_nms.default


def darknet_nms(
    rows: Tensor,
    conf_thresh: float = 0.25,
    iou_thresh: float = 0.45,
    max_det: int = 300,
    kind: str = "default",
    beta: float = DEFAULT_BETA_NMS,
    net_width: float = 1.0,
    net_height: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """darknet's detections from decoded rows, as its ``detector test`` makes them.

    Args:
        rows: (N, R, 5 + classes), float32, float16, bfloat16 or float64, on the CPU or a GPU: per row
            cx, cy, w, h, objectness and the class probabilities (``Darknet(...).eval()(x)``). Values
            are used as float32.
        conf_thresh: a row counts when its objectness is above it; its score for class c,
            objectness * probability c (float32), counts when above it.
        iou_thresh: a kept box suppresses a lower-scored box of its class when the kind's criterion
            is above it.
        max_det: K, the detections returned per image (the K best by score).
        kind: darknet's [yolo] ``nms_kind``: ``"default"`` (IoU), ``"greedynms"`` (IoU - (d/c)^0.6)
            or ``"diounms"`` (IoU - (d/c)^beta), d the squared distance of the box centres, c the
            squared diagonal of the box enclosing both.
        beta: ``diounms``'s exponent (used as float32, as darknet stores ``beta_nms``).
        net_width, net_height: darknet compares boxes in units of the network input (coordinates
            divided by its width and height), which matters to the DIoU kinds on a non-square
            input; :class:`Detector` passes the input's size. Outputs stay in the rows' units.

    Returns:
        ``num_dets`` (N, 1) int32; ``det_boxes`` (N, K, 4) float32, x1, y1, x2, y2 in the rows' units,
        not clipped; ``det_scores`` (N, K) float32; ``det_classes`` (N, K) int32. Each image's
        detections are sorted by score, descending (ties: the lower row, then the lower class first);
        rows past ``num_dets`` are zero. One row can carry several classes.

    Per class, in score order, a box is kept unless a kept box suppresses it (greedy NMS), exactly
    as darknet's ``do_nms_sort`` / ``diounms_sort``, in float32 in the order darknet computes. No
    gradient: the outputs never require grad.
    """
    return _nms(rows, conf_thresh, iou_thresh, max_det, kind, beta, net_width, net_height)


def _cfg_nms(head: Yolo) -> tuple[str, float]:
    """The nms_kind and beta_nms darknet's detector test uses with this (last) [yolo] head."""
    options = head.train_options
    kind = options.get("nms_kind", "default")
    if kind not in NMS_KINDS:
        # parser.c maps any other name to default NMS for [yolo]
        warnings.warn(
            f"{head.where}: nms_kind={kind} is not a [yolo] NMS darknet knows; darknet uses default NMS for it, "
            "and so does the Detector (pass nms_kind= to choose)",
            stacklevel=3,
        )
        kind = "default"
    text = options.get("beta_nms", str(DEFAULT_BETA_NMS))
    try:
        beta = float(text)
    except ValueError:
        raise ValueError(f"{head.where}: beta_nms={text} is not a number") from None
    return kind, beta


class Detector(nn.Module):
    """A darknet model followed by darknet's detection thresholds and NMS (see :func:`darknet_nms`).

    ``Detector(model)(x)`` returns ``num_dets, det_boxes, det_scores, det_classes`` for images
    ``x`` (N, C, H, W) at a size the model takes; boxes are in input pixels.

    Args:
        model: a network with darknet [yolo] heads (:class:`~torch_mish.darknet.Darknet`) whose eval
            output is darknet rows (N, R, 5 + classes). The Detector puts it in eval mode and keeps
            it there (``train()`` leaves both in eval mode).
        conf_thresh, iou_thresh, max_det: see :func:`darknet_nms`.
        nms_kind, beta_nms: default to the last [yolo] head's ``nms_kind`` and ``beta_nms``, as
            darknet's ``detector test`` takes them from the network's last layer.
    """

    def __init__(
        self,
        model: nn.Module,
        conf_thresh: float = 0.25,
        iou_thresh: float = 0.45,
        max_det: int = 300,
        nms_kind: str | None = None,
        beta_nms: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"Detector: model must be an nn.Module, got {type(model).__name__}")
        heads = [m for m in model.modules() if isinstance(m, Yolo)]
        if not heads:
            raise ValueError(
                f"Detector: {type(model).__name__} has no [yolo] heads; it needs a darknet detector "
                "(torch_mish.darknet.Darknet of a cfg with [yolo] sections)"
            )
        cfg_kind, cfg_beta = _cfg_nms(heads[-1])
        kind = cfg_kind if nms_kind is None else nms_kind
        beta = cfg_beta if beta_nms is None else beta_nms
        check_nms_options(conf_thresh, iou_thresh, max_det, kind, beta, where="Detector")
        self.model = model
        self.conf_thresh = float(conf_thresh)
        self.iou_thresh = float(iou_thresh)
        self.max_det = int(max_det)
        self.nms_kind = kind
        self.beta_nms = float(beta)
        self.classes = heads[-1].classes
        self.eval()

    def train(self, mode: bool = True) -> Detector:
        """A Detector stays in eval mode, and its model with it: a Darknet in training mode returns
        the heads' raw outputs, not rows. (The TorchScript ONNX exporter, for one, calls train() to
        restore the mode a module had before export.)"""
        return super().train(False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rows = self.model(x)
        if not isinstance(rows, Tensor) or rows.dim() != 3:
            raise TypeError(
                "Detector: the model must return darknet rows (N, R, 5 + classes), got "
                + (f"a tensor of shape {list(rows.shape)}" if isinstance(rows, Tensor) else type(rows).__name__)
                + "; a Darknet returns them in eval mode (call .eval())"
            )
        return _nms(
            rows,
            self.conf_thresh,
            self.iou_thresh,
            self.max_det,
            self.nms_kind,
            self.beta_nms,
            float(x.shape[-1]),
            float(x.shape[-2]),
        )

    def extra_repr(self) -> str:
        beta = f", beta_nms={self.beta_nms:g}" if self.nms_kind == "diounms" else ""
        return (
            f"conf_thresh={self.conf_thresh:g}, iou_thresh={self.iou_thresh:g}, max_det={self.max_det}, "
            f"nms_kind={self.nms_kind!r}{beta}"
        )
