"""torch-mish bench: the PyTorch rows on the CPU, timed by torch_mish._timing, and its argument checks."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch

from cli.helpers import run
from torch_mish import _timing, cli
from torch_mish.cli import bench


def test_bench_pytorch_rows(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    levels = {name: logging.getLogger(name).level for name in ("torch", "torch_mish", "torch_tensorrt")}
    timed: list[list[float]] = []
    time_calls = _timing.time_calls
    monkeypatch.setattr(_timing, "time_calls", lambda *a, **k: timed.append(time_calls(*a, **k)) or timed[-1])
    argv = ["bench", "cli.helpers:small_model", "--image-size", "16", "--batch", "2", "--backends", "eager,tensorrt"]
    code, data, err = run([*argv, "--iters", "5", "--json"], capsys)
    assert code == 0, err
    (row,) = data["rows"]
    (times,) = timed  # the package's timer, and its percentiles of what it measured
    assert row["backend"] == "PyTorch eager" and len(times) == 5
    assert row["median_ms"] == _timing.median(times) and row["p90_ms"] == _timing.percentile(times, 90)
    assert row["p99_ms"] == _timing.percentile(times, 99) and 0 < row["median_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["throughput_per_s"] == pytest.approx(2e3 / row["median_ms"])
    if not torch.cuda.is_available():
        assert data["timer"] == "time.perf_counter (CPU)" and data["device"] == "cpu"
    if importlib.util.find_spec("torch_tensorrt") is not None:
        import torch_mish.tensorrt as mt

        reason = mt.engine_runtime_unavailable_reason()
        if reason is not None:
            assert data["skipped"] == [{"backend": "TensorRT", "reason": reason}]
            assert f"TensorRT: not run: {reason}" in err  # the human line (stderr under --json)
    # main() ran in this process: the library log levels it lowered are restored
    assert {name: logging.getLogger(name).level for name in levels} == levels


def test_bench_takes_a_programs_batch(programs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = run(["bench", str(programs["static"]), "--backends", "eager", "--iters", "2", "--json"], capsys)
    assert code == 0, err
    assert data["batch"] == 2 and data["rows"][0]["throughput_per_s"] == pytest.approx(
        2e3 / data["rows"][0]["median_ms"]
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--iters", "0"], "--iters: expected an integer >= 1, got 0"),
        (["--warmup", "-1"], "--warmup: expected an integer >= 0, got -1"),
        (["--backends", "eager,foo"], "--backends: 'eager,foo': expected a comma-separated subset"),
    ],
)
def test_bench_refuses_bad_counts_and_backends(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "cli.helpers:small_model", "--image-size", "16", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert bench.BACKENDS == ("eager", "compile", "tensorrt")
