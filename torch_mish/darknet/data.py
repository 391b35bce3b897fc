"""Datasets in darknet's format, loaded and augmented as darknet's detector training does
(AlexeyAB/darknet ``src/data.c``: load_data_detection, fill_truth_detection, correct_boxes,
blend_truth_mosaic; ``src/utils.c``: replace_image_to_label; ``src/image.c``: resize_image,
letterbox_image, distort_image).

    data = read_data_config("obj.data")                       # classes, train, valid, names
    train = DarknetDataset.from_data(data, "train", model)    # the cfg's size and augmentations
    loader = DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate)
    images, targets, infos = next(iter(loader))               # targets (M, 6) for YoloLoss

Files, as darknet reads them:

- ``obj.data``: ``key = value`` lines (``#``/``;`` comments); ``classes``, ``train``, ``valid``,
  ``names`` (``backup``, ``eval`` and the rest are kept in :attr:`DataConfig.options`). Relative
  paths are resolved as darknet resolves them, against the working directory; when a path does not
  exist there it is tried against the directory of the file naming it (``obj.data`` for its keys,
  the list file for its images), so that a dataset directory works from anywhere.
- Image lists: one image path per line (blank lines skipped).
- Labels: for ``.../JPEGImages/x.jpg`` (or COCO's ``.../images/train2017/x.jpg`` and the other
  paths darknet knows) the file ``.../labels/x.txt``, otherwise the ``.txt`` beside the image
  (extension ``.jpg .jpeg .png .bmp .ppm .tiff`` in either case replaced). One ``class cx cy w h``
  row per box, relative to the image. darknet stops reading at the first malformed row and skips
  out-of-range classes; here a malformed row, a class outside ``[0, classes)``, a centre outside
  ``[0, 1]`` or a size outside ``(0, 1]`` is a ``LabelError`` naming the file and line. A missing
  label file means an image without boxes, as in darknet (a warning says how many there are).

Training augmentations (``Augment.from_model``: [net] and the last [yolo] section, as darknet's
train_detector reads them) — what darknet does, and what this does:

- ``jitter`` ([yolo], default 0.2) and ``resize`` ([yolo], default 1): darknet crops a rectangle
  whose four sides move independently by up to ``jitter`` of the image size (and by a shared random
  zoom up to ``resize``), filling what lies outside the image with the image's mean colour, then
  resizes the crop to the network size with bilinear interpolation. Same here (torch's bilinear,
  half-pixel centres, as OpenCV's INTER_LINEAR); boxes are moved, clipped to the crop and dropped
  when smaller than one input pixel or centred outside it (fill_truth_detection's rules).
- ``flip`` ([net], default 1): a horizontal flip with probability 1/2. Same.
- ``hue``, ``saturation``, ``exposure`` ([net]): hue shifted by a uniform amount in ``[-hue, hue]``
  (a fraction of the hue circle), saturation and value scaled by a factor in ``[1, s]`` or its
  inverse (probability 1/2 each). Same, in float HSV with the hue wrapping around (darknet's
  non-OpenCV distort_image; its OpenCV build shifts 8-bit hue with saturation at 0 and 255).
- ``letter_box`` ([net]): the crop is widened or heightened to the network's aspect ratio, so
  the image is not stretched. Same.
- ``mosaic`` ([net]): with probability 1/2 darknet draws a random centre point (20-80 % of the
  size) and fills each quadrant with the part of a differently augmented image nearest to that
  point, moving a random half of the crops into their corner; boxes keep their extent beyond
  their quadrant unless ``mosaic_bound=1``. Same, per sample (darknet decides per loading thread).
  darknet refuses ``mosaic=1`` with ``letter_box=1`` (yolov4-csp, yolov4x-mish and yolov4-p5 set
  both); here the letterboxed crop is used for each quadrant.
- darknet shuffles each image's boxes on every load (randomize_boxes) and keeps at most the last
  [yolo] section's ``max`` boxes (200). Same.
- Not implemented (``AugmentError`` when set): ``blur``, ``gaussian_noise``, ``mixup``, ``cutmix``,
  ``track``, ``contrastive`` (none of the YOLOv4 family's cfgs sets them). ``angle`` and
  ``aspect`` are classifier augmentations darknet's detector loader does not read.

Without augmentation (evaluation), an image is resized to the network size as darknet's
validation does: stretched with resize_image (bilinear with corner-aligned sampling), or with
``letterbox=True`` scaled to fit and centred on grey (letterbox_image).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from torch_mish.darknet.model import Darknet

IMAGE_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM", ".tiff", ".TIFF")
# replace_image_to_label: the first occurrence of each, in this order
_LABEL_DIRS = (
    ("/images/train2017/", "/labels/train2017/"),
    ("/images/val2017/", "/labels/val2017/"),
    ("/JPEGImages/", "/labels/"),
    ("\\images\\train2017\\", "\\labels\\train2017\\"),
    ("\\images\\val2017\\", "\\labels\\val2017\\"),
    ("\\images\\train2014\\", "\\labels\\train2014\\"),
    ("\\images\\val2014\\", "\\labels\\val2014\\"),
    ("/images/train2014/", "/labels/train2014/"),
    ("/images/val2014/", "/labels/val2014/"),
    ("\\JPEGImages\\", "\\labels\\"),
)


class DataError(ValueError):
    """A dataset file that cannot be used: the message names the file (and line)."""


class LabelError(DataError):
    """A malformed label row: ``file:line: ...``."""


class AugmentError(ValueError):
    """A [net] augmentation that DarknetDataset does not implement."""


# ---------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class DataConfig:
    """An ``obj.data`` file: ``classes``, the ``train``/``valid`` image lists and the ``names``
    file resolved to paths (None when the key is absent), and every key as written."""

    path: Path
    classes: int
    train: Path | None
    valid: Path | None
    names: Path | None
    options: dict[str, str] = field(default_factory=dict)

    def class_names(self) -> list[str]:
        """The names file's lines (``classes`` numbers as names when there is no names file)."""
        if self.names is None:
            return [str(i) for i in range(self.classes)]
        names = [line.strip() for line in _read_text(self.names, "names file").splitlines()]
        while names and not names[-1]:
            names.pop()
        if len(names) != self.classes:
            raise DataError(f"{self.names}: {len(names)} names, {self.path} says classes={self.classes}")
        return names

    def split(self, split: str) -> Path:
        path = {"train": self.train, "valid": self.valid or self.train}.get(split)
        if split not in ("train", "valid"):
            raise ValueError(f"split={split!r}: 'train' or 'valid'")
        if path is None:
            raise DataError(f"{self.path}: no {split}= list")
        return path


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def _resolve(value: str, base: Path) -> Path:
    """darknet opens relative paths from the working directory; the file's own directory is tried
    when that does not exist."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    beside = base / path
    return beside if beside.exists() else path


def read_data_config(path: str | Path) -> DataConfig:
    """Read an ``obj.data`` file (darknet's read_data_cfg: spaces removed, ``#``/``;`` comments)."""
    path = Path(path)
    options: dict[str, str] = {}
    for number, raw in enumerate(_read_text(path, "data file").splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise DataError(f"{path}:{number}: expected key=value, got {raw.strip()!r}")
        options.setdefault(key, value)  # darknet's option_find returns the first
    if "classes" not in options:
        raise DataError(f"{path}: no classes= line")
    try:
        classes = int(options["classes"])
    except ValueError:
        raise DataError(f"{path}: classes={options['classes']}: expected an integer") from None
    if classes < 1:
        raise DataError(f"{path}: classes={classes}: must be >= 1")
    base = path.parent

    def get(key: str) -> Path | None:
        return _resolve(options[key], base) if key in options else None

    return DataConfig(path, classes, get("train"), get("valid"), get("names"), options)


def read_image_list(path: str | Path) -> list[tuple[Path, int]]:
    """The images of a list file with the line each is on."""
    path = Path(path)
    out = []
    for number, raw in enumerate(_read_text(path, "image list").splitlines(), start=1):
        line = raw.strip()
        if line:
            out.append((_resolve(line, path.parent), number))
    if not out:
        raise DataError(f"{path}: the image list is empty")
    return out


def label_path(image: str | Path) -> Path:
    """The label file darknet reads for ``image`` (replace_image_to_label)."""
    text = str(image)
    for find, replace in _LABEL_DIRS:
        text = text.replace(find, replace, 1)
    text = text.strip()
    for ext in IMAGE_EXTENSIONS:
        if text.endswith(ext):
            text = text[: -len(ext)] + ".txt"
            break
    return Path(text)


def read_labels(path: str | Path, classes: int) -> Tensor:
    """(K, 5) float32 rows ``class, cx, cy, w, h`` of a label file; a missing file is no boxes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return torch.zeros(0, 5)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the label file: {exc.strerror or exc}") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise LabelError(f"{where}: expected 'class cx cy w h', got {raw.strip()!r}")
        try:
            cls = int(fields[0])
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise LabelError(f"{where}: expected an integer class and four numbers, got {raw.strip()!r}") from None
        if not 0 <= cls < classes:
            raise LabelError(f"{where}: class {cls} outside 0..{classes - 1} (classes={classes})")
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise LabelError(f"{where}: centre ({x:g}, {y:g}) outside [0, 1] (labels are relative to the image)")
        if not (0 < w <= 1 and 0 < h <= 1):
            raise LabelError(f"{where}: size ({w:g}, {h:g}) outside (0, 1] (labels are relative to the image)")
        rows.append((cls, x, y, w, h))
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def load_image(path: Path, where: str = "") -> Tensor:
    """(3, H, W) float32 RGB in [0, 1] (darknet's input scale)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError(
            "reading images needs Pillow: pip install pillow (or pip install 'torch_mish[train]')"
        ) from None

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{where or path}: image {path} not found") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{where or path}: cannot read image {path}: {exc}") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255)


