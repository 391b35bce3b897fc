"""torch-mish build: engines and reports from a darknet cfg, a program, a factory and an ONNX file
(TensorRT-RTX builds them on the CPU), one input name everywhere, the lowering as the library resolves
it, timing caches, and what cannot be honoured."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

import torch_mish
from cli.helpers import HAS_ORT, SIZE, darknet, files, needs_onnx, run
from torch_mish.darknet import Darknet


def test_build_tiny_cfg_engine_and_report(
    trt: ModuleType, tiny_weights: tuple[Darknet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, weights = tiny_weights
    engine, report = tmp_path / "tiny.engine", tmp_path / "report.json"
    shapes = [f"--{k}Shapes=x:{n}x3x{SIZE}x{SIZE}" for k, n in (("min", 1), ("opt", 2), ("max", 4))]
    argv = ["build", "yolov4-tiny.cfg", "--weights", str(weights), "--image-size", str(SIZE), *shapes]
    code, printed, err = run([*argv, "--saveEngine", str(engine), "--report", str(report), "--json"], capsys)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert printed == data
    assert engine.stat().st_size == data["engine_bytes"] > 0
    assert data["coverage"]["percent"] == 100.0 and data["coverage"]["trt_engines"] == 1
    assert data["coverage"]["supported_ops"] == data["coverage"]["total_ops"] > 0
    assert data["mish"] == {"count": 0, "lowering": "native"}  # yolov4-tiny uses leaky
    assert "converted, no Mish," in err  # the human line names no lowering for a model without Mish
    assert data["layer_types"]["CONVOLUTION"] == 21 and sum(data["layer_types"].values()) == data["layers"]
    ((shapes,),) = [list(p.values()) for p in data["profiles"]]
    assert [shapes[k][0] for k in ("min", "opt", "max")] == [1, 2, 4]
    assert data["inputs"] == [{"name": "x", "shape": [-1, 3, SIZE, SIZE], "dtype": "FLOAT"}]
    if torch_mish.tensorrt.engine_runtime_unavailable_reason() is not None:  # type: ignore[attr-defined]
        expected = "built for the RTX runtime, not run here" if "rtx" in trt.__name__ else "not run"
        assert data["runtime"].startswith(expected)
    assert files(tmp_path) == {"tiny.engine", "report.json"}


@needs_onnx
def test_export_csp_onnx_runs_in_onnxruntime_then_builds(
    trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    model = darknet("yolov4-csp")
    weights = tmp_path / "csp.weights"
    model.save_darknet_weights(weights)
    onnx_path = tmp_path / "csp.onnx"
    argv = ["export", "yolov4-csp.cfg", "--weights", str(weights), "--image-size", str(SIZE), "--batch", "1:2:4"]
    code, result, err = run([*argv, "--opset", "18", "-o", str(onnx_path), "--json"], capsys)
    assert code == 0, err
    assert result["mish_nodes"] == 112 and result["mish_as"] == "ONNX Mish"
    assert result["onnx_mish_nodes"]["Mish"] == 112
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-3)

    # built from the ONNX file through TensorRT's parser: Mish count, profile and coverage read back
    engine, report = tmp_path / "csp.engine", tmp_path / "csp.json"
    code, _, err = run(
        ["build", str(onnx_path), "--batch", "1:2:4", "-o", str(engine), "--report", str(report)], capsys
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert engine.stat().st_size == data["engine_bytes"] > 0
    assert data["mish"]["count"] == 112 and data["coverage"]["parsed"] and data["source_kind"] == "onnx"
    assert data["profiles"] == [
        {"x": {"min": [1, 3, SIZE, SIZE], "opt": [2, 3, SIZE, SIZE], "max": [4, 3, SIZE, SIZE]}}
    ]
    assert data["layer_types"]["ACTIVATION"] >= 2 * 112  # SOFTPLUS and TANH of each Mish
    assert data["precisions"] == ["FLOAT"]
    assert data["tensorrt"]["version"] == trt.__version__


def test_one_input_name_whatever_the_models_forward_calls_it(
    trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nn.Sequential's forward takes ``input``, Darknet's ``x``: the engine's input is ``x`` either way,
    as in the ONNX files export writes (and so in the engines built from them)."""
    for src in ("cli.helpers:small_model", "yolov4-tiny"):
        argv = ["build", src, "--image-size", "32", "-o", str(tmp_path / "e.plan"), "--json", "-q"]
        code, data, err = run(argv, capsys)
        assert code == 0, err
        assert [t["name"] for t in data["inputs"]] == ["x"] and list(data["profiles"][0]) == ["x"], src


