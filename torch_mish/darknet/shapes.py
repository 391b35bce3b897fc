"""A synthetic detection dataset in darknet's format: drawn shapes with exact labels, seeded.

    from torch_mish.darknet.shapes import make_shapes
    data = make_shapes("shapes", n_train=400, n_val=100, size=256, seed=0)   # -> shapes/obj.data

Writes ``obj.data`` (classes, train, valid, names, backup; paths relative to the directory, which
DarknetDataset and darknet run from that directory both resolve), ``obj.names``, ``train.txt`` and
``valid.txt``, and ``train/``/``valid/`` with each image and its ``.txt`` label beside it (the
place darknet looks for it). Each image has a textured, noisy, low-saturation background and 1 to
``max_shapes`` solid, saturated shapes of random size (4-45 % of the image side), colour and place;
shapes may overlap (a later one is drawn over an earlier one, whose label keeps its full extent,
as annotators label occluded objects). A label is the exact pixel extent of its shape: the shape
touches all four sides of its box. The same arguments give the same files, byte for byte.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring")


@dataclass(frozen=True)
class Shape:
    """One drawn shape: class index, the pixel box it fills (x0, y0, x1, y1 inclusive), colour."""

    cls: int
    box: tuple[int, int, int, int]
    color: tuple[int, int, int]

    def label(self, width: int, height: int) -> tuple[int, float, float, float, float]:
        x0, y0, x1, y1 = self.box
        return (
            self.cls,
            (x0 + x1 + 1) / 2 / width,
            (y0 + y1 + 1) / 2 / height,
            (x1 - x0 + 1) / width,
            (y1 - y0 + 1) / height,
        )


def random_scene(
    rng: np.random.Generator, width: int, height: int, classes: int, max_shapes: int, max_overlap: float = 0.35
) -> list[Shape]:
    """Shapes for one image: boxes within the image, pairwise IoU at most ``max_overlap``."""
    shapes: list[Shape] = []
    count = int(rng.integers(1, max_shapes + 1))
    side = min(width, height)
    for _ in range(count * 20):  # rejection sampling of overlaps
        if len(shapes) == count:
            break
        w = int(rng.integers(max(6, int(0.04 * side)), int(0.45 * side) + 1))
        h = int(np.clip(w * rng.uniform(0.7, 1.4), 6, 0.45 * side))
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        box = (x0, y0, x0 + w - 1, y0 + h - 1)
        if any(_iou(box, s.box) > max_overlap for s in shapes):
            continue
        hue = rng.uniform(0, 1)
        color = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1), rng.uniform(0.8, 1)))
        shapes.append(Shape(int(rng.integers(0, classes)), box, color))  # type: ignore[arg-type]
    return shapes


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    inter = iw * ih
    return inter / (area(a) + area(b) - inter)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a low-saturation texture (smooth blobs, stripes) with pixel noise."""
    low = rng.uniform(0, 1, (height // 16 + 2, width // 16 + 2))
    ys = np.linspace(0, low.shape[0] - 1.001, height)
    xs = np.linspace(0, low.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    smooth = (
        low[y0][:, x0] * (1 - fy) * (1 - fx)
        + low[y0 + 1][:, x0] * fy * (1 - fx)
        + low[y0][:, x0 + 1] * (1 - fy) * fx
        + low[y0 + 1][:, x0 + 1] * fy * fx
    )
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    gray = 60 + 110 * smooth + 30 * stripes * rng.uniform(0, 1)
    tint = rng.uniform(-12, 12, 3)
    img = gray[..., None] + tint + rng.normal(0, 8, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def draw(shapes: list[Shape], base: np.ndarray) -> np.ndarray:
    """The shapes drawn, in order, on a copy of ``base`` (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(base)
    d = ImageDraw.Draw(im)
    for s in shapes:
        x0, y0, x1, y1 = s.box
        name = SHAPE_CLASSES[s.cls % len(SHAPE_CLASSES)]
        if name == "circle":
            d.ellipse(s.box, fill=s.color)
        elif name == "square":
            d.rectangle(s.box, fill=s.color)
        elif name == "triangle":
            d.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=s.color)
            d.line([(x0, y1), (x1, y1)], fill=s.color)
            d.point([((x0 + x1) // 2, y0)], fill=s.color)
        elif name == "cross":
            tw, th = max(2, (x1 - x0 + 1) // 3), max(2, (y1 - y0 + 1) // 3)
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            d.rectangle((x0, cy - th // 2, x1, cy - th // 2 + th - 1), fill=s.color)
            d.rectangle((cx - tw // 2, y0, cx - tw // 2 + tw - 1, y1), fill=s.color)
        else:  # ring
            d.ellipse(s.box, outline=s.color, width=max(2, (x1 - x0 + 1) // 6))
    return np.asarray(im)


def make_shapes(
    directory: str | Path,
    n_train: int = 200,
    n_val: int = 50,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    classes: int = len(SHAPE_CLASSES),
    max_shapes: int = 6,
    image_format: str = "png",
) -> Path:
    """Write the dataset into ``directory`` (created; existing files of the same names are
    replaced) and return its ``obj.data``. ``size``: the image side, or (width, height); with an
    int, each image's width and height vary within +-25 % of it (as real datasets' do).
    ``classes`` (at most 5) takes the first names of ``SHAPE_CLASSES``."""
    if not 1 <= classes <= len(SHAPE_CLASSES):
        raise ValueError(f"classes={classes}: between 1 and {len(SHAPE_CLASSES)} ({', '.join(SHAPE_CLASSES)})")
    if n_train < 1 or n_val < 0:
        raise ValueError(f"n_train={n_train}, n_val={n_val}: need n_train >= 1 and n_val >= 0")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format={image_format!r}: 'png' (lossless) or 'jpg'")
    if max_shapes < 1:
        raise ValueError(f"max_shapes={max_shapes}: must be >= 1")
    from PIL import Image

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    names = SHAPE_CLASSES[:classes]
    (root / "obj.names").write_text("".join(f"{n}\n" for n in names))
    (root / "backup").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**63, n_train + n_val)
    splits = (("train", 0, n_train), ("valid", n_train, n_train + n_val))
    for split, start, stop in splits:
        (root / split).mkdir(exist_ok=True)
        lines = []
        for k in range(start, stop):
            r = np.random.default_rng(int(seeds[k]))
            if isinstance(size, int):
                w, h = (int(size * r.uniform(0.75, 1.25)) for _ in range(2))
            else:
                w, h = size
            shapes = random_scene(r, w, h, classes, max_shapes)
            pixels = draw(shapes, background(r, w, h))
            name = f"{split}/{k - start:06d}"
            path = root / f"{name}.{image_format}"
            if image_format == "png":
                Image.fromarray(pixels).save(path, optimize=False)
            else:
                Image.fromarray(pixels).save(path, quality=95)
            labels = "".join("{} {:.6f} {:.6f} {:.6f} {:.6f}\n".format(*s.label(w, h)) for s in shapes)
            (root / f"{name}.txt").write_text(labels)
            lines.append(f"{name}.{image_format}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    data = root / "obj.data"
    data.write_text(
        f"classes = {classes}\ntrain = train.txt\nvalid = {'valid.txt' if n_val else 'train.txt'}\n"
        "names = obj.names\nbackup = backup/\neval = coco\n"
    )
    return data


__all__ = ["SHAPE_CLASSES", "Shape", "background", "draw", "make_shapes", "random_scene"]