# ---------------------------------------------------------------------------------------------
# Augmentation


def _net_float(model_options: dict[str, str], key: str, default: float) -> float:
    value = model_options.get(key)
    if value is None:
        return default
    try:
        return float(value.split("#", 1)[0])
    except ValueError:
        raise AugmentError(f"[net] {key}={value}: expected a number") from None


@dataclass(frozen=True)
class Augment:
    """Training augmentations (see the module docstring); ``Augment()`` is none."""

    jitter: float = 0.0
    resize: float = 1.0
    flip: bool = False
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    letter_box: bool = False
    mosaic: bool = False
    mosaic_bound: bool = False

    @classmethod
    def from_model(cls, model: Darknet) -> Augment:
        """darknet's train_detector settings: [net] flip/hue/saturation/exposure/letter_box/mosaic,
        the last [yolo] section's jitter (0.2) and resize (1)."""
        net = model.net_options
        for key in ("blur", "gaussian_noise", "mixup", "cutmix", "track", "contrastive"):
            if _net_float(net, key, 0) != 0:
                raise AugmentError(f"{model.source}: [net] {key}={net[key]}: not implemented by DarknetDataset")
        last = model.yolo_layers[-1].train_options if model.yolo_layers else {}
        return cls(
            jitter=_net_float(last, "jitter", 0.2),
            resize=_net_float(last, "resize", 1.0),
            flip=bool(_net_float(net, "flip", 1)),
            hue=_net_float(net, "hue", 0.0),
            saturation=_net_float(net, "saturation", 1.0) or 1.0,
            exposure=_net_float(net, "exposure", 1.0) or 1.0,  # darknet's load_thread: exposure 0 means 1
            letter_box=bool(_net_float(net, "letter_box", 0)),
            mosaic=bool(_net_float(net, "mosaic", 0)),
            mosaic_bound=bool(_net_float(net, "mosaic_bound", 0)),
        )


