"""DarknetDataset on files the tests write: obj.data, lists and labels as darknet reads them, the
errors (one line, file and line named), darknet's resize/letterbox against loops written from
image.c, augmented boxes against the pixels of the shapes they label, and the shapes generator."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torch_mish.darknet import Darknet, packaged_cfg
from torch_mish.darknet.data import (
    Augment,
    AugmentError,
    DarknetDataset,
    DataError,
    LabelError,
    collate,
    label_path,
    letterbox,
    read_data_config,
    read_labels,
    resize_darknet,
)
from torch_mish.darknet.shapes import SHAPE_CLASSES, make_shapes


def _image(path: Path, w: int, h: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


# ---------------------------------------------------------------------------------------------
# Files


def test_read_data_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "set"
    d.mkdir()
    (d / "train.txt").write_text("a.png\n")
    (d / "obj.names").write_text("cat\ndog\n\n")
    (d / "obj.data").write_text(
        "# a comment\n; another\nclasses = 2\ntrain  =  train.txt\nvalid=valid.txt\nnames = obj.names\nclasses=7\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = read_data_config(d / "obj.data")
    assert cfg.classes == 2  # the first of two equal keys, as darknet's option_find
    assert cfg.train == d / "train.txt"  # not in the working directory: beside obj.data
    assert cfg.valid == Path("valid.txt")  # found nowhere: left as darknet would open it
    assert cfg.class_names() == ["cat", "dog"]
    (elsewhere / "train.txt").write_text("b.png\n")
    assert read_data_config(d / "obj.data").train == Path("train.txt")  # the working directory first


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train = a.txt\n", r"obj.data: no classes= line"),
        ("classes = two\n", r"classes=two: expected an integer"),
        ("classes = 2\ntrain a.txt\n", r"obj.data:2: expected key=value, got 'train a.txt'"),
        ("classes = 0\n", r"classes=0: must be >= 1"),
    ],
)
def test_data_config_errors(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "obj.data").write_text(text)
    with pytest.raises(DataError, match=match):
        read_data_config(tmp_path / "obj.data")


def test_names_count_must_match(tmp_path: Path) -> None:
    (tmp_path / "n.names").write_text("a\nb\nc\n")
    (tmp_path / "obj.data").write_text(f"classes=2\nnames={tmp_path / 'n.names'}\n")
    with pytest.raises(DataError, match="3 names, .* says classes=2"):
        read_data_config(tmp_path / "obj.data").class_names()


@pytest.mark.parametrize(
    ("image", "label"),
    [
        ("data/x.jpg", "data/x.txt"),
        ("VOC/JPEGImages/x.JPEG", "VOC/labels/x.txt"),
        ("coco/images/train2017/000001.jpg", "coco/labels/train2017/000001.txt"),
        ("coco/images/val2014/a.png", "coco/labels/val2014/a.txt"),
        ("set/images/a.png", "set/images/a.txt"),  # darknet does not map a plain images/ directory
        ("a.jpg.png", "a.jpg.txt"),  # only the last extension
    ],
)
def test_label_path(image: str, label: str) -> None:
    assert label_path(image) == Path(label)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("0 0.5 0.5 0.1", r"l.txt:2: expected 'class cx cy w h', got '0 0.5 0.5 0.1'"),
        ("a 0.5 0.5 0.1 0.1", r"l.txt:2: expected an integer class and four numbers"),
        ("0 0.5 x 0.1 0.1", r"l.txt:2: expected an integer class and four numbers"),
        ("3 0.5 0.5 0.1 0.1", r"l.txt:2: class 3 outside 0..2 \(classes=3\)"),
        ("-1 0.5 0.5 0.1 0.1", r"l.txt:2: class -1 outside"),
        ("0 1.5 0.5 0.1 0.1", r"l.txt:2: centre \(1.5, 0.5\) outside \[0, 1\]"),
        ("0 0.5 0.5 0 0.1", r"l.txt:2: size \(0, 0.1\) outside \(0, 1\]"),
        ("0 0.5 0.5 0.1 1.2", r"l.txt:2: size"),
    ],
)
def test_malformed_label_rows(tmp_path: Path, row: str, match: str) -> None:
    (tmp_path / "l.txt").write_text(f"1 0.5 0.5 0.2 0.2\n{row}\n")
    with pytest.raises(LabelError, match=match) as info:
        read_labels(tmp_path / "l.txt", 3)
    assert "\n" not in str(info.value)


def test_labels_read(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("1 0.5 0.25 0.2 0.1\n\n2 0.1 0.9 0.05 0.05  \n")
    labels = read_labels(tmp_path / "l.txt", 3)
    torch.testing.assert_close(labels, torch.tensor([[1, 0.5, 0.25, 0.2, 0.1], [2, 0.1, 0.9, 0.05, 0.05]]))
    assert read_labels(tmp_path / "missing.txt", 3).shape == (0, 5)


def test_missing_image_names_list_and_line(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 20, 10)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.png'}\n\n{tmp_path / 'b.png'}\n")
    with pytest.raises(DataError, match=rf"list.txt:3: image {tmp_path / 'b.png'} not found$"):
        DarknetDataset(tmp_path / "list.txt", (32, 32), 2)


def test_malformed_label_at_construction(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 20, 10)
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5\n")
    with pytest.raises(LabelError, match=r"a.txt:2: expected"):
        DarknetDataset([tmp_path / "a.png"], (32, 32), 2)


def test_missing_labels_warn_and_mean_no_boxes(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 20, 10)
    _image(tmp_path / "b.png", 20, 10)
    (tmp_path / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    with pytest.warns(UserWarning, match=r"1 of 2 images have no label file .*b.txt"):
        ds = DarknetDataset([tmp_path / "a.png", tmp_path / "b.png"], (16, 16), 2)
    assert ds[1].labels.shape == (0, 5)


def test_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not an image")
    (tmp_path / "a.txt").write_text("")
    ds = DarknetDataset([tmp_path / "a.png"], (16, 16), 2)
    with pytest.raises(DataError, match="cannot read image"):
        ds[0]


# ---------------------------------------------------------------------------------------------
# darknet's validation input


def _resize_loop(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """image.c resize_image, written as its loops (channels, rows, columns), float64."""
    c, ih, iw = im.shape
    part = np.zeros((c, ih, w))
    ws, hs = (iw - 1) / (w - 1), (ih - 1) / (h - 1)
    for k in range(c):
        for r in range(ih):
            for col in range(w):
                if col == w - 1 or iw == 1:
                    val = im[k, r, iw - 1]
                else:
                    sx = col * ws
                    ix = int(sx)
                    dx = sx - ix
                    val = (1 - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, col] = val
    out = np.zeros((c, h, w))
    for k in range(c):
        for r in range(h):
            sy = r * hs
            iy = int(sy)
            dy = sy - iy
            out[k, r] = (1 - dy) * part[k, iy]
            if r == h - 1 or ih == 1:
                continue
            out[k, r] += dy * part[k, iy + 1]
    return out


@pytest.mark.parametrize(("iw", "ih", "w", "h"), [(23, 17, 16, 12), (10, 30, 24, 24), (40, 20, 32, 40)])
def test_resize_and_letterbox_match_darknet(iw: int, ih: int, w: int, h: int, gen: torch.Generator) -> None:
    im = torch.rand(3, ih, iw, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(resize_darknet(im, w, h), torch.from_numpy(_resize_loop(im.numpy(), w, h)))
    boxed, new_w, new_h = letterbox(im.float(), w, h)
    if w / iw < h / ih:  # letterbox_image's integer arithmetic
        assert (new_w, new_h) == (w, (ih * w) // iw)
    else:
        assert (new_w, new_h) == ((iw * h) // ih, h)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    inner = torch.from_numpy(_resize_loop(im.numpy(), new_w, new_h)).float()
    torch.testing.assert_close(boxed[:, dy : dy + new_h, dx : dx + new_w], inner)
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[dy : dy + new_h, dx : dx + new_w] = False
    assert (boxed[:, mask] == 0.5).all()


def test_validation_samples(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 40, 20)
    (tmp_path / "a.txt").write_text("1 0.25 0.5 0.5 0.5\n")
    ds = DarknetDataset([tmp_path / "a.png"], (32, 32), 2)
    s = ds[0]
    assert s.image.shape == (3, 32, 32) and s.image.dtype == torch.float32
    torch.testing.assert_close(s.labels, torch.tensor([[1, 0.25, 0.5, 0.5, 0.5]]))
    assert s.info["size"] == (40, 20) and s.info["letterbox"] is None
    lb = DarknetDataset([tmp_path / "a.png"], (32, 32), 2, letterbox=True)[0]
    assert lb.info["letterbox"] == (32, 16)
    # the box's pixels inside the letterboxed input: x 0..16 of 32, y 8+4..8+12 of 32
    torch.testing.assert_close(lb.labels, torch.tensor([[1, 0.25, 0.5, 0.5, 0.25]]))
    _image(tmp_path / "b.png", 20, 40)  # tall: centred horizontally at (32 - 16) // 2 = 8
    (tmp_path / "b.txt").write_text("0 0.25 0.5 0.5 0.5\n")
    tall = DarknetDataset([tmp_path / "b.png"], (32, 32), 2, letterbox=True)[0]
    assert tall.info["letterbox"] == (16, 32)
    torch.testing.assert_close(tall.labels, torch.tensor([[0, (0.25 * 16 + 8) / 32, 0.5, 0.25, 0.5]]))


def test_crop_rules_of_fill_truth_detection() -> None:
    """Boxes moved by a crop: clipped to it; dropped when under one input pixel, entirely outside,
    or centred at (0, 0); flipped boxes mirrored."""
    from torch_mish.darknet.data import _Crop, _crop_boxes

    labels = torch.tensor(
        [
            [0, 0.5, 0.5, 0.2, 0.2],  # inside
            [1, 0.05, 0.5, 0.2, 0.2],  # clipped at the crop's left side
            [2, 0.02, 0.5, 0.02, 0.2],  # left of the crop
            [3, 0.7, 0.5, 0.005, 0.2],  # under one pixel of a 64-pixel input
            [4, 0.0, 0.0, 0.1, 0.1],  # darknet drops x = y = 0
        ]
    )
    crop = _Crop(pleft=10, pright=-10, ptop=0, pbot=0, flip=False)  # shifted right by 10 of 100 pixels
    out = _crop_boxes(labels, crop, 100, 100, 64, 64)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[0, 1:], torch.tensor([0.4, 0.5, 0.2, 0.2]))
    torch.testing.assert_close(out[1, 1:], torch.tensor([0.025, 0.5, 0.05, 0.2]))
    flipped = _crop_boxes(labels[:1], _Crop(10, -10, 0, 0, True), 100, 100, 64, 64)
    torch.testing.assert_close(flipped[0, 1:], torch.tensor([0.6, 0.5, 0.2, 0.2]))


# ---------------------------------------------------------------------------------------------
# Augmentation: boxes against the shapes' pixels


def _saturated(img: torch.Tensor) -> torch.Tensor:
    """Pixels of a drawn shape: saturated and bright (the backgrounds are neither)."""
    mx, mn = img.max(0).values, img.min(0).values
    return (mx > 0.55) & ((mx - mn) / mx.clamp(min=1e-6) > 0.55)


@pytest.fixture(scope="module")
def one_shape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("one"), n_train=24, n_val=0, size=96, seed=5, max_shapes=1)


@pytest.mark.parametrize(
    "aug",
    [
        Augment(jitter=0.3, flip=True),
        Augment(jitter=0.2, resize=1.5, flip=True),
        Augment(jitter=0.1, resize=0.7, letter_box=True),
        Augment(jitter=0.3, flip=True, hue=0.1, saturation=1.2, exposure=1.2),
    ],
)
def test_augmented_boxes_enclose_their_shapes(one_shape: Path, aug: Augment) -> None:
    """One shape per image: the box after jitter/zoom/flip/letterbox is the shape's pixel extent
    in the augmented image (within the bilinear resampling's pixel or two)."""
    ds = DarknetDataset(one_shape.parent / "train.txt", (64, 80), len(SHAPE_CLASSES), aug, seed=1)
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        sat = _saturated(s.image)
        if s.labels.shape[0] == 0:
            assert sat.sum() < 6, "a shape is visible but its box was dropped"
            continue
        (_, cx, cy, w, h) = s.labels[0].tolist()
        ys, xs = torch.nonzero(sat, as_tuple=True)
        if xs.numel() < 20:
            continue
        x0, x1 = (cx - w / 2) * 80, (cx + w / 2) * 80
        y0, y1 = (cy - h / 2) * 64, (cy + h / 2) * 64
        assert abs(xs.min().item() - x0) <= 2.5 and abs(xs.max().item() + 1 - x1) <= 2.5, (i, x0, x1)
        assert abs(ys.min().item() - y0) <= 2.5 and abs(ys.max().item() + 1 - y1) <= 2.5, (i, y0, y1)
        checked += 1
    assert checked >= len(ds) // 2


def test_mosaic_boxes_cover_shapes(one_shape: Path) -> None:
    """Mosaic: every shape pixel of the output lies in one of the boxes."""
    aug = Augment(jitter=0.2, flip=True, mosaic=True)
    ds = DarknetDataset(one_shape.parent / "train.txt", (96, 96), len(SHAPE_CLASSES), aug, seed=2)
    mosaics = 0
    for i in range(len(ds)):
        s = ds[i]
        mosaics += "mosaic" in s.info
        covered = torch.zeros(96, 96, dtype=torch.bool)
        for _, cx, cy, w, h in s.labels.tolist():
            x0, x1 = int((cx - w / 2) * 96) - 2, int((cx + w / 2) * 96) + 3
            y0, y1 = int((cy - h / 2) * 96) - 2, int((cy + h / 2) * 96) + 3
            covered[max(0, y0) : y1, max(0, x0) : x1] = True
        stray = _saturated(s.image) & ~covered
        assert stray.sum() <= 4, f"sample {i}: {int(stray.sum())} shape pixels outside every box"
    assert 0 < mosaics < len(ds)


def test_augmentation_is_seeded(one_shape: Path) -> None:
    aug = Augment(jitter=0.3, flip=True, hue=0.1, saturation=1.5, exposure=1.5, mosaic=True)
    a = DarknetDataset(one_shape.parent / "train.txt", (64, 64), len(SHAPE_CLASSES), aug, seed=3)
    b = DarknetDataset(one_shape.parent / "train.txt", (64, 64), len(SHAPE_CLASSES), aug, seed=3)
    for i in range(4):
        assert torch.equal(a[i].image, b[i].image) and torch.equal(a[i].labels, b[i].labels)
    b.set_epoch(1)
    assert any(not torch.equal(a[i].image, b[i].image) for i in range(4))


def test_max_boxes(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 64, 64)
    (tmp_path / "a.txt").write_text("".join(f"0 {0.1 + 0.08 * k:.2f} 0.5 0.05 0.05\n" for k in range(10)))
    ds = DarknetDataset([tmp_path / "a.png"], (64, 64), 1, Augment(), max_boxes=4, seed=0)
    assert ds[0].labels.shape[0] == 4


def test_collate() -> None:
    from torch_mish.darknet.data import Sample

    samples = [
        Sample(torch.zeros(3, 8, 8), torch.tensor([[1, 0.5, 0.5, 0.1, 0.1], [0, 0.2, 0.2, 0.1, 0.1]]), {"index": 0}),
        Sample(torch.ones(3, 8, 8), torch.zeros(0, 5), {"index": 1}),
        Sample(torch.ones(3, 8, 8), torch.tensor([[2, 0.7, 0.3, 0.2, 0.2]]), {"index": 2}),
    ]
    images, targets, infos = collate(samples)
    assert images.shape == (3, 3, 8, 8)
    torch.testing.assert_close(
        targets,
        torch.tensor([[0, 1, 0.5, 0.5, 0.1, 0.1], [0, 0, 0.2, 0.2, 0.1, 0.1], [2, 2, 0.7, 0.3, 0.2, 0.2]]),
    )
    assert [i["index"] for i in infos] == [0, 1, 2]


def test_augment_from_packaged_cfgs() -> None:
    v4 = Augment.from_model(Darknet(packaged_cfg("yolov4")))
    assert (v4.jitter, v4.flip, v4.mosaic, v4.letter_box, v4.hue, v4.saturation) == (0.3, True, True, False, 0.1, 1.5)
    csp = Augment.from_model(Darknet(packaged_cfg("yolov4-csp")))
    assert (csp.jitter, csp.resize, csp.mosaic, csp.letter_box) == (0.1, 1.5, True, True)
    tiny = Augment.from_model(Darknet(packaged_cfg("yolov4-tiny")))
    assert (tiny.mosaic, tiny.jitter, tiny.resize) == (False, 0.3, 1.5)


def test_unimplemented_augmentation_refused() -> None:
    cfg = "[net]\nwidth=32\nheight=32\nchannels=3\nblur=1\n[convolutional]\nfilters=18\nsize=1\n[yolo]\nclasses=1\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Darknet(cfg.replace("filters=18", "filters=6"))
    with pytest.raises(AugmentError, match=r"\[net\] blur=1: not implemented"):
        Augment.from_model(model)


def test_from_data_checks_classes(one_shape: Path) -> None:
    with pytest.raises(DataError, match="classes=5, the cfg's \\[yolo\\] layers have classes=80"):
        DarknetDataset.from_data(one_shape, "train", Darknet(packaged_cfg("yolov4-tiny")))


# ---------------------------------------------------------------------------------------------
# The shapes generator


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_shapes_reproducible(tmp_path: Path) -> None:
    a = make_shapes(tmp_path / "a", n_train=4, n_val=2, size=64, seed=7)
    b = make_shapes(tmp_path / "b", n_train=4, n_val=2, size=64, seed=7)
    c = make_shapes(tmp_path / "c", n_train=4, n_val=2, size=64, seed=8)
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent) != _digest(c.parent)
    data = read_data_config(a)
    assert data.classes == len(SHAPE_CLASSES) and data.class_names() == list(SHAPE_CLASSES)
    assert len(DarknetDataset(data.split("valid"), (32, 32), data.classes)) == 2


