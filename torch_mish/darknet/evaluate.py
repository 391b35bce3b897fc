"""COCO mAP of a detector on a darknet-format dataset, with pycocotools (an optional dependency:
``pip install pycocotools``, or the ``train`` extra), the way darknet's ``detector valid`` / ``map`` evaluate
(AlexeyAB/darknet ``src/detector.c``: validate_detector_map, validate_detector, print_cocos).

    from torch_mish.darknet.evaluate import evaluate, darknet_eval_settings
    settings = darknet_eval_settings(model)            # conf 0.005, NMS 0.45, the cfg's NMS kind, letterbox
    dataset = DarknetDataset.from_data("obj.data", "valid", model)
    metrics = evaluate(detect, dataset)                # metrics.map (mAP@[.5:.95]), metrics.map50

``detect`` is any callable taking a batch of inputs (N, 3, H, W) (float32 RGB in [0, 1], at the
network size) and returning the ``Detector`` convention: ``num_dets`` (N, 1), ``det_boxes`` (N, K,
4) x1, y1, x2, y2 in input pixels, ``det_scores`` (N, K), ``det_classes`` (N, K). So an eager
model, a compiled one, an exported program, an ONNX session or a TensorRT engine can be measured
the same way. Detections are mapped back to each original image as darknet does (undoing the
stretch, or the letterbox with correct_yolo_boxes' offsets), clipped to the image as print_cocos
clips them, and scored against the labels in pixels of the original image.

darknet's settings (validate_detector_map): a box is a candidate when its objectness and class
score are above 0.005 (``conf_thresh``), NMS threshold 0.45 with the last [yolo]'s ``nms_kind``
(and ``beta_nms``), images letterboxed when [net] ``letter_box=1``. (``detector valid``, which
writes COCO results files, uses 0.001 and 0.6 instead; COCOeval keeps each image's 100 best.)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch_mish.darknet.data import DarknetDataset, DataConfig
    from torch_mish.darknet.model import Darknet

Detections = tuple[Tensor, Tensor, Tensor, Tensor]
DetectFn = Callable[[Tensor], Detections]

CONF_THRESH = 0.005  # validate_detector_map's thresh
NMS_THRESH = 0.45  # validate_detector_map's nms


def _pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError(
            "COCO mAP needs pycocotools: pip install pycocotools (or pip install 'torch_mish[train]')"
        ) from None
    return COCO, COCOeval


@dataclass
class CocoMetrics:
    """COCOeval's summary: ``map`` = AP@[.5:.95], ``map50``, ``map75``, and its 12 ``stats`` in
    its order (AP, AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100, AR small/medium/large);
    ``per_class`` AP@[.5:.95] per class name; counts of images, labels and detections."""

    map: float
    map50: float
    map75: float
    stats: list[float]
    per_class: dict[str, float] = field(default_factory=dict)
    images: int = 0
    labels: int = 0
    detections: int = 0


def darknet_eval_settings(model: Darknet) -> dict[str, Any]:
    """darknet's mAP settings for ``model``: ``conf_thresh``, ``iou_thresh`` (the NMS threshold),
    ``nms_kind`` and ``beta_nms`` of the last [yolo] section, and ``letterbox`` ([net] letter_box)."""
    opts = model.yolo_layers[-1].train_options if model.yolo_layers else {}
    letter = model.net_options.get("letter_box", "0").split("#", 1)[0]
    return {
        "conf_thresh": CONF_THRESH,
        "iou_thresh": NMS_THRESH,
        "nms_kind": opts.get("nms_kind", "default"),
        "beta_nms": float(opts.get("beta_nms", "0.6").split("#", 1)[0]),
        "letterbox": bool(int(letter or 0)),
    }


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def ground_truth(dataset: DarknetDataset, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The dataset's labels as a COCO ground-truth dict, in pixels of the original images;
    image ids are dataset indices, category ids class index + 1."""
    names = list(names) if names is not None else [str(c) for c in range(dataset.classes)]
    images, annotations = [], []
    for index, (path, _) in enumerate(dataset.items):
        w, h = image_size(str(path))
        images.append({"id": index, "file_name": str(path), "width": w, "height": h})
        for cls, cx, cy, bw, bh in dataset.labels[index].tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(cls) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_original(
    boxes: Tensor, size: tuple[int, int], net_size: tuple[int, int], letterbox: tuple[int, int] | None
) -> Tensor:
    """x1, y1, x2, y2 in input pixels -> pixels of the original ``size`` (width, height) image,
    clipped to it: correct_yolo_boxes (``letterbox`` = the scaled (width, height) inside the
    input) then print_cocos' clipping."""
    w, h = size
    net_h, net_w = net_size
    b = boxes.double()
    if letterbox is None:
        x = b[:, 0::2] * (w / net_w)
        y = b[:, 1::2] * (h / net_h)
    else:
        new_w, new_h = letterbox
        x = (b[:, 0::2] - (net_w - new_w) / 2) / new_w * w
        y = (b[:, 1::2] - (net_h - new_h) / 2) / new_h * h
    x, y = x.clamp(0, w), y.clamp(0, h)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)