def _rand_scale(s: float, g: torch.Generator) -> float:
    lo, hi = sorted((1.0, s))
    scale = lo + (hi - lo) * float(torch.rand((), generator=g))
    return scale if int(torch.randint(0, 2, (), generator=g)) else 1 / scale


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(3, H, W) RGB in [0, 1] -> H, S, V with H in [0, 1) (darknet's rgb_to_hsv)."""
    r, g, b = rgb.unbind(0)
    mx, mn = rgb.max(0).values, rgb.min(0).values
    delta = mx - mn
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.where(r == mx, (g - b) / safe, torch.where(g == mx, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(h < 0, h + 6, h) / 6
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    s = torch.where(mx == 0, torch.zeros_like(mx), delta / torch.where(mx == 0, torch.ones_like(mx), mx))
    return torch.stack([h, s, mx])


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(0)
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v]).gather(0, i[None]).squeeze(0)
    g = torch.stack([t, v, v, q, p, p]).gather(0, i[None]).squeeze(0)
    b = torch.stack([p, p, t, v, v, q]).gather(0, i[None]).squeeze(0)
    return torch.stack([r, g, b])


def distort(rgb: Tensor, dhue: float, dsat: float, dexp: float) -> Tensor:
    """distort_image: saturation and value scaled, hue shifted (wrapping), clamped to [0, 1]."""
    if dhue == 0 and dsat == 1 and dexp == 1:
        return rgb
    hsv = rgb_to_hsv(rgb)
    h = torch.remainder(hsv[0] + dhue, 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[1] * dsat, hsv[2] * dexp])).clamp_(0, 1)


