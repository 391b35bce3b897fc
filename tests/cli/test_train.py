"""torch-mish train on a tiny synthetic set on the CPU (yolov4-tiny at 64x64, 2 iterations of 2 images):
the files it writes, its .weights loading back into Darknet with the checkpoint's parameters, the --json
fields, the library's progress bar (silenced by --quiet), --resume, and bad input that exits 2 in one
line and writes nothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from cli.conftest import TINY, TRAIN_ARGS
from cli.helpers import files, run
from torch_mish import cli
from torch_mish.darknet import Darknet

pytest.importorskip("PIL", reason="Pillow is not installed (pip install pillow)")


def test_train_writes_weights_that_load_back(trained: dict[str, Any]) -> None:
    assert trained["iterations"] == trained["steps"] == 2 and trained["seen"] == 4  # 2 iterations of --batch 2
    assert trained["source"] == "yolov4-tiny.cfg" and trained["device"] == "cpu" and trained["fused"] is True
    assert math.isfinite(trained["loss"]) and trained["loss"] > 0 and trained["seconds"] > 0
    assert set(trained["loss_parts"]) == {"box", "objectness", "classes"}
    out = Path(trained["checkpoint"]).parent
    assert {p.name for p in out.iterdir()} == {
        "yolov4-tiny.cfg",
        "yolov4-tiny_last.pt",
        "yolov4-tiny_last.weights",
        "yolov4-tiny_final.weights",
    }
    assert Path(trained["cfg"]) == out / "yolov4-tiny.cfg" and Path(trained["weights"]).name.endswith("_final.weights")
    model = Darknet(trained["cfg"])
    assert (model.height, model.width) == (64, 64) and model.yolo_layers[-1].classes == 5  # the data's classes
    model.load_darknet_weights(trained["weights"])
    assert model.weights_header[3] == 4  # seen: darknet goes on at iteration 4 / batch 2
    state = torch.load(trained["checkpoint"], weights_only=False)
    assert state["iteration"] == 2
    for name, value in model.state_dict().items():
        if "num_batches_tracked" not in name:  # not in .weights
            torch.testing.assert_close(value, state["model"][name], msg=lambda m, name=name: f"{name}: {m}")
    untrained = Darknet(trained["cfg"]).state_dict()
    assert not torch.equal(model.state_dict()["layers.0.conv.weight"], untrained["layers.0.conv.weight"])


def test_progress_bar_summary_quiet_and_resume(
    shapes_data: Path, trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library's bar with the loss on stderr and one summary line on stdout; --quiet: nothing;
    --resume goes on from a run's _last.pt."""
    head = ["train", "yolov4-tiny", "--data", str(shapes_data), *TINY]
    code = cli.main([*head, "--max-batches", "1", "-o", str(tmp_path / "one")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "loss" in captured.err and "1/1" in captured.err  # tqdm's bar with the loss parts
    assert captured.out.startswith("trained yolov4-tiny.cfg: 1 iterations, 2 images")
    resume = ["--resume", trained["checkpoint"], "--max-batches", "3", "-o", str(tmp_path / "more")]
    code, data, err = run([*head, *resume, "-q", "--json"], capsys)
    assert code == 0 and err == "", err
    assert data["iterations"] == 3 and data["steps"] == 1 and data["seen"] == 6 and Path(data["weights"]).exists()


def bad_inputs(tmp: Path, data: Path) -> list[tuple[list[str], str]]:
    cfg, out = "yolov4-tiny.cfg", str(tmp / "out")
    (tmp / "empty.data").write_text("classes = 5\ntrain = nosuch.txt\n")
    few = [*TINY[:-1], "16", "--max-batches", "1"]  # 8 images: fewer than one iteration of 16
    return [
        (["train", cfg, "--data", str(tmp / "missing.data"), *TRAIN_ARGS, "-o", out], "missing.data: no such file"),
        (["train", cfg, "--data", str(data), *TRAIN_ARGS, "--image-size", "100", "-o", out], "does not fit"),
        (["train", "yolov4-tiyn", "--data", str(data), *TRAIN_ARGS, "-o", out], "did you mean yolov4-tiny?"),
        (["train", cfg, "--data", str(data), *TRAIN_ARGS, "--clear", "-o", out], "goes with --weights"),
        (["train", cfg, "--data", str(data), *TRAIN_ARGS, "--subdivisions", "3", "-o", out], "divide"),
        (["train", cfg, "--data", str(data), *few, "-o", out], "fewer than one iteration"),
        (["train", cfg, "--data", str(tmp / "empty.data"), *TRAIN_ARGS, "-o", out], "nosuch.txt"),
        (["train", cfg, "--data", str(data), *TINY, "--epochs", "0", "-o", out], "--epochs 0"),
        (["train", cfg, "--data", str(data), *TRAIN_ARGS, "-o", str(tmp / "nodir" / "out")], "does not exist"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_input_exits_2_in_one_line(
    case: int, shapes_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, message = bad_inputs(tmp_path, shapes_data)[case]
    before = files(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("torch-mish train: error: ")
    assert files(tmp_path) == before