def test_shapes_labels_match_pixels(tmp_path: Path) -> None:
    """Each label is its shape's exact pixel extent: for every shape no later shape overlaps,
    each side of its box holds a pixel of the shape's colour and the ring just outside none."""
    data = make_shapes(tmp_path, n_train=12, n_val=0, size=96, seed=3, max_shapes=5)
    checked = 0
    for line in (tmp_path / "train.txt").read_text().split():
        img = np.asarray(Image.open(tmp_path / line)).astype(int)
        h, w, _ = img.shape
        rows = [list(map(float, r.split())) for r in (tmp_path / line).with_suffix(".txt").read_text().splitlines()]
        boxes = []
        for _, cx, cy, bw, bh in rows:
            x0, x1 = round((cx - bw / 2) * w), round((cx + bw / 2) * w) - 1
            y0, y1 = round((cy - bh / 2) * h), round((cy + bh / 2) * h) - 1
            boxes.append((x0, y0, x1, y1))
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            near = [b for j, b in enumerate(boxes) if j != k]
            if any(b[0] <= x1 + 2 and b[2] >= x0 - 2 and b[1] <= y1 + 2 and b[3] >= y0 - 2 for b in near):
                continue  # touching or overlapping another shape
            patch = img[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
            colors, counts = np.unique(patch, axis=0, return_counts=True)
            color = colors[counts.argmax()]
            inside = (img == color).all(-1)
            for edge in (
                inside[y0, x0 : x1 + 1],
                inside[y1, x0 : x1 + 1],
                inside[y0 : y1 + 1, x0],
                inside[y0 : y1 + 1, x1],
            ):
                assert edge.any(), f"{line}: box {k} has a side the shape does not touch"
            ring = np.zeros_like(inside)
            ring[max(0, y0 - 1) : y1 + 2, max(0, x0 - 1) : x1 + 2] = True
            ring[y0 : y1 + 1, x0 : x1 + 1] = False
            assert not (inside & ring).any(), f"{line}: box {k} is smaller than its shape"
            checked += 1
    assert checked >= 10
    assert data.exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": 6}, "classes=6: between 1 and 5"),
        ({"n_train": 0}, "n_train=0"),
        ({"image_format": "gif"}, "image_format='gif'"),
    ],
)
def test_shapes_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_shapes(tmp_path, **kwargs)
