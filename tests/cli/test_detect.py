"""torch-mish detect on images the tests draw, with a model whose detections they control (a cell is a
detection where the image is red: cli.helpers.red_squares): detections.json against darknet's rules
(resize or letterbox, boxes mapped back, clipped, x y w h), the drawn images read back, labels and
category ids, image ids, and bad input that exits 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.helpers import draw_squares, files, run, write_red_squares
from torch_mish.darknet import Darknet, Detector, images

PIL = pytest.importorskip("PIL", reason="Pillow is not installed (pip install pillow)")
from PIL import Image  # noqa: E402

NET = 64
# file name: (width, height), red squares (x, y, side, red). The corner square's box reaches outside the
# image (clipping); the images are not square and the anchor is 24x12 (width and height kept apart).
PICTURES: dict[str, tuple[tuple[int, int], list[tuple[int, int, int, int]]]] = {
    "corner.png": ((120, 80), [(0, 0, 12, 255), (60, 30, 14, 200)]),
    "wide.png": ((200, 90), [(150, 40, 20, 230), (10, 70, 12, 180)]),
}


def draw_pictures(folder: Path, pictures: dict = PICTURES) -> list[Path]:
    folder.mkdir(exist_ok=True)
    for name, (size, squares) in pictures.items():
        draw_squares(folder / name, size, squares)
    return [folder / name for name in sorted(pictures)]


def darknet_rows(
    model: Darknet, path: Path, image_id: int, letterbox: bool, category: Any = int
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The COCO rows darknet's rules give: the Detector on darknet's resize (or letterbox) of the image,
    boxes mapped back as correct_yolo_boxes does (written here in float64), clipped to the image, as
    x, y, w, h; and the boxes before clipping."""
    image = images.read_image(path)
    height, width = image.shape[1:]
    x = (images.letterbox_image if letterbox else images.resize_image)(image, NET, NET)[None]
    num, boxes, scores, classes = Detector(model)(x)
    new_w, new_h = NET, NET
    if letterbox and NET / width < NET / height:
        new_h = height * NET // width
    elif letterbox:
        new_w = width * NET // height
    k = int(num[0, 0])
    b = boxes[0, :k].double().numpy()
    mapped = np.stack(
        [
            (b[:, 0] - (NET - new_w) / 2) * width / new_w,
            (b[:, 1] - (NET - new_h) / 2) * height / new_h,
            (b[:, 2] - (NET - new_w) / 2) * width / new_w,
            (b[:, 3] - (NET - new_h) / 2) * height / new_h,
        ],
        1,
    )
    clipped = np.clip(mapped, 0, [width, height, width, height])
    rows = [
        {
            "image_id": image_id,
            "category_id": category(c),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": s,
        }
        for (x1, y1, x2, y2), s, c in zip(
            clipped.tolist(), scores[0, :k].tolist(), classes[0, :k].tolist(), strict=True
        )
    ]
    return rows, mapped


def assert_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected, strict=True):
        assert set(g) == {"image_id", "category_id", "bbox", "score"}
        assert (g["image_id"], g["category_id"]) == (e["image_id"], e["category_id"])
        assert g["score"] == pytest.approx(e["score"], abs=1e-6)
        assert g["bbox"] == pytest.approx(e["bbox"], abs=1e-3), (g, e)


