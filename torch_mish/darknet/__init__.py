"""Darknet's YOLOv4 family in PyTorch: build a network from its ``.cfg``, load and save its
``.weights``, run it with darknet's semantics (Mish layers are :class:`torch_mish.Mish`).

    from torch_mish.darknet import Darknet, packaged_cfg
    model = Darknet(packaged_cfg("yolov4-csp.cfg"))  # or any cfg path, or the cfg text
    model.load_darknet_weights("yolov4-csp.weights")
    det = model.eval()(x)  # (N, R, 5 + classes): cx, cy, w, h (input pixels), objectness, class scores
    num_dets, boxes, scores, classes = Detector(model)(x)  # darknet's thresholds and NMS

Images in and out (reading, darknet's resize and letterbox, boxes back to the original image,
drawing, COCO results rows, the 80 COCO names): :mod:`torch_mish.darknet.images`; whole images
through a Detector, boxes back in their pixels: :mod:`torch_mish.darknet.predict`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from torch_mish.darknet import images, predict
from torch_mish.darknet.cfg import CfgError, read_cfg
from torch_mish.darknet.detector import OUTPUT_NAMES, Detector, darknet_nms
from torch_mish.darknet.loss import LossOptionError, LossParts, YoloLoss
from torch_mish.darknet.model import Darknet
from torch_mish.darknet.weights import WeightsError, load_darknet_weights, save_darknet_weights

PACKAGED_CFGS = ("yolov4.cfg", "yolov4-csp.cfg", "yolov4x-mish.cfg", "yolov4-p5.cfg", "yolov4-tiny.cfg")


def packaged_cfg(name: str) -> Path:
    """Path of a cfg shipped with torch_mish (AlexeyAB/darknet's, public domain): one of
    ``PACKAGED_CFGS``; the ``.cfg`` suffix is optional."""
    if not name.endswith(".cfg"):
        name += ".cfg"
    if name not in PACKAGED_CFGS:
        raise ValueError(f"no packaged cfg {name!r}; packaged: {', '.join(PACKAGED_CFGS)}")
    return Path(str(resources.files("torch_mish.darknet") / "cfg" / name))


__all__ = [
    "PACKAGED_CFGS",
    "CfgError",
    "Darknet",
    "Detector",
    "LossOptionError",
    "OUTPUT_NAMES",
    "LossParts",
    "WeightsError",
    "darknet_nms",
    "images",
    "load_darknet_weights",
    "packaged_cfg",
    "predict",
    "read_cfg",
    "save_darknet_weights",
    "YoloLoss",
]