def resize_darknet(img: Tensor, w: int, h: int) -> Tensor:
    """darknet's resize_image: separable bilinear sampling with the corners aligned."""
    if img.shape[1:] == (h, w):
        return img.clone()
    return F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=True)[0]


def letterbox(img: Tensor, w: int, h: int) -> tuple[Tensor, int, int]:
    """letterbox_image: scaled to fit (w, h) keeping the aspect ratio, centred on 0.5 grey.
    Returns the image and the scaled size (new_w, new_h)."""
    ih, iw = img.shape[1:]
    if w / iw < h / ih:
        new_w, new_h = w, (ih * w) // iw
    else:
        new_w, new_h = (iw * h) // ih, h
    out = torch.full((3, h, w), 0.5)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    out[:, dy : dy + new_h, dx : dx + new_w] = resize_darknet(img, new_w, new_h)
    return out, new_w, new_h


@dataclass
class _Crop:
    pleft: int
    pright: int
    ptop: int
    pbot: int
    flip: bool


def _crop_params(ow: int, oh: int, w: int, h: int, aug: Augment, g: torch.Generator, corner: int | None) -> _Crop:
    """load_data_detection's pleft/pright/ptop/pbot (C float-to-int truncations kept)."""
    rnd = torch.rand(6, generator=g).tolist()
    r1, r2, r3, r4, rr1, rr2 = rnd
    flip = aug.flip and bool(int(torch.randint(0, 2, (), generator=g)))
    dw, dh = int(ow * aug.jitter), int(oh * aug.jitter)

    def pre(lo: float, hi: float, r: float) -> float:
        lo, hi = min(lo, hi), max(lo, hi)
        return r * (hi - lo) + lo

    resize_down = 1 / aug.resize if aug.resize > 1 else aug.resize
    resize_up = 1 / aug.resize if aug.resize < 1 else aug.resize
    min_rdw, min_rdh = int(ow * (1 - 1 / resize_down) / 2), int(oh * (1 - 1 / resize_down) / 2)
    max_rdw, max_rdh = int(ow * (1 - 1 / resize_up) / 2), int(oh * (1 - 1 / resize_up) / 2)
    pleft, pright = int(pre(-dw, dw, r1)), int(pre(-dw, dw, r2))
    ptop, pbot = int(pre(-dh, dh, r3)), int(pre(-dh, dh, r4))
    hi_w, hi_h = (0, 0) if aug.resize < 1 else (max_rdw, max_rdh)
    pleft = int(pleft + pre(min_rdw, hi_w, rr1))
    pright = int(pright + pre(min_rdw, hi_w, rr2))
    ptop = int(ptop + pre(min_rdh, hi_h, rr1))
    pbot = int(pbot + pre(min_rdh, hi_h, rr2))
    if aug.letter_box:
        net_ar = w / h
        if (ow / oh) / net_ar > 1:
            delta = (ow / net_ar - oh) / 2
            ptop, pbot = int(ptop - delta), int(pbot - delta)
        else:
            delta = (oh * net_ar - ow) / 2
            pleft, pright = int(pleft - delta), int(pright - delta)
    if corner is not None and int(torch.randint(0, 2, (), generator=g)) == 0:
        # mosaic: move a crop's padding to one side so that the image's content meets the centre
        k = corner if not flip else (1, 0, 3, 2)[corner]
        if k in (0, 2):
            pright, pleft = pright + pleft, 0
        else:
            pleft, pright = pleft + pright, 0
        if k in (0, 1):
            pbot, ptop = pbot + ptop, 0
        else:
            ptop, pbot = ptop + pbot, 0
    if ow - pleft - pright <= 0 or oh - ptop - pbot <= 0 or ow - pleft <= 0 or oh - ptop <= 0:
        pleft, pright, ptop, pbot = 0, 0, 0, 0  # darknet: "invalid resize", the whole image
    return _Crop(pleft, pright, ptop, pbot, flip)


