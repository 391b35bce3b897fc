"""COCO evaluation of a detections callable on a darknet-format dataset. The detection sources
here are TEST FIXTURES (they read the labels and answer in the Detector's output convention);
they stand in for torch_mish.darknet.Detector, they are not a product: perfect boxes give mAP 1,
boxes shifted to a known IoU give the mAP counted by hand, and random boxes give what pycocotools
computes on results this test maps to the original images itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torch_mish.darknet import Darknet, packaged_cfg
from torch_mish.darknet.data import DarknetDataset
from torch_mish.darknet.evaluate import coco_map, darknet_eval_settings, evaluate, ground_truth

pytest.importorskip("pycocotools", reason="pycocotools (optional) is not installed")


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """Six images of different sizes and aspect ratios, up to three boxes each, two classes."""
    rng = np.random.default_rng(0)
    lines = []
    for k, (w, h) in enumerate([(80, 60), (50, 90), (64, 64), (120, 40), (33, 77), (90, 70)]):
        path = tmp_path / f"{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        rows = []
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = rng.uniform(0.1, 0.5, 2)
            cx, cy = rng.uniform(bw / 2, 1 - bw / 2), rng.uniform(bh / 2, 1 - bh / 2)
            rows.append(f"{int(rng.integers(0, 2))} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        (tmp_path / f"{k}.txt").write_text("".join(rows))
        lines.append(f"{path}\n")
    (tmp_path / "valid.txt").write_text("".join(lines))
    return tmp_path


def _input_boxes(dataset: DarknetDataset, index: int, letterbox: tuple[int, int] | None) -> torch.Tensor:
    """The labels of one image as x1, y1, x2, y2 in input pixels (the inverse of darknet's
    correct_yolo_boxes), written independently of torch_mish.darknet.evaluate."""
    h_in, w_in = dataset.size
    labels = dataset.labels[index].double()
    cx, cy, w, h = labels[:, 1], labels[:, 2], labels[:, 3], labels[:, 4]
    if letterbox is None:
        sx, sy, ox, oy = w_in, h_in, 0.0, 0.0
    else:
        sx, sy = letterbox
        ox, oy = (w_in - sx) / 2, (h_in - sy) / 2
    return torch.stack(
        [(cx - w / 2) * sx + ox, (cy - h / 2) * sy + oy, (cx + w / 2) * sx + ox, (cy + h / 2) * sy + oy], 1
    )


class LabelDetector:
    """TEST FIXTURE: answers each image with its own labels (optionally shifted right by a fraction
    of the box width, or replaced by random boxes), in the Detector's output convention."""

    def __init__(self, dataset: DarknetDataset, shift: float = 0.0, random: bool = False) -> None:
        self.dataset, self.shift, self.random, self.calls = dataset, shift, random, 0
        self.rng = np.random.default_rng(1)
        self.last: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n, k = x.shape[0], max(len(labels) for labels in self.dataset.labels)
        start = self.calls
        self.calls += n
        num = torch.zeros(n, 1, dtype=torch.int32)
        boxes, scores, classes = torch.zeros(n, k, 4), torch.zeros(n, k), torch.zeros(n, k, dtype=torch.int32)
        for i in range(n):
            index = start + i
            sample = self.dataset[index]
            b = _input_boxes(self.dataset, index, sample.info["letterbox"])
            c = self.dataset.labels[index][:, 0].int()
            if self.shift:
                width = b[:, 2] - b[:, 0]
                b = b + torch.stack([width, torch.zeros_like(width)] * 2, 1) * self.shift
            if self.random:
                h_in, w_in = self.dataset.size
                xy = torch.from_numpy(self.rng.uniform(0, 0.7, (b.shape[0], 2))) * torch.tensor([w_in, h_in])
                wh = torch.from_numpy(self.rng.uniform(0.1, 0.5, (b.shape[0], 2))) * torch.tensor([w_in, h_in])
                b = torch.cat([xy, xy + wh], 1)
                b = torch.where(
                    torch.rand(b.shape[0], 1) < 0.5, _input_boxes(self.dataset, index, sample.info["letterbox"]), b
                )
            m = b.shape[0]
            s = torch.linspace(0.9, 0.5, m)
            num[i] = m
            boxes[i, :m], scores[i, :m], classes[i, :m] = b.float(), s, c
            self.last.append((index, b, s, c))
        return num, boxes, scores, classes


@pytest.mark.parametrize("letterbox", [False, True])
def test_perfect_detections(dataset_dir: Path, letterbox: bool) -> None:
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2, letterbox=letterbox)
    m = evaluate(LabelDetector(ds), ds, batch_size=4)
    assert m.map == pytest.approx(1.0) and m.map50 == pytest.approx(1.0) and m.map75 == pytest.approx(1.0)
    assert m.images == 6 and m.detections == m.labels


