"""torch-mish triton: a model repository entry whose config matches the built network."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cli.helpers import SIZE, files, needs_onnx, run
from torch_mish.cli.triton import TRITON_TYPES


def parse_config(text: str) -> dict[str, Any]:
    tensors = re.findall(r'\{ name: "([^"]+)" data_type: (\w+) dims: \[ ([^\]]*) \] \}', text)
    return {
        "max_batch_size": int(re.search(r"max_batch_size: (\d+)", text).group(1)),  # type: ignore[union-attr]
        "platform": re.search(r'platform: "(\w+)"', text).group(1),  # type: ignore[union-attr]
        "tensors": [(n, t, [int(d) for d in dims.split(", ")]) for n, t, dims in tensors],
        "preferred": re.findall(r"preferred_batch_size: \[ (\d+) \]", text),
    }


@needs_onnx
def test_triton_repository_matches_the_engine(
    trt: ModuleType, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"  # not there yet: the command creates it
    argv = ["triton", str(tiny_onnx), "--batch", "1:2:4", "-o", str(repo), "--name", "tiny"]
    code, data, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    assert files(repo) == {"tiny", "tiny/config.pbtxt", "tiny/1", "tiny/1/model.plan"}
    assert (repo / "tiny/1/model.plan").stat().st_size == data["engine_bytes"] > 0
    config = parse_config((repo / "tiny/config.pbtxt").read_text())
    assert config["platform"] == "tensorrt_plan" and config["max_batch_size"] == 4 and config["preferred"] == ["2"]
    # every network input and output, in order, with its dims (batch dropped) and dtype
    expected = [(t["name"], TRITON_TYPES[t["dtype"]], t["shape"][1:]) for t in data["inputs"] + data["outputs"]]
    assert config["tensors"] == expected
    assert expected[0] == ("x", "TYPE_FP32", [3, SIZE, SIZE]) and expected[-1][1] == "TYPE_FP32"
    # an existing model is kept unless --force
    code, _, err = run(argv, capsys)
    assert code == 2 and "--force" in err
    code, _, err = run(["triton", str(tiny_onnx), "-o", str(repo), "--name", "tiny", "--force", "-q"], capsys)
    assert code == 0, err
    config = parse_config((repo / "tiny/config.pbtxt").read_text())
    assert config["max_batch_size"] == 1  # no --batch on a dynamic ONNX: profile 1:1:1
    assert files(repo) == {"tiny", "tiny/config.pbtxt", "tiny/1", "tiny/1/model.plan"}


def test_triton_refuses_a_file_as_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    repo.write_text("a file")
    code, _, err = run(["triton", "cli.helpers:small_model", "-o", str(repo), "--name", "m"], capsys)
    assert code == 2 and "not a directory" in err and files(tmp_path) == {"repo"}
