"""``torch-mish val``: COCO mAP of trained weights on a dataset in darknet's format.

Measure CFG with --weights on the valid list of obj.data (its train list without one) as darknet's detector
map does: each image resized to the network size (letterboxed where the cfg's [net] has letter_box=1), the
model, darknet's detection thresholds (confidence 0.005, NMS 0.45 with the cfg's nms_kind unless --conf,
--iou, --nms-kind), the boxes mapped back to the image; then mAP@[.5:.95] and mAP@.5 by pycocotools'
COCOeval (pip install pycocotools) against the labels (torch_mish.darknet.evaluate.evaluate_data).

--backend eager runs PyTorch, compile torch.compile. --onnx FILE or --engine FILE measures that file instead
of the PyTorch model (exported or built from the same cfg and weights by torch-mish export or build): a file of
the network alone (made without --nms) gets the same thresholds and NMS, so the figures compare across deploy
paths; one made with --nms is used as it is.

example: yolov4-tiny.cfg --weights runs/tiny/yolov4-tiny_final.weights --data shapes/obj.data
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import sources
from torch_mish.cli.console import Console, first_line
from torch_mish.cli.flags import (
    add_command,
    add_data_arg,
    add_device_arg,
    add_dtype_arg,
    add_model_args,
    add_nms_args,
    int_at_least,
)
from torch_mish.cli.options import ENGINE_SUFFIXES, ModelOptions, UsageError

BACKENDS = ("eager", "compile")


@dataclass(frozen=True)
class ValOptions:
    model: ModelOptions  # with detections: the NMS flags, checked (conf and iou as given below)
    data: Path
    conf: float | None  # None: darknet's detector map threshold
    iou: float | None
    batch_size: int
    device: str
    backend: str | None  # None: eager
    onnx: Path | None
    engine: Path | None


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run, cfg_only=True)
    add_data_arg(p, "valid")
    add_model_args(p, None, weights="the darknet .weights to measure (required)")
    p.add_argument("--batch", dest="batch_size", type=int_at_least(1), default=8, metavar="N", help="images per pass")
    add_dtype_arg(p)
    add_device_arg(p)
    p.add_argument("--backend", choices=BACKENDS, help="what runs the PyTorch model (default: eager)")
    p.add_argument("--onnx", metavar="FILE", help="measure this ONNX file (onnxruntime) instead of the model")
    p.add_argument("--engine", metavar="FILE", help="measure this TensorRT engine instead of the model")
    add_nms_args(p, flag=False, conf="darknet's detector map: 0.005", iou="darknet's detector map: 0.45")
    return p


def run(options: ValOptions, console: Console) -> dict[str, Any]:
    from torch_mish.darknet.data import DataError
    from torch_mish.darknet.evaluate import darknet_eval_settings, evaluate_data

    name, _ = sources.cfg_path(options.model.source)
    check_flags(options)
    device = sources.resolve_device(options.device)
    source = sources.load(dataclasses.replace(options.model, detections=None), console)
    settings = darknet_eval_settings(source.model)
    assert options.model.detections is not None  # val always takes the NMS flags
    nms = dataclasses.replace(
        options.model.detections,
        conf=settings["conf_thresh"] if options.conf is None else options.conf,
        iou=settings["iou_thresh"] if options.iou is None else options.iou,
    )
    detector = sources.in_detector(source, nms).model
    dtype = sources.torch_dtype(options.model.dtype)
    detector.to(device=device, dtype=dtype)
    network, detect = detect_function(options, detector, device, dtype, console)
    try:
        metrics = evaluate_data(
            source.model,
            options.data,
            detect,
            batch_size=options.batch_size,
            device=device,
            size=options.model.image_size,
            progress=not console.quiet,
        )
    except DataError as exc:
        raise UsageError(first_line(exc)) from None
    except ImportError as exc:  # pycocotools (or Pillow) is an optional dependency: the message says what to install
        raise UsageError(first_line(exc)) from None
    console.info(
        f"{name} on {options.data}: mAP@[.5:.95] {metrics.map:.4f}, mAP@.5 {metrics.map50:.4f} "
        f"({metrics.images} images, {metrics.labels} labels, {metrics.detections} detections; {network})"
    )
    return {
        "map50_95": metrics.map,
        "map50": metrics.map50,
        "map75": metrics.map75,
        "stats": metrics.stats,
        "per_class": metrics.per_class,
        "images": metrics.images,
        "labels": metrics.labels,
        "detections": metrics.detections,
        "source": name,
        "weights": str(options.model.weights),
        "data": str(options.data),
        "network": network,
        "image_size": list(source.image_size),
        "letterbox": settings["letterbox"],
        "dtype": options.model.dtype,
        "device": device,
        "conf": detector.conf_thresh,
        "iou": detector.iou_thresh,
        "nms_kind": detector.nms_kind,
        "max_det": detector.max_det,
    }


def check_flags(options: ValOptions) -> None:
    if options.model.weights is None:
        raise UsageError("--weights: val measures trained weights; give the .weights file (torch-mish train writes it)")
    sources.check_exists(str(options.data), "give darknet's obj.data of the dataset (classes=, valid=, names=)")
    if options.onnx is not None and options.engine is not None:
        raise UsageError("--onnx and --engine together: val measures one network; give one of them")
    given = options.onnx or options.engine
    if given is None:
        return
    flag = "--onnx" if options.onnx is not None else "--engine"
    suffixes = (".onnx",) if options.onnx is not None else ENGINE_SUFFIXES
    sources.check_exists(str(given), f"give the {' or '.join(suffixes)} file to measure")
    if given.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {given}: the file name must end in {' or '.join(suffixes)}")
    if options.backend is not None:
        raise UsageError(f"--backend {options.backend} runs the PyTorch model; {flag} measures the file instead")
    if options.model.dtype != "float32":
        raise UsageError(f"--dtype {options.model.dtype} is the PyTorch model's; {flag} {given} has its own")


def detect_function(options: ValOptions, detector: Any, device: str, dtype: Any, console: Console) -> tuple[str, Any]:
    """What measures the images, and its name: the Detector (eager or compiled), or the ONNX file or engine
    followed by the same thresholds and NMS (torch_mish.darknet.deploy)."""
    import torch

    if options.onnx is None and options.engine is None:
        if options.backend == "compile":
            detector.model = torch.compile(detector.model)
        return options.backend or "eager", lambda x: detector(x.to(dtype))
    from torch_mish.darknet import deploy

    try:
        if options.onnx is not None:
            return f"onnx {options.onnx}", deploy.onnx_file_detector(options.onnx, detector, device)
        with console.muted_fds():  # what TensorRT's C++ prints at import, unless --verbose
            return f"engine {options.engine}", deploy.engine_file_detector(options.engine, detector)
    except (deploy.PathUnavailable, ValueError) as exc:  # no runtime here, or not a detector's file
        flag = "--onnx" if options.onnx is not None else "--engine"
        raise UsageError(f"{flag}: {first_line(exc)}") from None
