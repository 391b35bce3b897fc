"""The main job (examples/demo.py) end to end on a tiny model: it must finish and report every path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_reports(tmp_path) -> None:  # noqa: ANN001
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "demo.py"),
        "--device",
        "cpu",
        "--model-size",
        "tiny",
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
    assert rows["PyTorch eager, torch_mish"]["max_abs_err"] < 1e-5
    assert rows["torch.export (reloaded)"]["status"] == "ran"
    assert all(r["status"] != "FAILED" for r in rows.values()), rows
    for lowering in ("native", "plugin"):
        assert rows[f"TensorRT ({lowering})"]["status"] in ("ran", "built", "converted", "skipped")
    assert "Summary" in result.stdout and (tmp_path / "yolo.pt2").exists() and (tmp_path / "checkpoint.pt").exists()