@pytest.mark.parametrize("letterbox", [False, True], ids=["resized", "letterboxed"])
def test_detections_json_follows_darknet(letterbox: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cfg's [net] letter_box decides (darknet's detector test), --letterbox/--no-letterbox override it."""
    model, cfg, weights = write_red_squares(tmp_path, letter_box=int(letterbox))
    pictures = draw_pictures(tmp_path / "in")
    out = tmp_path / "out"
    code, result, err = run(
        ["detect", str(cfg), "--weights", str(weights), str(tmp_path / "in"), "-o", str(out), "--json"], capsys
    )
    assert code == 0, err
    assert result["letterbox"] is letterbox and result["names"] == "numbers" and result["category_ids"] == "class index"
    assert files(out) == {"corner.png", "wide.png", "detections.json"}
    got = json.loads((out / "detections.json").read_text())
    expected, unclipped = [], []
    for image_id, path in enumerate(pictures, 1):
        rows, mapped = darknet_rows(model, path, image_id, letterbox)
        expected += rows
        unclipped.append(mapped)
    assert_rows(got, expected)
    assert (np.concatenate(unclipped)[:, :2] < 0).any()  # some box was clipped: the test sees clipping
    assert [i["detections"] for i in result["images"]] == [sum(r["image_id"] == n for r in got) for n in (1, 2)]
    # the other way round from the command line
    flag = "--no-letterbox" if letterbox else "--letterbox"
    argv = ["detect", str(cfg), "--weights", str(weights), str(pictures[1]), "-o", str(out), flag, "--json"]
    code, result, err = run(argv, capsys)
    assert code == 0, err
    assert result["letterbox"] is not letterbox
    assert_rows(
        json.loads((out / "detections.json").read_text()), darknet_rows(model, pictures[1], 1, not letterbox)[0]
    )


def test_drawn_images_show_the_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Read back: the outline of each detection's box (where darknet's rules put it) differs from the
    original image; an image without detections comes back unchanged."""
    model, cfg, weights = write_red_squares(tmp_path)
    pictures = draw_pictures(tmp_path / "in", {**PICTURES, "black.png": ((50, 40), [])})
    out = tmp_path / "out"
    code, result, err = run(
        ["detect", str(cfg), "--weights", str(weights), str(tmp_path / "in"), "-o", str(out), "--json"], capsys
    )
    assert code == 0, err
    assert [i["detections"] for i in result["images"]][0] == 0  # black.png, first by name
    for image_id, path in enumerate(pictures, 1):
        original = np.asarray(Image.open(path).convert("RGB")).astype(int)
        drawn = np.asarray(Image.open(out / path.name).convert("RGB")).astype(int)
        assert drawn.shape == original.shape
        rows, _ = darknet_rows(model, path, image_id, False) if image_id > 1 else ([], None)
        if not rows:
            assert np.array_equal(drawn, original), path.name
            continue
        height, width = original.shape[:2]
        changed = (drawn != original).any(-1)
        for row in rows:
            x, y, w, h = row["bbox"]
            x1, y1 = round(min(x, width - 1)), round(min(y, height - 1))
            x2, y2 = round(min(x + w, width - 1)), round(min(y + h, height - 1))
            bottom, left = changed[y2, x1 : x2 + 1], changed[y1 : y2 + 1, x1]
            assert bottom.mean() > 0.8 and left.mean() > 0.8, (path.name, row)
        assert changed.mean() < 0.9  # boxes and labels, not the whole image


def test_names_and_category_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """80 classes: darknet's COCO names and COCO's category ids (class 16, dog, is category 18); a names
    file of other names: the class index. Image ids from COCO's file names."""
    model, cfg, weights = write_red_squares(tmp_path, classes=80, cls=16)
    pictures = draw_pictures(tmp_path / "in", {"000000000139.png": PICTURES["corner.png"]})
    out = tmp_path / "out"
    argv = ["detect", str(cfg), "--weights", str(weights), str(pictures[0]), "-o", str(out), "--json"]
    code, result, err = run(argv, capsys)
    assert code == 0, err
    assert result["names"] == "coco" and result["category_ids"] == "coco"
    got = json.loads((out / "detections.json").read_text())
    assert_rows(got, darknet_rows(model, pictures[0], 139, False, category=lambda c: images.COCO_CATEGORY_IDS[c])[0])
    assert {r["category_id"] for r in got} == {18}
    names = tmp_path / "animals.names"
    names.write_text("".join(f"animal{i}\n" for i in range(80)))
    code, result, err = run([*argv, "--names", str(names)], capsys)
    assert code == 0, err
    assert result["names"] == "file" and {
        r["category_id"] for r in json.loads((out / "detections.json").read_text())
    } == {16}