@pytest.mark.parametrize("letterbox", [False, True])
def test_shifted_detections(dataset_dir: Path, letterbox: bool) -> None:
    """Each box shifted right by 0.16 of its width has IoU 0.84 / 1.16 = 0.724 with its label:
    a match at the thresholds 0.50 ... 0.70 and none above, so AP = 5/10 and AP50 = 1."""
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2, letterbox=letterbox)
    m = evaluate(LabelDetector(ds, shift=0.16), ds, batch_size=3)
    assert m.map == pytest.approx(0.5, abs=1e-6)
    assert m.map50 == pytest.approx(1.0) and m.map75 == pytest.approx(0.0)


def test_random_detections_equal_pycocotools(dataset_dir: Path) -> None:
    """Half the boxes right, half random: the figure equals pycocotools on results mapped to the
    original images here (letterbox offsets undone, clipped)."""
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2, letterbox=True)
    fixture = LabelDetector(ds, random=True)
    torch.manual_seed(0)
    m = evaluate(fixture, ds, batch_size=4)
    results = []
    for index, b, s, c in fixture.last:
        w, h = Image.open(ds.items[index][0]).size
        new_w, new_h = ds[index].info["letterbox"]
        x1 = ((b[:, 0] - (64 - new_w) / 2) / new_w * w).clamp(0, w)
        x2 = ((b[:, 2] - (64 - new_w) / 2) / new_w * w).clamp(0, w)
        y1 = ((b[:, 1] - (48 - new_h) / 2) / new_h * h).clamp(0, h)
        y2 = ((b[:, 3] - (48 - new_h) / 2) / new_h * h).clamp(0, h)
        for k in range(b.shape[0]):
            bbox = [float(x1[k]), float(y1[k]), float(x2[k] - x1[k]), float(y2[k] - y1[k])]
            results.append({"image_id": index, "category_id": int(c[k]) + 1, "bbox": bbox, "score": float(s[k])})
    direct = coco_map(ground_truth(ds), results)
    assert 0.05 < m.map < 0.95
    assert m.stats == pytest.approx(direct.stats, abs=1e-9)


def test_no_detections(dataset_dir: Path) -> None:
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2)

    def nothing(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        return torch.zeros(n, 1), torch.zeros(n, 3, 4), torch.zeros(n, 3), torch.zeros(n, 3)

    assert evaluate(nothing, ds).map == 0


def test_bad_detect_outputs(dataset_dir: Path) -> None:
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2)

    def wrong(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        return torch.zeros(n, 1), torch.zeros(n, 3, 5), torch.zeros(n, 3), torch.zeros(n, 3)

    with pytest.raises(ValueError, match=r"det_boxes \(\d, 3, 5\).*expected \(N, 1\) and \(N, K, 4\)"):
        evaluate(wrong, ds)


def test_augmented_dataset_refused(dataset_dir: Path) -> None:
    from torch_mish.darknet.data import Augment

    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2, augment=Augment(flip=True))
    with pytest.raises(ValueError, match="augment=None"):
        evaluate(lambda x: x, ds)


def test_missing_pycocotools_message(dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    ds = DarknetDataset(dataset_dir / "valid.txt", (48, 64), 2)
    with pytest.raises(ImportError, match="COCO mAP needs pycocotools: pip install pycocotools"):
        evaluate(LabelDetector(ds), ds)


def test_darknet_eval_settings() -> None:
    assert darknet_eval_settings(Darknet(packaged_cfg("yolov4-csp"))) == {
        "conf_thresh": 0.005,
        "iou_thresh": 0.45,
        "nms_kind": "diounms",
        "beta_nms": 0.6,
        "letterbox": True,
    }
    v4 = darknet_eval_settings(Darknet(packaged_cfg("yolov4")))
    assert (v4["nms_kind"], v4["letterbox"]) == ("greedynms", False)


def test_evaluate_data_follows_the_cfg(tmp_path: Path) -> None:
    """evaluate_data: the obj.data's valid list at the cfg's size, letterboxed as [net] says, with
    the names file's names; the label fixture's detections give 1.0."""
    from torch_mish.darknet.evaluate import evaluate_data
    from torch_mish.darknet.shapes import make_shapes
    from torch_mish.darknet.train import edit_cfg

    data = make_shapes(tmp_path, n_train=2, n_val=5, size=64, seed=4)
    model = Darknet(edit_cfg(packaged_cfg("yolov4-csp"), classes=5, net={"width": 96, "height": 64}))
    reference = DarknetDataset(tmp_path / "valid.txt", (64, 96), 5, letterbox=True)
    fixture = LabelDetector(reference)
    m = evaluate_data(model, data, fixture, batch_size=2)
    assert fixture.calls == 5 and m.map == pytest.approx(1.0)
    assert set(m.per_class) <= {"circle", "square", "triangle", "cross", "ring"}
