"""torch_mish.darknet.predict: whole images through a Detector as darknet's detector test takes them
(boxes mapped back to the image, NMS in darknet's image-relative units, letterboxed or not), and the
helpers around it (finding images, class names, COCO ids, output file names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nms_ref import Reference, decisive_case, random_rows, reference_nms
from test_detector import small_model

from torch_mish.darknet import Detector, images, predict

NET_W, NET_H = 64, 48  # small_model's [net] size


def darknet_geometry(image_w: int, image_h: int, letterbox: bool) -> tuple[int, int]:
    """new_w, new_h of darknet's correct_yolo_boxes: the part of the network input the image covers."""
    if not letterbox:
        return NET_W, NET_H
    if np.float32(NET_W) / np.float32(image_w) < np.float32(NET_H) / np.float32(image_h):
        return NET_W, (image_h * NET_W) // image_w
    return (image_w * NET_H) // image_h, NET_H


def darknet_detections(
    rows: torch.Tensor, image_w: int, image_h: int, letterbox: bool, det: Detector
) -> tuple[Reference, np.ndarray]:
    """darknet's detector test on network rows, in float64: correct_yolo_boxes to coordinates relative
    to the image (relative=1), NMS there, then times the image's size; (reference, boxes in image px)."""
    new_w, new_h = darknet_geometry(image_w, image_h, letterbox)
    rel = rows.double().clone()
    rel[..., 0] = (rel[..., 0] - (NET_W - new_w) / 2) / new_w
    rel[..., 1] = (rel[..., 1] - (NET_H - new_h) / 2) / new_h
    rel[..., 2] /= new_w
    rel[..., 3] /= new_h
    ref = reference_nms(rel, det.conf_thresh, det.iou_thresh, det.max_det, det.nms_kind, det.beta_nms)
    k = ref.num_dets[0]
    return ref, ref.boxes[0, :k] * np.array([image_w, image_h, image_w, image_h])


@pytest.mark.parametrize("letterbox", [False, True], ids=["resized", "letterboxed"])
@pytest.mark.parametrize("kind", ["default", "diounms"])
def test_detections_are_darknets_in_image_pixels(letterbox: bool, kind: str, gen: torch.Generator) -> None:
    """Rows given to the NMS directly: the boxes, scores and classes darknet gets for a wide image. For
    the DIoU kind on a letterboxed image the case is drawn so that comparing in the network input's
    units (the Detector's) would give other detections: the NMS must use darknet's units."""
    det = Detector(small_model(kind, "0.8"), conf_thresh=0.3, iou_thresh=0.45, max_det=40)
    image_w, image_h = 150, 30
    image = torch.rand(3, image_h, image_w, generator=gen)
    new_w, new_h = darknet_geometry(image_w, image_h, letterbox)
    for _ in range(400):  # about one draw in twenty is such a case
        rows, _ = decisive_case(
            gen, lambda g: random_rows(g, 1, 120, 3, size=NET_W), 0.3, 0.45, 40, kind, 0.8, (new_w, new_h)
        )
        ref, boxes = darknet_detections(rows, image_w, image_h, letterbox, det)
        in_input_units = reference_nms(rows, 0.3, 0.45, 40, kind, 0.8, NET_W, NET_H)
        if kind == "default" or not letterbox or in_input_units.rows.tolist() != ref.rows.tolist():
            break
    else:
        pytest.fail("no case where the units decide in 400 draws")
    seen = []
    run = predict.ImageDetector(det, letterbox=letterbox, run_model=lambda x: seen.append(x) or rows)
    found = run(image)
    expected_input = images.letterbox_image if letterbox else images.resize_image
    assert torch.equal(seen[0], expected_input(image, NET_W, NET_H)[None])
    k = ref.num_dets[0]
    assert len(found) == k > 0 and (found.width, found.height) == (image_w, image_h)
    assert found.classes.tolist() == ref.classes[0, :k].tolist()
    assert found.scores.tolist() == ref.scores[0, :k].tolist()
    torch.testing.assert_close(found.boxes.double(), torch.from_numpy(boxes), rtol=1e-5, atol=2e-4)


def test_the_model_runs_on_the_resized_image(gen: torch.Generator) -> None:
    """Without run_model, the Detector's own model on darknet's resize of the image; its detections
    equal the Detector's on that input, scaled to the image."""
    model = small_model("default")
    with torch.no_grad():  # objectness and class scores high enough for detections
        model.layers[1].conv.bias[4::8] = 4.0
    det = Detector(model, conf_thresh=0.2)
    image = torch.rand(3, 37, 91, generator=gen)
    found = predict.ImageDetector(det)(image)
    x = images.resize_image(image, NET_W, NET_H)[None]
    num, boxes, scores, classes = det(x)
    k = int(num[0, 0])
    assert len(found) == k > 0
    assert torch.equal(found.scores, scores[0, :k]) and torch.equal(found.classes, classes[0, :k].long())
    scale = torch.tensor([91 / NET_W, 37 / NET_H] * 2, dtype=torch.float64)
    torch.testing.assert_close(found.boxes.double(), boxes[0, :k].double() * scale, rtol=1e-6, atol=1e-4)
    rows = found.coco_rows(7)
    assert [r["image_id"] for r in rows] == [7] * k and [r["category_id"] for r in rows] == classes[0, :k].tolist()


def test_image_detector_refuses_what_it_cannot_take() -> None:
    with pytest.raises(TypeError, match="expected a torch_mish.darknet.Detector"):
        predict.ImageDetector(small_model())  # type: ignore[arg-type]


def test_find_images(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.JPG", "c.jpeg", "notes.txt", "d.gif"):
        (folder / name).write_bytes(b"")
    (folder / "sub.png").mkdir()  # a directory with an image's name is not an image
    single = tmp_path / "x.png"
    single.write_bytes(b"")
    found = predict.find_images([single, folder, folder / "b.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "x.png",
        "photos/a.JPG",
        "photos/b.png",
        "photos/c.jpeg",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: no .jpg, .jpeg, .png images"):
        predict.find_images([single, empty])
    with pytest.raises(ValueError, match="nothere.jpg: no such file or directory"):
        predict.find_images([tmp_path / "nothere.jpg"])


def test_class_names_and_category_ids(tmp_path: Path) -> None:
    coco = predict.class_names(80)
    assert coco == images.coco_names() and predict.category_ids(coco) == images.COCO_CATEGORY_IDS
    assert predict.class_names(3) == ("0", "1", "2") and predict.category_ids(("0", "1", "2")) is None
    names = tmp_path / "my.names"
    names.write_text("cat\n\ndog\n")
    assert predict.class_names(2, names) == ("cat", "dog")
    with pytest.raises(ValueError, match="my.names has 2 names for a model of 3 classes"):
        predict.class_names(3, names)
    names.write_text("\n".join(images.coco_names()) + "\n")
    assert predict.category_ids(predict.class_names(80, names)) == images.COCO_CATEGORY_IDS


def test_image_ids_and_output_names() -> None:
    coco = ["val/000000397133.jpg", "COCO_val2014_000000000042.jpg"]
    assert predict.image_ids(coco) == [397133, 42]
    assert predict.image_ids(["a.jpg", "b7.jpg"]) == [1, 2]  # one without a number
    assert predict.image_ids(["x/img1.jpg", "y/img01.png"]) == [1, 2]  # the same number twice
    assert predict.output_names(["a/x.jpg", "b/x.jpg", "c/X.jpg", "x.png"]) == ["x.jpg", "x-2.jpg", "X-3.jpg", "x.png"]