def test_an_existing_directory_keeps_its_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg, weights = write_red_squares(tmp_path)
    pictures = draw_pictures(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "detections.json").write_text("old")
    code, _, err = run(["detect", str(cfg), "--weights", str(weights), str(pictures[0]), "-o", str(out), "-q"], capsys)
    assert code == 0, err
    assert files(out) == {"notes.txt", "detections.json", "corner.png"} and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "detections.json").read_text())[0]["image_id"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def bad_detect_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments after the cfg and its weights, what the one line says)."""
    draw_pictures(tmp / "in")
    (tmp / "in" / "zz_broken.jpg").write_bytes(b"not an image")  # last by name: read after the others
    (tmp / "empty").mkdir()
    (tmp / "two.names").write_text("a\nb\n")
    (tmp / "file").write_text("")
    good = str(tmp / "in" / "corner.png")
    return [
        ([str(tmp / "in"), "-o", str(tmp / "out")], "cannot read image"),
        ([str(tmp / "empty"), "-o", str(tmp / "out")], "no .jpg, .jpeg, .png images"),
        ([good, str(tmp / "nothere.jpg"), "-o", str(tmp / "out")], "nothere.jpg: no such file or directory"),
        ([good, "--conf", "2", "-o", str(tmp / "out")], "--conf 2: a threshold in [0, 1]"),
        ([good, "--iou", "-0.1", "-o", str(tmp / "out")], "--iou -0.1: a threshold in [0, 1]"),
        ([good, "--names", str(tmp / "two.names"), "-o", str(tmp / "out")], "has 2 names for a model of 1 classes"),
        ([good, "-o", str(tmp / "file")], "not a directory"),
        ([good, "-o", str(tmp / "in")], "would replace the image it is drawn from"),
        ([good, "-o", str(tmp / "no" / "out")], "does not exist; create it first"),
        ([good, "--beta-nms", "0.5", "-o", str(tmp / "out")], "--beta-nms is diounms's exponent"),
        ([good, "--image-size", "60", "-o", str(tmp / "out")], "does not fit"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cfg, weights = write_red_squares(tmp_path)
    argv, message = bad_detect_inputs(tmp_path)[case]
    out = tmp_path / "out"
    out.mkdir()  # an existing output directory is left as it was
    (out / "keep.txt").write_text("kept")
    before = files(tmp_path)
    code, _, err = run(["detect", str(cfg), "--weights", str(weights), *argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("torch-mish detect: error: ")
    assert files(tmp_path) == before


def test_a_failure_before_the_end_creates_no_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Images drawn before an unreadable one are not left behind: the directory appears only on success."""
    _, cfg, weights = write_red_squares(tmp_path)
    draw_pictures(tmp_path / "in")
    (tmp_path / "in" / "zz_broken.png").write_bytes(b"\x89PNG broken")
    before = files(tmp_path)
    code, _, err = run(
        ["detect", str(cfg), "--weights", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "out")], capsys
    )
    assert code == 2 and "zz_broken.png" in err
    assert files(tmp_path) == before


def detect_with(backend: str, tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    _, cfg, weights = write_red_squares(tmp, classes=3, cls=2)
    pictures = draw_pictures(tmp / "in")
    out = tmp / f"out_{backend}"
    argv = ["detect", str(cfg), "--weights", str(weights), *map(str, pictures), "--backend", backend, "-o", str(out)]
    code, _, err = run([*argv, "-q"], capsys)
    return code, err, out


def test_compiled_network_detects_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, eager = detect_with("eager", tmp_path, capsys)
    assert code == 0, err
    code, err, compiled = detect_with("compile", tmp_path, capsys)
    assert code == 0, err
    assert_rows(
        json.loads((compiled / "detections.json").read_text()), json.loads((eager / "detections.json").read_text())
    )


def test_tensorrt_backend_runs_or_says_why_not(trt: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where a TensorRT runtime runs engines, its detections are eager PyTorch's; elsewhere one line, exit 2,
    nothing written."""
    from torch_mish.tensorrt import engine_runtime_unavailable_reason

    reason = engine_runtime_unavailable_reason()
    before = files(tmp_path)
    code, err, out = detect_with("tensorrt", tmp_path, capsys)
    if reason is not None:
        assert code == 2 and reason in err and "--backend eager" in err, err
        assert files(tmp_path) - before == {"in", "red3.cfg", "red3.weights", *(f"in/{n}" for n in PICTURES)}
        return
    assert code == 0, err
    code, err, eager = detect_with("eager", tmp_path, capsys)
    assert code == 0, err
    got = json.loads((out / "detections.json").read_text())
    assert_rows(got, json.loads((eager / "detections.json").read_text()))


def test_detect_without_yolo_heads_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pictures = draw_pictures(tmp_path / "in")
    code, _, err = run(["detect", "cli.helpers:small_model", str(pictures[0]), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "no [yolo] heads" in err and "cli.helpers:small_model" in err
