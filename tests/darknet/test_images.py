"""torch_mish.darknet.images: reading, darknet's resize and letterbox, mapping boxes back, drawing,
COCO results rows, the packaged COCO names. Images are written by the tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_mish.darknet import images

PIL = pytest.importorskip("PIL", reason="Pillow is not installed (pip install pillow)")
from PIL import Image  # noqa: E402


def random_image(gen: torch.Generator, height: int, width: int) -> np.ndarray:
    return torch.randint(0, 256, (height, width, 3), generator=gen, dtype=torch.uint8).numpy()


def darknet_resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's resize_image as its loops write it, in float32: (C, H, W) -> (C, h, w)."""
    f = np.float32
    c_, ih, iw = image.shape
    if (iw, ih) == (w, h):
        return image.copy()
    part = np.zeros((c_, ih, w), dtype=f)
    resized = np.zeros((c_, h, w), dtype=f)
    w_scale = f(iw - 1) / f(w - 1) if w > 1 else f(0)
    h_scale = f(ih - 1) / f(h - 1) if h > 1 else f(0)
    for k in range(c_):
        for r in range(ih):
            for c in range(w):
                if c == w - 1 or iw == 1:
                    val = image[k, r, iw - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = f(sx - f(ix))
                    val = f(f(f(1) - dx) * image[k, r, ix]) + f(dx * image[k, r, ix + 1])
                part[k, r, c] = val
    for k in range(c_):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = f(sy - f(iy))
            for c in range(w):
                resized[k, r, c] = f(f(1) - dy) * part[k, iy, c]
            if r == h - 1 or ih == 1:
                continue
            for c in range(w):
                resized[k, r, c] = f(resized[k, r, c] + f(dy * part[k, iy + 1, c]))
    return resized


def test_read_image_as_darknet_loads_it(tmp_path: Path, gen: torch.Generator) -> None:
    pixels = random_image(gen, 7, 11)
    Image.fromarray(pixels, "RGB").save(tmp_path / "a.png")
    got = images.read_image(tmp_path / "a.png")
    assert got.dtype == torch.float32 and got.shape == (3, 7, 11)
    assert torch.equal(got, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    Image.fromarray(pixels[..., 0], "L").save(tmp_path / "gray.png")
    gray = images.read_image(tmp_path / "gray.png")
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    rgba = np.concatenate([pixels, np.zeros((7, 11, 1), np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(images.read_image(tmp_path / "rgba.png"), got)
    Image.fromarray(pixels, "RGB").save(tmp_path / "a.jpg", quality=95)
    with Image.open(tmp_path / "a.jpg") as jpg:
        decoded = torch.from_numpy(np.array(jpg.convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.equal(images.read_image(tmp_path / "a.jpg"), decoded)


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image .*notes.jpg"):
        images.read_image(tmp_path / "notes.jpg")
    with pytest.raises(ValueError, match="cannot read image .*missing.png"):
        images.read_image(tmp_path / "missing.png")


def test_missing_pillow_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install pillow"):
        images.read_image(tmp_path / "a.png")


# (3, 5) -> (42, 7): the last row's source position rounds to 1.9999999 (row 1, weight ~1 on row 2),
# and darknet skips the second term on its last row: that row comes out nearly black. Reproduced.
RESIZES = [((7, 11), (16, 20)), ((30, 25), (9, 13)), ((5, 6), (5, 1)), ((1, 4), (3, 8)), ((3, 5), (42, 7))]


@pytest.mark.parametrize(("src", "dst"), RESIZES)
def test_resize_is_darknets(src: tuple[int, int], dst: tuple[int, int], gen: torch.Generator) -> None:
    image = torch.rand(3, *src, generator=gen)
    got = images.resize_image(image, dst[1], dst[0])
    want = darknet_resize(image.numpy(), dst[1], dst[0])
    assert got.shape == (3, *dst)
    np.testing.assert_array_equal(got.numpy(), want)


def test_letterbox_is_darknets(gen: torch.Generator) -> None:
    for (h, w), (net_w, net_h) in [((30, 50), (64, 64)), ((50, 21), (64, 48)), ((48, 64), (64, 48))]:
        image = torch.rand(3, h, w, generator=gen)
        new_w, new_h, left, top = images.letterbox_geometry(w, h, net_w, net_h)
        assert (new_w == net_w or new_h == net_h) and new_w <= net_w and new_h <= net_h
        assert abs(new_w / new_h - w / h) < 0.1
        boxed = images.letterbox_image(image, net_w, net_h)
        assert boxed.shape == (3, net_h, net_w)
        inside = boxed[:, top : top + new_h, left : left + new_w]
        np.testing.assert_array_equal(inside.numpy(), darknet_resize(image.numpy(), new_w, new_h))
        outside = boxed.clone()
        outside[:, top : top + new_h, left : left + new_w] = 0.5
        assert torch.all(outside == 0.5)


@pytest.mark.parametrize("letterbox", [False, True])
def test_boxes_back_to_the_original_image(letterbox: bool, gen: torch.Generator) -> None:
    image_w, image_h, net_w, net_h = 500, 333, 416, 416
    original = torch.rand(20, 4, generator=gen, dtype=torch.float64) * torch.tensor([image_w, image_h] * 2)
    if letterbox:
        new_w, new_h, _, _ = images.letterbox_geometry(image_w, image_h, net_w, net_h)
        assert (new_w, new_h) == (416, 277)
    else:
        new_w, new_h = net_w, net_h
    # where the network sees them: scaled to the resized image, shifted by half the margin
    scale = torch.tensor([new_w / image_w, new_h / image_h] * 2)
    shift = torch.tensor([net_w - new_w, net_h - new_h] * 2) / 2
    network = (original * scale + shift).float()
    back = images.boxes_to_image(network, image_w, image_h, net_w, net_h, letterbox)
    torch.testing.assert_close(back, original.float(), rtol=0, atol=1e-3)


def test_coco_results_rows() -> None:
    boxes = torch.tensor([[-5.0, 10.0, 50.0, 40.0], [90.0, 70.0, 120.0, 90.0], [1.0, 2.0, 3.0, 4.0]])
    scores = torch.tensor([0.9, 0.5, 0.25])
    classes = torch.tensor([0, 79, 2], dtype=torch.int32)
    rows = images.coco_results(7, boxes, scores, classes, 100, 80, images.COCO_CATEGORY_IDS)
    assert [r["category_id"] for r in rows] == [1, 90, 3]
    assert rows[0]["bbox"] == [0.0, 10.0, 50.0, 30.0]  # clipped on the left
    assert rows[1]["bbox"] == [90.0, 70.0, 10.0, 10.0]  # clipped right and bottom
    assert rows[2]["bbox"] == [1.0, 2.0, 2.0, 2.0]
    assert [r["image_id"] for r in rows] == [7] * 3
    assert [r["score"] for r in rows] == pytest.approx([0.9, 0.5, 0.25])
    assert [r["category_id"] for r in images.coco_results(1, boxes, scores, classes, 100, 80)] == [0, 79, 2]
    assert json.loads(json.dumps(rows)) == rows


def test_coco_names_and_ids() -> None:
    names = images.coco_names()
    assert len(names) == 80 and names[0] == "person" and names[-1] == "toothbrush" and len(set(names)) == 80
    ids = images.COCO_CATEGORY_IDS
    assert len(ids) == 80 and list(ids) == sorted(set(ids)) and ids[0] == 1 and ids[-1] == 90
    assert {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}.isdisjoint(ids)  # COCO's unused category ids


def test_draw_detections_reads_back(tmp_path: Path) -> None:
    image = torch.full((3, 60, 80), 0.5)
    boxes = torch.tensor([[10.0, 25.0, 50.0, 55.0], [60.0, -10.0, 200.0, 30.0]])  # the second leaves the image
    drawn = images.draw_detections(image, boxes, torch.tensor([0.87, 0.4]), torch.tensor([2, 0]), images.coco_names())
    drawn.save(tmp_path / "out.png")
    back = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(int)
    car, person = images.class_color(2, 80), images.class_color(0, 80)
    assert tuple(back[40, 10]) == car and tuple(back[40, 50]) == car  # left and right edges, mid-height
    assert tuple(back[55, 30]) == car  # bottom edge
    assert tuple(back[40, 30]) == (128, 128, 128)  # inside: untouched
    assert tuple(back[15, 79]) == person  # the clipped box's right edge is the image's last column
    label = back[25 - 14 : 25, 10:40]  # the label strip above the first box: its color and dark text
    assert (label == np.array(car)).all(-1).mean() > 0.5 and (label.sum(-1) < 100).any()
    assert tuple(back[5, 5]) == (128, 128, 128)
    with pytest.raises(ValueError, match="class 5 has no name"):
        images.draw_detections(image, boxes[:1], torch.tensor([0.5]), torch.tensor([5]), ["a", "b"])