def test_build_takes_a_programs_batch_range(
    trt: ModuleType, programs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .pt2 exported with a dynamic batch builds that range unless --batch says otherwise, as its
    image size is the program's unless --image-size says otherwise."""
    program = programs["dynamic"]
    for flags, expected in [([], [1, 2, 8]), (["--batch", "4"], [4, 4, 4])]:
        code, data, err = run(["build", str(program), "-o", str(tmp_path / "e.engine"), "--json", *flags], capsys)
        assert code == 0, err
        ((shapes,),) = [list(p.values()) for p in data["profiles"]]
        assert [shapes[k][0] for k in ("min", "opt", "max")] == expected, data["profiles"]


def test_build_fp16_converts_the_model(trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "half.plan"
    argv = ["build", "cli.helpers:small_model", "--image-size", "16", "--fp16", "-o", str(engine), "--json"]
    code, data, err = run(argv, capsys)
    assert code == 0, err
    assert data["precision"] == "float16" and "HALF" in data["precisions"] and "FLOAT" not in data["precisions"]
    assert data["inputs"] == [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "HALF"}]
    assert data["profiles"] == [{"x": {k: [1, 3, 16, 16] for k in ("min", "opt", "max")}}]
    assert data["mish"] == {"count": 1, "lowering": "native"}


@pytest.mark.parametrize("source", ["onnx", "model"])
def test_build_timing_cache_written_and_read(
    source: str, trt: ModuleType, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if source == "onnx":
        if not HAS_ORT:
            pytest.skip("onnx, onnxscript and onnxruntime are not installed")
        src = [str(request.getfixturevalue("tiny_onnx"))]
    else:
        src = ["cli.helpers:small_model", "--image-size", "16"]
    cache = tmp_path / "timing.cache"
    for flag in ("--timing-cache", "--timingCacheFile"):  # the second build reads the first one's cache
        code, data, err = run(["build", *src, "-o", str(tmp_path / "t.plan"), flag, str(cache), "--json"], capsys)
        assert code == 0, err
        assert data["timing_cache"] == str(cache) and cache.stat().st_size > 0
    assert files(tmp_path) == {"t.plan", "timing.cache"}


def test_the_lowering_comes_from_the_environment_as_in_the_library(
    trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --lowering the command builds what torch_mish.tensorrt would: TORCH_MISH_TRT_LOWERING,
    'auto' is refused as the library refuses it; --lowering wins over it; a bad value is an input error."""
    from torch_mish.tensorrt import PluginUnavailableError
    from torch_mish.tensorrt.selection import resolve

    argv = ["build", "cli.helpers:small_model", "--image-size", "16", "-o", str(tmp_path / "m.plan"), "--json"]
    for value, flags in [("native", []), ("plugin", []), ("plugin", ["--lowering", "native"])]:
        monkeypatch.setenv("TORCH_MISH_TRT_LOWERING", value)
        expected = flags[1] if flags else resolve(None)
        try:
            torch_mish.tensorrt.inspect.build_network(torch_mish.Mish(), torch.rand(1, 4), lowering=expected)
        except PluginUnavailableError:  # this TensorRT cannot build it: the command says so, naming the choice
            code, _, err = run([*argv, *flags], capsys)
            chosen = f"--lowering {expected}" if flags else f"TORCH_MISH_TRT_LOWERING={value}"
            assert code == 2 and f"error: {chosen} cannot be built" in err, err
            continue
        code, data, err = run([*argv, *flags], capsys)
        assert code == 0 and data["mish"] == {"count": 1, "lowering": expected}, (value, flags, err)
    monkeypatch.setenv("TORCH_MISH_TRT_LOWERING", "fastest")
    code, _, err = run(argv, capsys)
    assert code == 2 and "unknown Mish lowering 'fastest' in the environment variable TORCH_MISH_TRT_LOWERING" in err
    monkeypatch.setenv("TORCH_MISH_TRT_LOWERING", "auto")
    code, _, err = run(argv, capsys)
    assert code == 2 and "'auto'" in err and "TORCH_MISH_TRT_LOWERING" in err, err


@needs_onnx
def test_precision_and_lowering_it_cannot_honour(
    trt: ModuleType, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch_mish.tensorrt as mt
    from torch_mish import cli
    from torch_mish.tensorrt.support import can_add_plugin_layers

    # a float32 ONNX file cannot become a float16 engine: engines are strongly typed
    code, _, err = run(
        ["build", str(tiny_onnx), "--batch", "1:2:4", "--fp16", "-o", str(tmp_path / "o.engine")], capsys
    )
    assert code == 2 and "export --dtype float16" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["build", str(tiny_onnx), "--lowering", "native", "-o", str(tmp_path / "o.engine")], capsys)
    assert code == 2 and "fixed at export" in err
    if can_add_plugin_layers() and mt.plugin_available():
        pytest.skip("this TensorRT builds the plugin lowering")
    argv = ["build", "cli.helpers:small_model", "--image-size", "16", "--lowering", "plugin"]
    code, _, err = run([*argv, "-o", str(tmp_path / "p.engine")], capsys)
    assert code == 2 and "--lowering plugin cannot be built" in err and "--lowering native" in err
    assert "set_lowering" not in err  # the library's advice, in the CLI's spelling only
    # TorchMish nodes in an ONNX file: the parser of this TensorRT cannot import them
    plugin_onnx = tmp_path / "p.onnx"
    argv = ["export", "cli.helpers:small_model", "--image-size", "16", "--plugin", "-o", str(plugin_onnx), "-q"]
    assert cli.main(argv) == 0
    code, _, err = run(["build", str(plugin_onnx), "-o", str(tmp_path / "p.engine")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert files(tmp_path) == {"p.onnx"}
