"""The main job (examples/demo.py) end to end on yolov4-csp at 64x64: it must finish and report every path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # the whole demo on the CPU: gpu_run.sh runs it in its tests_slow stage (its demo stage on the GPU)
def test_demo_runs_and_reports(tmp_path) -> None:  # noqa: ANN001
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "demo.py"),
        "--device",
        "cpu",
        "--steps",
        "1",
        "--image-size",
        "64",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["path"]: r for r in summary["rows"]}
    # Absolute errors of decoded boxes in input pixels (up to ~100), after 112 float32 Mish layers that each
    # differ from nn.Mish by a few 1e-7 relative.
    assert rows["PyTorch eager, torch_mish"]["max_abs_err"] < 1e-4
    assert rows["torch.export (reloaded)"]["status"] == "ran"
    assert all(r["status"] != "FAILED" for r in rows.values()), rows
    assert rows["ONNX in onnxruntime"]["status"] == "ran" and rows["ONNX in onnxruntime"]["max_abs_err"] < 1e-3
    native, plugin = rows["TensorRT (native)"], rows["TensorRT (plugin)"]
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert native["status"] == plugin["status"] == "skipped", rows
        return
    # Where an engine can run it ran; elsewhere it was built, whole (one engine, every op).
    assert native["status"] in ("ran", "built"), native
    if native["status"] == "built":
        assert "100% of" in native["note"] and "1 engine" in native["note"] and "profile batch 1/" in native["note"]
        assert (tmp_path / "yolo_native.engine").stat().st_size > 10_000
    # The plugin lowering builds too, or says why this TensorRT cannot hold plugin layers.
    assert plugin["status"] in ("ran", "built", "unsupported here"), plugin
    if plugin["status"] == "unsupported here":
        assert "add_plugin_v3" in plugin["note"] or "no torch_mish TensorRT plugin" in plugin["note"], plugin
        assert plugin["note"].endswith("Use --lowering native.") and "set_lowering" not in plugin["note"], plugin
    assert "Summary" in result.stdout and (tmp_path / "yolo.pt2").exists() and (tmp_path / "checkpoint.pt").exists()


def test_demo_bad_input_is_one_line_and_writes_nothing(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    for flags, message in [
        (["--cfg", "yolov4-tiny", "--image-size", "100"], "--image-size 100x100 does not fit yolov4-tiny.cfg"),
        (["--cfg", "nope.cfg"], "--cfg nope.cfg: no packaged cfg 'nope.cfg'"),
        (["--batch", "0"], "--batch must be >= 1"),
    ]:
        cmd = [sys.executable, str(ROOT / "examples" / "demo.py"), "--device", "cpu", "--out", str(out), *flags]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"demo.py: error: {message}" in result.stderr, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and not out.exists(), result.stderr[-3000:]
