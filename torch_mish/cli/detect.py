"""``torch-mish detect``: boxes and labels drawn on images, and COCO results.

Detect objects in images (files, or directories of .jpg/.png) as darknet's detector test does: each
image resized to the network's size (--letterbox: darknet's -letter_box, on by default where the cfg's [net]
has letter_box=1), the model, darknet's thresholds and NMS (the cfg's nms_kind unless --nms-kind), the boxes
mapped back to the image. Writes into DIR each image with its boxes and labels drawn (under its own file
name) and DIR/detections.json in COCO results format (image_id, category_id, bbox x, y, w, h in the image's
pixels clipped to it, score). DIR gets its files only when every image succeeded.

Labels: --names FILE (darknet's .names, one line per class); without it, darknet's 80 COCO names for an
80-class model (and COCO category ids in detections.json), else the class numbers (0, 1, ...), which are
then the category ids. Image ids: the number ending each file name where every name ends in a different one
(COCO's file names), else 1, 2, ... in the order the images were given.

--backend eager runs PyTorch, compile torch.compile; tensorrt builds a TensorRT engine of the network (where
a TensorRT runtime can run one; the NMS then runs as torch_mish's op, in darknet's units for letterboxed
images).

example: yolov4-tiny.cfg --weights yolov4-tiny.weights dog.jpg photos/ -o detections
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import nms, outputs, sources
from torch_mish.cli.console import Console, first_line, import_tensorrt
from torch_mish.cli.flags import add_command, add_device_arg, add_dtype_arg, add_model_args, add_nms_args
from torch_mish.cli.options import ModelOptions, UsageError, output_dir

BACKENDS = ("eager", "compile", "tensorrt")
RESULTS_FILE = "detections.json"


@dataclass(frozen=True)
class DetectOptions:
    model: ModelOptions  # with detections: detect has no --nms, the Detector is always there
    images: list[str]
    output: Path  # the directory, created if missing
    names: str | None
    letterbox: bool | None  # None: the cfg's [net] letter_box
    device: str
    backend: str


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or directories of .jpg/.png images")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where the drawn images and results go")
    p.add_argument(
        "--names",
        metavar="FILE",
        help="class names, one per line (default: darknet's COCO names for 80 classes, else the class numbers)",
    )
    p.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        help="keep the aspect ratio, pad with gray (darknet's -letter_box; default: the cfg's [net] letter_box)",
    )
    add_model_args(p, None)
    add_dtype_arg(p)
    add_device_arg(p)
    p.add_argument("--backend", choices=BACKENDS, default="eager", help="what runs the network")
    add_nms_args(p, flag=False)
    return p


def run(options: DetectOptions, console: Console) -> dict[str, Any]:
    from torch_mish.darknet import images, predict

    out = output_dir(options.output, f"the drawn images and {RESULTS_FILE}")
    try:
        paths = predict.find_images(options.images)
    except ValueError as exc:
        raise UsageError(first_line(exc)) from None
    names_out = predict.output_names(paths)
    inputs = {p.resolve() for p in paths}
    for name in names_out:
        if (out / name).resolve() in inputs:
            raise UsageError(f"-o {out}: the drawn {name} would replace the image it is drawn from; choose another")
    device = sources.resolve_device(options.device)
    source = sources.load(options.model, console)
    detector = source.model
    try:
        names = predict.class_names(detector.classes, options.names)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--names: {first_line(exc)}") from None
    categories = predict.category_ids(names)
    letterbox = options.letterbox
    if letterbox is None:  # darknet's detector test letterboxes when the cfg's [net] says so
        letterbox = getattr(detector.model, "net_options", {}).get("letter_box", "0").strip() not in ("", "0")
    dtype = sources.torch_dtype(options.model.dtype)
    detector.to(device=device, dtype=dtype)
    runner = predict.ImageDetector(
        detector,
        size=source.image_size,
        letterbox=letterbox,
        run_model=network_runner(options.backend, detector.model, source.image_size, device, dtype, console),
        device=device,
        dtype=dtype,
    )
    ids = predict.image_ids(paths)
    per_image: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def write(folder: Path) -> None:
        for path, image_id, name in console.progress(list(zip(paths, ids, names_out, strict=True)), "detect"):
            try:
                image = images.read_image(path)
            except ValueError as exc:
                raise UsageError(first_line(exc)) from None
            found = runner(image)
            found.draw(image, names).save(folder / name, quality=95)
            rows.extend(found.coco_rows(image_id, categories))
            per_image.append(
                {"image": str(path), "image_id": image_id, "output": str(out / name), "detections": len(found)}
            )
        text = "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n" if rows else "[]\n"
        (folder / RESULTS_FILE).write_text(text)

    outputs.fill_dir(out, write)
    console.info(f"wrote {len(paths)} images with {len(rows)} detections drawn, and {out / RESULTS_FILE}")
    return {
        "source": source.name,
        "output": str(out),
        "results": str(out / RESULTS_FILE),
        "detections": len(rows),
        "images": per_image,
        "image_size": list(source.image_size),
        "letterbox": letterbox,
        "names": "file" if options.names else "coco" if categories else "numbers",
        "category_ids": "coco" if categories else "class index",
        "device": device,
        "dtype": options.model.dtype,
        "backend": options.backend,
        "nms": nms.report_fields(detector),
    }


def network_runner(backend: str, model: Any, size: tuple[int, int], device: str, dtype: Any, console: Console) -> Any:
    """What computes the rows: the model (eager), torch.compile of it, or a TensorRT engine of it."""
    import torch

    if backend == "eager":
        return model
    if backend == "compile":
        return torch.compile(model)
    mt, _ = import_tensorrt(console)
    reason = mt.engine_runtime_unavailable_reason()
    if reason is not None:
        raise UsageError(f"--backend tensorrt: no TensorRT engine can run here ({reason}); use --backend eager")
    example = torch.zeros(1, 3, *size, device=device, dtype=dtype)
    with console.muted():
        return mt.compile(model, example)
