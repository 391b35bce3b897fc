"""The Detector against darknet's own C code: every [yolo] section of the shipped cfgs (classes set to 3)
on random inputs, through darknet's network_predict, get_network_boxes and the NMS its cfg names
(do_nms_sort, or diounms_sort with the layer's nms_kind and beta_nms), built against the libdarknet that
TORCH_MISH_DARKNET_ROOT names (see test_loss_darknet_c.py). Every (box, class) darknet reports is one
of the Detector's detections, and no other: the same class, score within 1e-5, relative box within 1e-4."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_loss_darknet_c import NET, build_harness, network, yolo_sections

from torch_mish.darknet import Darknet, Detector

NMS = 0.45


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_harness("nms_dets", tmp_path_factory.mktemp("darknet"))


def single_image(text: str) -> str:
    return re.sub(r"(?m)^batch=\d+$", "batch=1", text)


@pytest.mark.parametrize("thresh", [0.25, 0.005])
@pytest.mark.parametrize(("cfg", "index", "section"), yolo_sections())
def test_detections_are_darknets(
    harness: Path, cfg: str, index: int, section: str, thresh: float, tmp_path: Path
) -> None:
    text, channels = network(section)
    text = single_image(text)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    x = (rng.standard_normal((1, channels, NET, NET)) * 1.5 - 0.5).astype(np.float32)
    (tmp_path / "net.cfg").write_text(text)
    x.tofile(tmp_path / "x.f32")
    run = subprocess.run(
        [
            str(harness),
            *(str(tmp_path / f) for f in ("net.cfg", "x.f32")),
            str(thresh),
            str(NMS),
            str(tmp_path / "d.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = np.loadtxt(tmp_path / "d.txt", ndmin=2).reshape(-1, 6)

    with torch.no_grad():
        num, boxes, scores, classes = Detector(Darknet(text).eval(), thresh, NMS, max_det=10**6)(torch.from_numpy(x))
    n = int(num[0, 0])
    b = boxes[0, :n].double() / NET
    ours = torch.stack(
        [classes[0, :n].double(), scores[0, :n].double(), (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
         b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1,
    ).numpy()  # fmt: skip

    assert len(theirs) > 10, "darknet found almost nothing: the case tests little"
    assert len(ours) == len(theirs), f"{cfg} [yolo] #{index}: {len(ours)} detections, darknet {len(theirs)}"
    unmatched = np.ones(len(ours), bool)
    for row in theirs:
        close = (ours[:, 0] == row[0]) & (np.abs(ours[:, 1] - row[1]) < 1e-5)
        close &= np.abs(ours[:, 2:] - row[2:]).max(1) < 1e-4
        hit = np.flatnonzero(close & unmatched)
        assert len(hit), f"{cfg} [yolo] #{index}: darknet's {row.tolist()} is not among the Detector's"
        unmatched[hit[0]] = False