def _crop_resize(img: Tensor, c: _Crop, w: int, h: int) -> Tensor:
    """image_data_augmentation's crop (outside the image: its mean colour), resize and flip."""
    _, oh, ow = img.shape
    sw, sh = ow - c.pleft - c.pright, oh - c.ptop - c.pbot
    if (c.pleft, c.ptop, sw, sh) == (0, 0, ow, oh):
        crop = img
    else:
        crop = img.mean((1, 2), keepdim=True).expand(3, sh, sw).clone()
        x0, y0 = max(0, c.pleft), max(0, c.ptop)
        x1, y1 = min(ow, c.pleft + sw), min(oh, c.ptop + sh)
        if x1 > x0 and y1 > y0:
            crop[:, y0 - c.ptop : y1 - c.ptop, x0 - c.pleft : x1 - c.pleft] = img[:, y0:y1, x0:x1]
    out = F.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return out.flip(2) if c.flip else out


def _crop_boxes(labels: Tensor, c: _Crop, ow: int, oh: int, w: int, h: int) -> Tensor:
    """correct_boxes + fill_truth_detection for one crop: moved, flipped, clipped, filtered."""
    if not labels.shape[0]:
        return labels
    sw, sh = ow - c.pleft - c.pright, oh - c.ptop - c.pbot
    sx, sy = sw / ow, sh / oh
    dx, dy = (c.pleft / ow) / sx, (c.ptop / oh) / sy
    cls, x, y, bw, bh = labels.double().unbind(1)
    outside = (x + bw / 2 < 0) | (y + bh / 2 < 0) | (x - bw / 2 > 1) | (y - bh / 2 > 1) | ((x == 0) & (y == 0))
    left, right = (x - bw / 2) / sx - dx, (x + bw / 2) / sx - dx
    top, bot = (y - bh / 2) / sy - dy, (y + bh / 2) / sy - dy
    if c.flip:
        left, right = 1 - right, 1 - left
    left, right, top, bot = (v.clamp(0, 1) for v in (left, right, top, bot))
    x, y = (left + right) / 2, (top + bot) / 2
    bw, bh = (right - left).clamp(0, 1), (bot - top).clamp(0, 1)
    keep = ~outside & (bw >= 1 / w) & (bh >= 1 / h) & (x > 0) & (x <= 1) & (y > 0) & (y <= 1)
    return torch.stack([cls, x, y, bw, bh], 1)[keep].float()


