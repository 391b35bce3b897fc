"""Image files in, darknet's detections out, as its ``detector test`` makes them: each image resized
(or letterboxed) to the network's size, the network run, darknet's thresholds and NMS, and the boxes
mapped back to the original image's pixels.

    from torch_mish.darknet import Darknet, Detector, images, packaged_cfg, predict
    detector = Detector(Darknet(packaged_cfg("yolov4-tiny")))  # with its .weights loaded
    run = predict.ImageDetector(detector, letterbox=False)
    names = predict.class_names(detector.classes)  # darknet's COCO names for 80 classes
    for image_id, path in zip(predict.image_ids(paths), paths):
        image = images.read_image(path)
        found = run(image)  # boxes in the image's pixels, sorted by score
        found.draw(image, names).save(...)
        rows = found.coco_rows(image_id, predict.category_ids(names))

The NMS compares boxes in darknet's units: coordinates relative to the original image, which for a
letterboxed input are not the network input's (the image covers only part of it), so it is the same
``torch.ops.mish.darknet_nms`` the :class:`~torch_mish.darknet.Detector` runs, with those units.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torch_mish.darknet import images
from torch_mish.darknet.detector import Detector, darknet_nms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PathLike = str | os.PathLike[str]


def find_images(paths: Sequence[PathLike]) -> list[Path]:
    """The image files named by ``paths``: files as given, and for each directory its .jpg, .jpeg and
    .png files (any case, not recursive) sorted by name; each file once, in that order.

    Raises ValueError naming the path for one that does not exist and for a directory without
    images. (Whether a file is a readable image shows when it is read.)"""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not inside:
                raise ValueError(f"{p}: no {', '.join(IMAGE_SUFFIXES)} images in this directory")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(f"{p}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def class_names(classes: int, names_file: PathLike | None = None) -> tuple[str, ...]:
    """The label of each of a model's ``classes``: the lines of a darknet .names file, whose count must
    be ``classes``; without one, darknet's 80 COCO names for an 80-class model, else the class
    numbers ("0", "1", ...)."""
    if names_file is None:
        return images.coco_names() if classes == len(images.coco_names()) else tuple(map(str, range(classes)))
    names = images.read_names(names_file)
    if len(names) != classes:
        raise ValueError(
            f"{os.fspath(names_file)} has {len(names)} names for a model of {classes} classes; "
            f"give a .names file with one line per class ({classes} lines)"
        )
    return names


def category_ids(names: Sequence[str]) -> tuple[int, ...] | None:
    """COCO's category ids for darknet's 80 COCO names (``images.COCO_CATEGORY_IDS``), None (the class
    index is the category) for any other names."""
    return images.COCO_CATEGORY_IDS if tuple(names) == images.coco_names() else None


def image_ids(paths: Sequence[PathLike]) -> list[int]:
    """COCO image ids for image files: the number that ends each file's name (``000000397133.jpg`` and
    ``COCO_val2014_000000397133.jpg`` are 397133, as COCO names its images) when every name ends in
    one and no two are equal; otherwise 1, 2, ... in the order given."""
    numbers = [re.search(r"(\d+)$", Path(p).stem) for p in paths]
    if all(numbers):
        ids = [int(m.group(1)) for m in numbers if m]
        if len(set(ids)) == len(ids):
            return ids
    return list(range(1, len(paths) + 1))


def output_names(paths: Sequence[PathLike]) -> list[str]:
    """A file name for each image's drawn copy: its own name, with ``-2``, ``-3``, ... before the
    suffix for a name an earlier image already has (the same name in two directories)."""
    taken: set[str] = set()
    names = []
    for p in map(Path, paths):
        name, n = p.name, 1
        while name.lower() in taken:
            n += 1
            name = f"{p.stem}-{n}{p.suffix}"
        taken.add(name.lower())
        names.append(name)
    return names


@dataclass(frozen=True)
class Detections:
    """One image's detections, sorted by score (descending): ``boxes`` (K, 4) float32 x1, y1, x2, y2 in
    the original image's pixels, not clipped (darknet clips when it draws and writes results);
    ``scores`` (K,) float32; ``classes`` (K,) int64; the image's ``width`` and ``height``."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def coco_rows(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO results rows (``images.coco_results``): bbox x, y, w, h clipped to the image."""
        return images.coco_results(
            image_id, self.boxes, self.scores, self.classes, self.width, self.height, category_ids
        )

    def draw(self, image: Tensor | Any, names: Sequence[str]) -> Any:
        """The image with these detections drawn (``images.draw_detections``), a PIL image."""
        return images.draw_detections(image, self.boxes, self.scores, self.classes, names)