def evaluate(
    detect: DetectFn,
    dataset: DarknetDataset,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    names: Sequence[str] | None = None,
    workers: int = 0,
    progress: bool = False,
) -> CocoMetrics:
    """COCO mAP of ``detect`` on ``dataset`` (unaugmented: ``DarknetDataset(..., augment=None)``,
    letterboxed or stretched as the model was trained; see :func:`darknet_eval_settings`)."""
    coco_cls, coco_eval_cls = _pycocotools()
    if dataset.augment is not None:
        raise ValueError("dataset has training augmentations; evaluate on DarknetDataset(..., augment=None)")
    from torch_mish.darknet.data import collate

    gt = ground_truth(dataset, names)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, unit="batch", desc="mAP")
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for images, _, infos in loader:
            x = images.to(device) if device is not None else images
            num, boxes, scores, classes = (t.detach().cpu() for t in detect(x))
            _check_outputs(num, boxes, scores, classes, images.shape[0])
            for k, info in enumerate(infos):
                count = int(num[k].reshape(()))
                if not count:
                    continue
                orig = to_original(boxes[k, :count], sizes[info["index"]], dataset.size, info["letterbox"])
                for (x1, y1, x2, y2), s, c in zip(
                    orig.tolist(), scores[k, :count].tolist(), classes[k, :count].tolist(), strict=True
                ):
                    results.append(
                        {
                            "image_id": info["index"],
                            "category_id": int(c) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(s),
                        }
                    )
    return coco_map(gt, results)


def evaluate_data(
    model: Darknet,
    data: str | Path | DataConfig,
    detect: DetectFn,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    size: tuple[int, int] | int | None = None,
    workers: int = 0,
    progress: bool = False,
) -> CocoMetrics:
    """darknet's ``detector map`` on an obj.data: its ``valid`` list (``train`` without one) at
    the model's input size (or ``size``), letterboxed when the cfg's [net] letter_box=1, class
    names from its ``names`` file, measured with ``detect`` (see :func:`evaluate`)."""
    from torch_mish.darknet.data import DarknetDataset, read_data_config

    config = data if not isinstance(data, (str, Path)) else read_data_config(data)
    dataset = DarknetDataset.from_data(config, "valid", model, augment=False, size=size)
    return evaluate(detect, dataset, batch_size, device, config.class_names(), workers, progress)


def _check_outputs(num: Tensor, boxes: Tensor, scores: Tensor, classes: Tensor, n: int) -> None:
    if num.shape[0] != n or boxes.dim() != 3 or boxes.shape[0] != n or boxes.shape[2] != 4:
        raise ValueError(
            f"detect returned num_dets {tuple(num.shape)}, det_boxes {tuple(boxes.shape)} for {n} images; "
            "expected (N, 1) and (N, K, 4) (the Detector convention)"
        )
    if scores.shape != boxes.shape[:2] or classes.shape != boxes.shape[:2]:
        raise ValueError(
            f"detect returned det_scores {tuple(scores.shape)} and det_classes {tuple(classes.shape)}, "
            f"expected {tuple(boxes.shape[:2])} like det_boxes' first two dimensions"
        )


def coco_map(gt: dict[str, Any], results: list[dict[str, Any]]) -> CocoMetrics:
    """COCOeval (bbox) of ``results`` (COCO results format) against the ground truth dict."""
    coco_cls, coco_eval_cls = _pycocotools()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco = coco_cls()
        coco.dataset = gt
        coco.createIndex()
        if not results:
            return CocoMetrics(0.0, 0.0, 0.0, [0.0] * 12, {}, len(gt["images"]), len(gt["annotations"]), 0)
        dets = coco.loadRes(results)
        ev = coco_eval_cls(coco, dets, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    per_class = {}
    precision = ev.eval["precision"]  # (T, R, K, A, M)
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        per_class[coco.cats[cat]["name"]] = float(valid.mean()) if valid.size else float("nan")
    return CocoMetrics(
        stats[0], stats[1], stats[2], stats, per_class, len(gt["images"]), len(gt["annotations"]), len(results)
    )


__all__ = [
    "CONF_THRESH",
    "NMS_THRESH",
    "CocoMetrics",
    "DetectFn",
    "Detections",
    "coco_map",
    "darknet_eval_settings",
    "evaluate",
    "evaluate_data",
    "ground_truth",
    "to_original",
]
