"""torch-mish inspect: coverage, Mish as build counts it, the network's layer table; an engine file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

import torch_mish
from cli.helpers import run


def test_inspect_model_and_engine(trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = run(["inspect", "cli.helpers:small_model", "--image-size", "16", "--json"], capsys)
    assert code == 0, err
    assert data["coverage"]["percent"] == 100.0 and data["mish"]["count"] == 1
    types = [row["type"] for row in data["layer_table"]]
    assert types.count("CONVOLUTION") == 2 and len(types) == data["layers"]
    assert "dry_run_text" not in data
    code, data, err = run(
        ["inspect", "cli.helpers:small_model", "--image-size", "16", "--show-dry-run", "--json"], capsys
    )
    assert code == 0 and "100.0% coverage" in data["dry_run_text"] and data["dry_run_text"].strip() in err
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    reason = torch_mish.tensorrt.engine_runtime_unavailable_reason()  # type: ignore[attr-defined]
    code, _, err = run(["inspect", str(engine)], capsys)
    if reason is not None:
        assert code == 1 and reason in err and len(err.strip().splitlines()) == 1
    else:
        assert code == 2 and "not an engine" in err


def test_inspect_counts_mish_as_export_does(trt: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """nn.Mish (aten.mish) apart from torch_mish's op, whose lowering it does not take; hand-written
    x * tanh(softplus(x)) apart from both, with the advice to convert."""
    code, data, err = run(["inspect", "cli.helpers:mixed_model", "--image-size", "8", "--json"], capsys)
    assert code == 0, err
    assert data["mish"] == {"count": 1, "lowering": "native"} and data["aten_mish"] == 1
    assert "Mish: 1 Mish (native) and 1 aten.mish" in err
    code, data, err = run(["inspect", "cli.helpers:unconverted_model", "--image-size", "8", "--json"], capsys)
    assert code == 0, err
    assert (data["mish"]["count"], data["aten_mish"], data["composed_mish"]) == (0, 0, 2)
    assert "Mish: 2 x*tanh(softplus(x)) in plain ops" in err and "torch_mish.convert_mish(model)" in err