class ImageDetector:
    """A :class:`Detector` for whole images of any size, as darknet's ``detector test`` treats them.

    Args:
        detector: the Detector (its model, thresholds and NMS kind).
        size: (height, width) of the network input; default: the model's [net] size.
        letterbox: letterbox the image (darknet's ``-letter_box``, or ``letter_box=1`` in [net]) instead
            of stretching it to the network's size.
        run_model: what computes the rows from a network input, in place of ``detector.model`` (a
            ``torch.compile``-d model, a TensorRT module); the NMS runs after it, on its device.
        device, dtype: where and in which dtype the input is given to the model (default: those of
            the model's first parameter; the model must already be there).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        size: tuple[int, int] | None = None,
        letterbox: bool = False,
        run_model: Callable[[Tensor], Tensor] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(detector, Detector):
            raise TypeError(f"ImageDetector: expected a torch_mish.darknet.Detector, got {type(detector).__name__}")
        model = detector.model
        if size is None:
            size = (getattr(model, "height", 0), getattr(model, "width", 0))
            if min(size) < 1:
                raise ValueError(f"ImageDetector: {type(model).__name__} has no [net] size; pass size=(height, width)")
        if getattr(model, "channels", 3) != 3:
            raise ValueError(f"ImageDetector: the model takes {model.channels} channels; images are read as RGB (3)")
        like = next(model.parameters(), torch.empty(0))
        self.detector = detector
        self.height, self.width = size
        self.letterbox = letterbox
        self.run_model = run_model if run_model is not None else model
        self.device = torch.device(device) if device is not None else like.device
        self.dtype = dtype or like.dtype

    def network_input(self, image: Tensor) -> Tensor:
        """The (1, 3, height, width) float32 network input of a (3, H, W) image (``images.read_image``),
        on the CPU."""
        if self.letterbox:
            return images.letterbox_image(image, self.width, self.height)[None]
        return images.resize_image(image, self.width, self.height)[None]

    def nms_units(self, image_width: int, image_height: int) -> tuple[float, float]:
        """The network-input pixels that make one unit of darknet's relative coordinates, in x and y:
        the whole input, or for a letterboxed one the part of it the image covers."""
        if not self.letterbox:
            return float(self.width), float(self.height)
        new_w, new_h, _, _ = images.letterbox_geometry(image_width, image_height, self.width, self.height)
        return float(new_w), float(new_h)

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Detections:
        """darknet's detections of a (3, H, W) float32 image in [0, 1] (``images.read_image``)."""
        height, width = image.shape[1], image.shape[2]
        x = self.network_input(image).to(device=self.device, dtype=self.dtype)
        rows = self.run_model(x)
        d = self.detector
        units = self.nms_units(width, height)
        num, boxes, scores, classes = darknet_nms(
            rows, d.conf_thresh, d.iou_thresh, d.max_det, d.nms_kind, d.beta_nms, *units
        )
        k = int(num[0, 0])
        boxes = images.boxes_to_image(boxes[0, :k].cpu(), width, height, self.width, self.height, self.letterbox)
        return Detections(boxes, scores[0, :k].cpu(), classes[0, :k].cpu().long(), width, height)
