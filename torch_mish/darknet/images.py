"""Images in and out of a darknet detector, as darknet's ``detector test`` handles them.

    from torch_mish.darknet import images
    image = images.read_image("dog.jpg")                   # (3, H, W) float32 RGB in [0, 1]
    x = images.resize_image(image, 608, 608)               # or images.letterbox_image(...)
    num_dets, boxes, scores, classes = detector(x[None])
    k = int(num_dets[0])
    boxes = images.boxes_to_image(boxes[0, :k], image.shape[2], image.shape[1], 608, 608)
    images.draw_detections(image, boxes, scores[0, :k], classes[0, :k], images.coco_names()).save("out.png")
    rows = images.coco_results(1, boxes, scores[0, :k], classes[0, :k], image.shape[2], image.shape[1])

Reading, drawing and saving need Pillow (``pip install torch_mish[image]``); resizing, mapping boxes
and the COCO rows are tensor code.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import Tensor

# COCO's category id of each of darknet's 80 coco.names classes (COCO numbers 91 categories, 80 used).
COCO_CATEGORY_IDS = (
    *range(1, 12),
    *range(13, 26),
    27,
    28,
    *range(31, 45),
    *range(46, 66),
    67,
    70,
    *range(72, 83),
    *range(84, 91),
)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "reading, drawing and saving images needs Pillow: pip install pillow (or torch_mish[image])"
        ) from None
    return Image


@cache
def coco_names() -> tuple[str, ...]:
    """darknet's 80 COCO class names (its data/coco.names), in class-index order."""
    text = (resources.files("torch_mish.darknet") / "coco.names").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names from a darknet .names file: one per line, blank lines skipped."""
    with open(path, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if not names:
        raise ValueError(f"{os.fspath(path)}: no class names in it")
    return names


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """An image file (JPEG, PNG, anything Pillow reads) as a (3, H, W) float32 RGB tensor with values
    byte / 255, as darknet loads it (grayscale replicated to three channels, alpha dropped).

    Raises ValueError naming the file when it cannot be read as an image."""
    image_module = _pil()
    try:
        with image_module.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {os.fspath(path)}: {exc}") from None
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    return data.permute(2, 0, 1).float() / 255.0


def _check_image(image: Tensor, where: str) -> None:
    if not isinstance(image, Tensor) or image.dim() != 3 or image.dtype != torch.float32:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{where}: expected a (channels, height, width) float32 image, got {shape}")


def resize_image(image: Tensor, width: int, height: int) -> Tensor:
    """darknet's resize_image: bilinear, corners aligned (source pixel c * (W - 1) / (w - 1)), columns
    first, then rows, in float32 as darknet computes it (its last row and column take the source's
    last, and its last row skips the second term, as darknet's does). (C, H, W) -> (C, height, width)."""
    _check_image(image, "resize_image")
    if width < 1 or height < 1:
        raise ValueError(f"resize_image: width and height must be at least 1, got {width}x{height}")
    channels, src_h, src_w = image.shape
    if (src_w, src_h) == (width, height):
        return image.clone()
    f32 = torch.float32

    # Columns: part[:, r, c] = (1 - dx) * im[ix] + dx * im[ix + 1]; the last column (or a 1-wide
    # source) is the source's last.
    c = torch.arange(width, dtype=f32)
    sx = c * (torch.tensor(src_w - 1, dtype=f32) / (width - 1)) if width > 1 else torch.zeros(1, dtype=f32)
    ix = sx.to(torch.int64).clamp(max=max(src_w - 2, 0))
    dx = sx - ix.to(f32)
    left = image[:, :, ix]
    right = image[:, :, (ix + 1).clamp(max=src_w - 1)]
    part = (1 - dx) * left + dx * right
    last = torch.zeros(width, dtype=torch.bool)
    last[-1] = True
    if src_w == 1:
        last[:] = True
    part = torch.where(last, image[:, :, src_w - 1 : src_w], part)

    # Rows: resized[r] = (1 - dy) * part[iy], plus dy * part[iy + 1] except on the last row (or a
    # 1-high source).
    r = torch.arange(height, dtype=f32)
    sy = r * (torch.tensor(src_h - 1, dtype=f32) / (height - 1)) if height > 1 else torch.zeros(1, dtype=f32)
    iy = sy.to(torch.int64).clamp(max=src_h - 1)
    dy = (sy - iy.to(f32))[:, None]
    resized = (1 - dy) * part[:, iy, :]
    second = dy * part[:, (iy + 1).clamp(max=src_h - 1), :]
    add = torch.ones(height, dtype=torch.bool)
    add[-1] = False
    if src_h == 1:
        add[:] = False
    return torch.where(add[:, None], resized + second, resized).reshape(channels, height, width)


def letterbox_geometry(image_width: int, image_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Where darknet's letterbox_image puts an image_width x image_height image in a width x height
    one: (new_width, new_height, left, top) of the resized image inside the gray canvas."""
    # compared in float32, as darknet does
    if np.float32(width) / np.float32(image_width) < np.float32(height) / np.float32(image_height):
        new_w, new_h = width, (image_height * width) // image_width
    else:
        new_w, new_h = (image_width * height) // image_height, height
    return new_w, new_h, (width - new_w) // 2, (height - new_h) // 2


def letterbox_image(image: Tensor, width: int, height: int) -> Tensor:
    """darknet's letterbox_image (``detector test -letter_box``): resize keeping the aspect ratio to fit
    width x height, centred on a canvas of 0.5 gray."""
    _check_image(image, "letterbox_image")
    new_w, new_h, left, top = letterbox_geometry(image.shape[2], image.shape[1], width, height)
    canvas = torch.full((image.shape[0], height, width), 0.5, dtype=torch.float32)
    canvas[:, top : top + new_h, left : left + new_w] = resize_image(image, new_w, new_h)
    return canvas


def boxes_to_image(
    boxes: Tensor, image_width: int, image_height: int, width: int, height: int, letterbox: bool = False
) -> Tensor:
    """Boxes (..., 4) x1, y1, x2, y2 in pixels of the width x height network input -> pixels of the
    image_width x image_height original, as darknet's correct_yolo_boxes maps them back (for a
    letterboxed input: the offset (width - new_width) / 2 and the scale of the resized image). Not
    clipped."""
    if letterbox:
        new_w, new_h, _, _ = letterbox_geometry(image_width, image_height, width, height)
    else:
        new_w, new_h = width, height
    b = boxes.to(torch.float64)
    # darknet removes half the margin as a real number, whatever integer offset the image was put at
    offset = torch.tensor([width - new_w, height - new_h] * 2, dtype=torch.float64) / 2
    scale = torch.tensor([image_width / new_w, image_height / new_h] * 2, dtype=torch.float64)
    return ((b - offset) * scale).to(torch.float32)


def clip_boxes(boxes: Tensor, image_width: int, image_height: int) -> Tensor:
    """x1, y1, x2, y2 boxes clipped to a image_width x image_height image."""
    limit = torch.tensor([image_width, image_height] * 2, dtype=boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), limit)


def coco_results(
    image_id: int,
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    image_width: int,
    image_height: int,
    category_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One image's detections as COCO results rows: ``image_id``, ``category_id`` (``category_ids[class]``,
    e.g. COCO_CATEGORY_IDS for darknet's 80 classes; the class index when None), ``bbox`` [x, y, w, h]
    in original-image pixels clipped to the image (as darknet's print_cocos), ``score``.

    boxes (K, 4) x1, y1, x2, y2 in original pixels (boxes_to_image), scores (K,), classes (K,): the
    detections to write (an image's first num_dets)."""
    clipped = clip_boxes(boxes.detach().cpu().float(), image_width, image_height)
    rows = []
    for box, score, cls in zip(clipped.tolist(), scores.detach().cpu().tolist(), classes.cpu().tolist(), strict=True):
        x1, y1, x2, y2 = box
        category = int(cls) if category_ids is None else int(category_ids[int(cls)])
        rows.append({"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return rows


def class_color(cls: int, classes: int) -> tuple[int, int, int]:
    """A color per class: hues spread around the circle, a class's neighbours far apart."""
    hue = (cls * 0.61803398875) % 1.0 if classes > 1 else 0.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def to_pil(image: Tensor) -> Any:
    """A (3, H, W) float image in [0, 1] as an RGB PIL image (rounded to bytes)."""
    _check_image(image, "to_pil")
    data = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return _pil().fromarray(data.numpy(), "RGB")


def draw_detections(
    image: Tensor | Any,
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    names: Sequence[str],
    line_width: int | None = None,
) -> Any:
    """The image (a (3, H, W) tensor or a PIL image) with each detection drawn: a rectangle in its
    class's color, clipped to the image, and a label ``name score`` on a filled strip above it (inside
    the box when there is no room above). Returns a new RGB PIL image.

    boxes (K, 4) x1, y1, x2, y2 in the image's pixels, scores (K,), classes (K,)."""
    _pil()
    from PIL import ImageDraw, ImageFont

    img = to_pil(image) if isinstance(image, Tensor) else image.convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = line_width or max(1, round(min(img.size) / 250))
    clipped = clip_boxes(boxes.detach().cpu().float(), img.width - 1, img.height - 1)
    for box, score, cls in zip(
        clipped.tolist(), scores.detach().cpu().tolist(), classes.cpu().int().tolist(), strict=True
    ):
        if not 0 <= cls < len(names):
            raise ValueError(f"draw_detections: class {cls} has no name ({len(names)} names given)")
        color = class_color(cls, len(names))
        x1, y1, x2, y2 = (round(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        label = f"{names[cls]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left + 4, bottom - top + 4
        y = y1 - text_h if y1 - text_h >= 0 else y1
        draw.rectangle((x1, y, x1 + text_w, y + text_h), fill=color)
        draw.text((x1 + 2 - left, y + 2 - top), label, fill=(0, 0, 0), font=font)
    return img