def _mosaic_boxes(
    labels: Tensor, k: int, cut: tuple[int, int], shifts: tuple[int, int, int, int], w: int, h: int, bound: bool
) -> Tensor:
    """blend_truth_mosaic for quadrant k (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    if not labels.shape[0]:
        return labels
    cut_x, cut_y = cut
    left_s, right_s, top_s, bot_s = shifts
    cls, xb, yb, wb, hb = labels.double().unbind(1)
    xb = xb - (w - cut_x - right_s) / w if k in (0, 2) else xb + (cut_x - left_s) / w
    yb = yb - (h - cut_y - bot_s) / h if k in (0, 1) else yb + (cut_y - top_s) / h

    def ints(xb: Tensor, yb: Tensor, wb: Tensor, hb: Tensor) -> tuple[Tensor, ...]:
        return tuple(
            torch.trunc(v) for v in ((xb - wb / 2) * w, (xb + wb / 2) * w, (yb - hb / 2) * h, (yb + hb / 2) * h)
        )

    left, right, top, bot = ints(xb, yb, wb, hb)
    if bound:
        lb, rb = (0, cut_x) if k in (0, 2) else (cut_x, w)
        tb, bb = (0, cut_y) if k in (0, 1) else (cut_y, h)
        left, right = left.clamp(min=lb), right.clamp(max=rb)
        top, bot = top.clamp(min=tb), bot.clamp(max=bb)
        xb, wb = (right + left) / 2 / w, (right - left) / w
        yb, hb = (bot + top) / 2 / h, (bot - top) / h
    else:
        d = torch.where(left < 0, left / w, torch.zeros_like(left))
        xb, wb = xb - d / 2, wb + d
        d = torch.where(right > w, (right - w) / w, torch.zeros_like(right))
        xb, wb = xb - d / 2, wb - d
        d = torch.where(top < 0, top / h, torch.zeros_like(top))
        yb, hb = yb - d / 2, hb + d
        d = torch.where(bot > h, (bot - h) / h, torch.zeros_like(bot))
        yb, hb = yb - d / 2, hb - d
        left, right, top, bot = ints(xb, yb, wb, hb)
    keep = (left >= 0) & (right <= w) & (top >= 0) & (bot <= h)
    keep &= (wb > 0) & (wb < 1) & (hb > 0) & (hb < 1) & (xb > 0) & (xb < 1) & (yb > 0) & (yb < 1)
    keep &= (wb > 1 / w) & (hb > 1 / h)
    return torch.stack([cls, xb, yb, wb, hb], 1)[keep].float()


# ---------------------------------------------------------------------------------------------
# The dataset


@dataclass
class Sample:
    """One image at the network size and its boxes (class, cx, cy, w, h relative to ``image``).
    ``info``: ``path``, ``size`` (original width, height), ``index`` in the dataset, and for
    unaugmented samples ``letterbox`` (the scaled width and height inside the input, or None)."""

    image: Tensor
    labels: Tensor
    info: dict[str, Any]


class DarknetDataset(Dataset):
    """Images and labels in darknet's format, at ``size`` (height, width).

    ``images``: an image list file, or a list of image paths. ``augment``: training augmentations
    (:class:`Augment`, e.g. ``Augment.from_model(model)``); None gives darknet's validation input
    (stretched, or ``letterbox=True``). ``max_boxes`` keeps at most that many boxes per image, after
    darknet's shuffle of them (training). Labels are read and checked when the dataset is built.
    Randomness comes from ``torch``'s generator (per DataLoader worker), or ``seed`` + index.
    """

    def __init__(
        self,
        images: str | Path | Sequence[str | Path],
        size: tuple[int, int],
        classes: int,
        augment: Augment | None = None,
        letterbox: bool = False,
        max_boxes: int | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(images, (str, Path)):
            self.source = str(images)
            listed = read_image_list(images)
            self.items = [(p, f"{images}:{line}") for p, line in listed]
        else:
            self.source = "<list>"
            self.items = [(Path(p), str(p)) for p in images]
            if not self.items:
                raise DataError("images: the list is empty")
        h, w = (int(v) for v in size)
        if h < 1 or w < 1:
            raise ValueError(f"size={size}: must be a positive (height, width)")
        self.size = (h, w)
        self.classes = classes
        self.augment = augment
        self.letterbox = letterbox
        self.max_boxes = max_boxes
        self.seed = seed
        self.epoch = 0
        for path, where in self.items:
            if not path.is_file():
                raise DataError(f"{where}: image {path} not found")
        self.labels = [read_labels(label_path(p), classes) for p, _ in self.items]
        missing = [p for p, _ in self.items if not label_path(p).exists()]
        if missing:
            warnings.warn(
                f"{self.source}: {len(missing)} of {len(self.items)} images have no label file (no boxes), "
                f"e.g. {label_path(missing[0])}",
                stacklevel=2,
            )

    @classmethod
    def from_data(
        cls,
        data: DataConfig | str | Path,
        split: str,
        model: Darknet,
        augment: bool | Augment | None = None,
        size: tuple[int, int] | int | None = None,
        seed: int | None = None,
    ) -> DarknetDataset:
        """The ``train`` or ``valid`` list of an obj.data, at the model's size (or ``size``). By
        default ``train`` gets the cfg's augmentations and ``max`` boxes, ``valid`` darknet's
        validation input (letterboxed when [net] letter_box=1)."""
        if not isinstance(data, DataConfig):
            data = read_data_config(data)
        classes = model.yolo_layers[-1].classes if model.yolo_layers else data.classes
        if classes != data.classes:
            raise DataError(f"{data.path}: classes={data.classes}, the cfg's [yolo] layers have classes={classes}")
        if size is None:
            size = (model.height, model.width)
        elif isinstance(size, int):
            size = (size, size)
        if augment is None:
            augment = split == "train"
        aug = Augment.from_model(model) if augment is True else (augment or None)
        max_boxes = None
        if split == "train" and model.yolo_layers:
            max_boxes = int(model.yolo_layers[-1].train_options.get("max", "200").split("#")[0])
        letter = bool(_net_float(model.net_options, "letter_box", 0))
        return cls(data.split(split), size, classes, aug, letter, max_boxes, seed)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """With ``seed``: a different, reproducible draw of augmentations per epoch."""
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator:
        g = torch.Generator()
        if self.seed is None:
            g.manual_seed(int(torch.randint(0, 2**62, ())))
        else:
            g.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return g

    def image(self, index: int) -> Tensor:
        path, where = self.items[index]
        return load_image(path, where)

    def __getitem__(self, index: int) -> Sample:
        path, _ = self.items[index]
        h, w = self.size
        aug = self.augment
        if aug is None:
            img = self.image(index)
            _, oh, ow = img.shape
            info = {"path": str(path), "size": (ow, oh), "index": index, "letterbox": None}
            labels = self.labels[index].clone()
            if self.letterbox:
                img, new_w, new_h = letterbox(img, w, h)
                info["letterbox"] = (new_w, new_h)
                if labels.shape[0]:  # the boxes inside the letterboxed input
                    labels[:, 1] = (labels[:, 1] * new_w + (w - new_w) // 2) / w
                    labels[:, 2] = (labels[:, 2] * new_h + (h - new_h) // 2) / h
                    labels[:, 3] *= new_w / w
                    labels[:, 4] *= new_h / h
            else:
                img = resize_darknet(img, w, h)
            return Sample(img, labels, info)
        g = self._generator(index)
        if aug.mosaic and int(torch.randint(0, 2, (), generator=g)):
            return self._mosaic(index, g)
        img, labels, (ow, oh, _) = self._augmented(index, g, None)
        return Sample(img, labels, {"path": str(path), "size": (ow, oh), "index": index})

    def _augmented(self, index: int, g: torch.Generator, corner: int | None) -> tuple[Tensor, Tensor, tuple]:
        aug = self.augment
        assert aug is not None
        h, w = self.size
        img = self.image(index)
        _, oh, ow = img.shape
        crop = _crop_params(ow, oh, w, h, aug, g, corner)
        dhue = (2 * float(torch.rand((), generator=g)) - 1) * aug.hue
        dsat, dexp = _rand_scale(aug.saturation, g), _rand_scale(aug.exposure, g)
        labels = self.labels[index]
        if labels.shape[0] > 1:  # randomize_boxes, then at most max_boxes (before the crop drops any)
            labels = self._limit(labels[torch.randperm(labels.shape[0], generator=g)])
        out = distort(_crop_resize(img, crop, w, h), dhue, dsat, dexp)
        boxes = _crop_boxes(labels, crop, ow, oh, w, h)
        return out, boxes, (ow, oh, crop)

    def _limit(self, labels: Tensor) -> Tensor:
        if self.max_boxes is not None and labels.shape[0] > self.max_boxes:
            labels = labels[: self.max_boxes]
        return labels

    def _mosaic(self, index: int, g: torch.Generator) -> Sample:
        aug = self.augment
        assert aug is not None
        h, w = self.size
        cut_x = int(torch.randint(int(w * 0.2), int(w * 0.8) + 1, (), generator=g))
        cut_y = int(torch.randint(int(h * 0.2), int(h * 0.8) + 1, (), generator=g))
        others = torch.randint(0, len(self), (3,), generator=g).tolist()
        out = torch.empty(3, h, w)
        boxes = []
        for k, i in enumerate([index, *others]):
            img, labels, (ow, oh, crop) = self._augmented(i, g, k)
            pleft, pright = (crop.pright, crop.pleft) if crop.flip else (crop.pleft, crop.pright)
            left_s = min(cut_x, max(0, int(-pleft * w / ow)))
            top_s = min(cut_y, max(0, int(-crop.ptop * h / oh)))
            right_s = min(w - cut_x, max(0, int(-pright * w / ow)))
            bot_s = min(h - cut_y, max(0, int(-crop.pbot * h / oh)))
            ys = slice(0, cut_y) if k in (0, 1) else slice(cut_y, h)
            xs = slice(0, cut_x) if k in (0, 2) else slice(cut_x, w)
            sy = h - cut_y - bot_s if k in (0, 1) else top_s - cut_y
            sx = w - cut_x - right_s if k in (0, 2) else left_s - cut_x
            out[:, ys, xs] = img[:, ys.start + sy : ys.stop + sy, xs.start + sx : xs.stop + sx]
            boxes.append(
                _mosaic_boxes(labels, k, (cut_x, cut_y), (left_s, right_s, top_s, bot_s), w, h, aug.mosaic_bound)
            )
        labels = self._limit(torch.cat(boxes))
        path, _ = self.items[index]
        return Sample(
            out, labels, {"path": str(path), "size": self.size[::-1], "index": index, "mosaic": (cut_x, cut_y)}
        )


def collate(samples: Sequence[Sample]) -> tuple[Tensor, Tensor, list[dict[str, Any]]]:
    """Stack a batch: images (N, 3, H, W), targets (M, 6) image index, class, cx, cy, w, h (each
    image's boxes in order), and the samples' info dicts."""
    images = torch.stack([s.image for s in samples])
    rows = [torch.cat([torch.full((s.labels.shape[0], 1), float(i)), s.labels], 1) for i, s in enumerate(samples)]
    targets = torch.cat(rows) if rows else torch.zeros(0, 6)
    return images, targets, [s.info for s in samples]


__all__ = [
    "Augment",
    "AugmentError",
    "DarknetDataset",
    "DataConfig",
    "DataError",
    "LabelError",
    "Sample",
    "collate",
    "label_path",
    "letterbox",
    "load_image",
    "read_data_config",
    "read_image_list",
    "read_labels",
]
