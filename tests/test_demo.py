"""The main job (examples/demo.py) end to end on the CPU: a tiny training run on the synthetic shapes, its
mAP through every deploy path, engines built: it must finish and report every path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_PATHS = ("eager", "compile", "export", "aoti", "onnx", "tensorrt")


@pytest.mark.slow  # the whole demo on the CPU: gpu_run.sh runs it in its tests_slow stage (its demo stage on the GPU)
def test_demo_runs_and_reports(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("pycocotools", reason="the demo's mAP needs pycocotools")
    pytest.importorskip("PIL", reason="the demo's dataset needs pillow")
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "demo.py"),
        "--device",
        "cpu",
        "--iterations",
        "3",
        "--image-size",
        "64",
        "--train-images",
        "8",
        "--valid-images",
        "4",
        "--batch",
        "4",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["path"]: r for r in summary["rows"]}
    assert summary["iterations"] == 3 and len(summary["losses"]) == 3, summary
    assert all(r["status"] != "FAILED" for r in rows.values()), rows
    # Every deploy path has its row: measured, or not run with the reason.
    for path in DEPLOY_PATHS:
        row = rows[f"{path} (float32)"]
        assert row["status"] in ("ran", "not run here"), row
        assert (row["map"] is not None) == (row["status"] == "ran") and (row["status"] == "ran" or row["note"]), row
    for path in ("eager", "export", "onnx"):  # what runs on any CPU with the test dependencies
        assert rows[f"{path} (float32)"]["status"] == "ran", rows
    # The same weights in float32 through another path: the same mAP, within what float rounding can move.
    for row in rows.values():
        if row["delta_map"] is not None:
            assert abs(row["delta_map"]) <= 0.002, row
    assert (tmp_path / "train" / "model_final.weights").exists() and (tmp_path / "shapes" / "obj.data").exists()
    native, plugin = rows["TensorRT engine (native)"], rows["TensorRT engine (plugin)"]
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert native["status"] == plugin["status"] == "skipped", rows
        return
    # Where an engine can run it compiled; elsewhere it was built, whole (one engine, every op).
    assert native["status"] in ("compiled", "built"), native
    if native["status"] == "built":
        assert "100% of" in native["note"] and "1 engine" in native["note"] and "profile batch 1/" in native["note"]
        assert (tmp_path / "yolo_native.engine").stat().st_size > 10_000
    # The plugin lowering builds too, or says why this TensorRT cannot hold plugin layers.
    assert plugin["status"] in ("compiled", "built", "unsupported here"), plugin
    if plugin["status"] == "unsupported here":
        assert "add_plugin_v3" in plugin["note"] or "no torch_mish TensorRT plugin" in plugin["note"], plugin
        assert plugin["note"].endswith("Use --lowering native."), plugin
    assert "Summary" in result.stdout


def test_demo_bad_input_is_one_line_and_writes_nothing(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    for flags, message in [
        (["--cfg", "yolov4-tiny", "--image-size", "100"], "--image-size 100x100 does not fit yolov4-tiny.cfg"),
        (["--cfg", "nope.cfg"], "--cfg nope.cfg: no packaged cfg 'nope.cfg'"),
        (["--batch", "0"], "--batch, --iterations, --train-images and --valid-images must be >= 1"),
        (["--paths", "eager,tflite"], "--paths tflite: choose from eager,compile"),
    ]:
        cmd = [sys.executable, str(ROOT / "examples" / "demo.py"), "--device", "cpu", "--out", str(out), *flags]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"demo.py: error: {message}" in result.stderr, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and not out.exists(), result.stderr[-3000:]
