"""The torch-mish command end to end on the CPU: export (ONNX run in onnxruntime, .pt2 reloaded), build
(engine + report read back), triton (config against the built network), bench (PyTorch rows), and
bad inputs (message, exit status, nothing left behind). Most calls run main([...]) in this process
(one torch-tensorrt import); one runs the real ``python -m torch_mish``."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import torch_mish
from torch_mish import cli
from torch_mish.darknet import Darknet, packaged_cfg

SIZE = 64
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None


# onnx, onnxscript and onnxruntime are optional test dependencies
needs_onnx = pytest.mark.skipif(not HAS_ORT, reason="onnx, onnxscript and onnxruntime are not installed")  # optional


def small_model() -> nn.Module:
    """A factory for ``test_cli:small_model``: conv, BatchNorm, Mish, pooled head."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), torch_mish.Mish(), nn.Conv2d(8, 4, 1))


def mixed_model() -> nn.Module:
    """``test_cli:mixed_model``: one torch_mish.Mish and one nn.Mish (aten.mish)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), torch_mish.Mish(), nn.Conv2d(8, 8, 1), nn.Mish())


class Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model cannot run")


def broken_model() -> nn.Module:
    return Broken()


def darknet(name: str) -> Darknet:
    torch.manual_seed(0)
    m = Darknet(packaged_cfg(name))
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """main(argv) in this process: (exit status, parsed --json stdout or None, stderr)."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    data = json.loads(captured.out) if "--json" in argv and code == 0 else None
    return code, data, captured.err


def files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Darknet, Path]:
    model = darknet("yolov4-tiny")
    path = tmp_path_factory.mktemp("weights") / "tiny.weights"
    model.save_darknet_weights(path)
    return model, path


@pytest.fixture(scope="module")
def tiny_onnx(tiny_weights: tuple[Darknet, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_ORT:
        pytest.skip("onnx, onnxscript and onnxruntime are not installed")
    _, weights = tiny_weights
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    code = cli.main(
        [
            "export",
            "yolov4-tiny.cfg",
            "--weights",
            str(weights),
            "--image-size",
            str(SIZE),
            "--batch",
            "1:2:4",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    return out


# --- help -----------------------------------------------------------------------------------------


def test_python_m_help_and_every_subcommand_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch_mish", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("export", "build", "inspect", "triton", "bench"):
        assert name in proc.stdout
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "example:" in text and f"torch-mish {name} " in text, name
    with pytest.raises(SystemExit):
        cli.main(["build", "--help"])
    text = capsys.readouterr().out
    assert "strongly typed" in text  # what --fp16/--bf16 do
    assert "(default: None)" not in text and "``" not in proc.stdout  # no empty defaults, no doc markup


def test_a_packaged_cfg_by_its_bare_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As packaged_cfg() and the demo take it: yolov4-tiny for yolov4-tiny.cfg."""
    code, data, err = run(["export", "yolov4-tiny", "-o", str(tmp_path / "t.pt2"), "--json"], capsys)
    assert code == 0, err
    assert data["source"] == "yolov4-tiny.cfg" and (tmp_path / "t.pt2").is_file()


# --- export ---------------------------------------------------------------------------------------


@needs_onnx
def test_export_tiny_onnx_runs_in_onnxruntime(tiny_weights: tuple[Darknet, Path], tiny_onnx: Path) -> None:
    import onnxruntime as ort

    model, _ = tiny_weights
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))  # batch 3: dynamic
    # the bindings of an engine built from the model itself, so either engine serves the same caller
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == [
        "output0"
    ]
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-3)
    assert [p.name for p in tiny_onnx.parent.iterdir()] == ["tiny.onnx"]  # no temporary file left


@needs_onnx
def test_export_csp_onnx_runs_in_onnxruntime_then_builds(
    trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    model = darknet("yolov4-csp")
    weights = tmp_path / "csp.weights"
    model.save_darknet_weights(weights)
    onnx_path = tmp_path / "csp.onnx"
    code, result, err = run(
        [
            "export",
            "yolov4-csp.cfg",
            "--weights",
            str(weights),
            "--image-size",
            str(SIZE),
            "--batch",
            "1:2:4",
            "--opset",
            "18",
            "-o",
            str(onnx_path),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert result["mish_nodes"] == 112 and result["mish_as"] == "ONNX Mish"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-3)

    # build from the ONNX file through TensorRT's parser: Mish count, profile and coverage read back
    engine, report = tmp_path / "csp.engine", tmp_path / "csp.json"
    code, _, err = run(
        ["build", str(onnx_path), "--batch", "1:2:4", "-o", str(engine), "--report", str(report)], capsys
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert engine.stat().st_size == data["engine_bytes"] > 0
    assert data["mish"]["count"] == 112 and data["coverage"]["parsed"] and data["source_kind"] == "onnx"
    ((name, shapes),) = data["profiles"][0].items()
    assert name == data["inputs"][0]["name"]
    assert (shapes["min"], shapes["opt"], shapes["max"]) == ([1, 3, SIZE, SIZE], [2, 3, SIZE, SIZE], [4, 3, SIZE, SIZE])
    assert data["layer_types"]["ACTIVATION"] >= 2 * 112  # SOFTPLUS and TANH of each Mish
    assert data["precisions"] == ["FLOAT"]
    assert data["tensorrt"]["version"] == trt.__version__


@needs_onnx
@pytest.mark.parametrize("opset", [17, 12])
def test_export_below_opset_18_counts_the_composed_mish(
    opset: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / f"m{opset}.onnx"
    code, result, err = run(
        ["export", "test_cli:small_model", "--image-size", "16", "--opset", str(opset), "-o", str(out), "--json"],
        capsys,
    )
    assert code == 0, err
    assert (result["mish_nodes"], result["mish_as"]) == (1, "Mul(x, Tanh(Softplus(x)))")
    written = [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")]
    assert written == [opset]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 16, 16)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), small_model().eval()(x), rtol=1e-4, atol=1e-5)


def test_export_pt2_reloads_and_is_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small.pt2"
    code, result, err = run(
        ["export", "test_cli:small_model", "--image-size", "16", "--batch", "1:2:8", "-o", str(out), "--json"], capsys
    )
    assert code == 0, err
    assert result["mish_nodes"] == 1
    program = torch.export.load(out)
    x = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(program.module()(x), small_model().eval()(x))
    # the .pt2 as a source: its input size is read from the program
    out2 = tmp_path / "again.pt2"
    code, result, err = run(["export", str(out), "--batch", "1:2:8", "-o", str(out2), "--json"], capsys)
    assert code == 0, err
    assert result["input_shape"] == [[3, 16, 16]]


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small_model exported at 16x16 with a static batch of 2 and with a batch range 1:2:8."""
    folder = tmp_path_factory.mktemp("programs")
    paths = {"static": folder / "b2.pt2", "dynamic": folder / "dyn.pt2"}
    for kind, batch in [("static", "2"), ("dynamic", "1:2:8")]:
        argv = ["export", "test_cli:small_model", "--image-size", "16", "--batch", batch, "-o", str(paths[kind]), "-q"]
        assert cli.main(argv) == 0
    return paths


def test_a_programs_batch_and_image_size_are_the_defaults(
    programs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command takes a .pt2's batch (static or a range) and image size unless told otherwise, and
    refuses, in one line, a batch or size the program was not exported for."""
    static, dynamic = programs["static"], programs["dynamic"]
    for src, expected in [(static, [2, 2, 2]), (dynamic, [1, 2, 8])]:
        code, result, err = run(["export", str(src), "-o", str(tmp_path / "again.pt2"), "--json"], capsys)
        assert code == 0, err
        assert [result["batch"][k] for k in ("min", "opt", "max")] == expected
        assert result["input_shape"] == [[3, 16, 16]] and "the program's own" in err
    code, data, err = run(["bench", str(static), "--backends", "eager", "--iters", "2", "--json"], capsys)
    assert code == 0, err
    assert data["rows"][0]["throughput_per_s"] == pytest.approx(2e3 / data["rows"][0]["median_ms"])  # batch 2
    before = files(tmp_path)
    for src, flags, message in [
        (static, ["--batch", "4"], "was exported for batch 2;"),
        (dynamic, ["--batch", "16"], "was exported for batch 1:2:8;"),
        (static, ["--image-size", "32"], "was exported for 16x16 images;"),
    ]:
        code, _, err = run(["export", str(src), *flags, "-o", str(tmp_path / "x.pt2")], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert files(tmp_path) == before


@needs_onnx
def test_a_dynamic_programs_onnx_export_keeps_its_range(
    programs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    out = tmp_path / "dyn.onnx"
    code, result, err = run(["export", str(programs["dynamic"]), "-o", str(out), "--json"], capsys)
    assert code == 0, err
    assert [result["batch"][k] for k in ("min", "opt", "max")] == [1, 2, 8]
    (dim, *_) = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert dim.dim_param and not dim.dim_value  # a symbolic batch, not 1 or 2


# --- build ----------------------------------------------------------------------------------------


def test_build_tiny_cfg_engine_and_report(
    trt: ModuleType, tiny_weights: tuple[Darknet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, weights = tiny_weights
    engine, report = tmp_path / "tiny.engine", tmp_path / "report.json"
    code, printed, err = run(
        [
            "build",
            "yolov4-tiny.cfg",
            "--weights",
            str(weights),
            "--image-size",
            str(SIZE),
            "--minShapes",
            f"x:1x3x{SIZE}x{SIZE}",
            "--optShapes",
            f"x:2x3x{SIZE}x{SIZE}",
            "--maxShapes",
            f"x:4x3x{SIZE}x{SIZE}",
            "--saveEngine",
            str(engine),
            "--report",
            str(report),
            "--json",
        ],
        capsys,
    )
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
    assert data["inputs"][0]["shape"] == [-1, 3, SIZE, SIZE]
    if torch_mish.tensorrt.engine_runtime_unavailable_reason() is not None:  # type: ignore[attr-defined]
        assert data["runtime"].startswith(
            "built for the RTX runtime, not run here" if "rtx" in trt.__name__ else "not run"
        )
    assert files(tmp_path) == {"tiny.engine", "report.json"}


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
    code, data, err = run(
        ["build", "test_cli:small_model", "--image-size", "16", "--fp16", "-o", str(engine), "--json"], capsys
    )
    assert code == 0, err
    assert data["precision"] == "float16" and "HALF" in data["precisions"] and "FLOAT" not in data["precisions"]
    assert data["inputs"][0]["dtype"] == "HALF" and data["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert data["profiles"] == [{"input": {k: [1, 3, 16, 16] for k in ("min", "opt", "max")}}]  # static
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
        src = ["test_cli:small_model", "--image-size", "16"]
    cache = tmp_path / "timing.cache"
    for flag in ("--timing-cache", "--timingCacheFile"):  # the second build reads the first one's cache
        code, data, err = run(["build", *src, "-o", str(tmp_path / "t.plan"), flag, str(cache), "--json"], capsys)
        assert code == 0, err
        assert data["timing_cache"] == str(cache) and cache.stat().st_size > 0
    assert files(tmp_path) == {"t.plan", "timing.cache"}


# --- triton ---------------------------------------------------------------------------------------


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
    repo = tmp_path / "repo"
    repo.mkdir()
    code, data, err = run(
        ["triton", str(tiny_onnx), "--batch", "1:2:4", "-o", str(repo), "--name", "tiny", "--json"], capsys
    )
    assert code == 0, err
    assert files(repo) == {"tiny", "tiny/config.pbtxt", "tiny/1", "tiny/1/model.plan"}
    assert (repo / "tiny/1/model.plan").stat().st_size == data["engine_bytes"] > 0
    config = parse_config((repo / "tiny/config.pbtxt").read_text())
    assert config["platform"] == "tensorrt_plan" and config["max_batch_size"] == 4 and config["preferred"] == ["2"]
    # every network input and output, in order, with its dims (batch dropped) and dtype
    expected = [(t["name"], cli.TRITON_TYPES[t["dtype"]], t["shape"][1:]) for t in data["inputs"] + data["outputs"]]
    assert config["tensors"] == expected
    assert expected[0][2] == [3, SIZE, SIZE] and expected[-1][1] == "TYPE_FP32"
    # an existing model is kept unless --force
    code, _, err = run(["triton", str(tiny_onnx), "--batch", "1:2:4", "-o", str(repo), "--name", "tiny"], capsys)
    assert code == 2 and "--force" in err
    code, _, err = run(["triton", str(tiny_onnx), "-o", str(repo), "--name", "tiny", "--force", "-q"], capsys)
    assert code == 0, err
    assert (
        parse_config((repo / "tiny/config.pbtxt").read_text())["max_batch_size"] == 1
    )  # --batch 1 on a dynamic ONNX: profile 1:1:1
    assert files(repo) == {"tiny", "tiny/config.pbtxt", "tiny/1", "tiny/1/model.plan"}


# --- inspect and bench ----------------------------------------------------------------------------


def test_mish_counts_keep_nn_mish_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nn.Mish is aten.mish in a .pt2 and in torch-tensorrt's graph: counted, and named apart from
    torch_mish's op, whose lowering it does not take."""
    code, result, err = run(
        ["export", "test_cli:mixed_model", "--image-size", "8", "-o", str(tmp_path / "m.pt2"), "--json"], capsys
    )
    assert code == 0, err
    assert (result["mish_nodes"], result["aten_mish_nodes"]) == (1, 1)
    assert "1 torch.ops.mish.mish and 1 aten.mish" in err
    if importlib.util.find_spec("torch_tensorrt") is None:
        pytest.skip("torch-tensorrt is not installed (the inspect half)")
    code, data, err = run(["inspect", "test_cli:mixed_model", "--image-size", "8", "--json"], capsys)
    assert code == 0, err
    assert data["mish"] == {"count": 1, "lowering": "native"} and data["aten_mish"] == 1
    assert "Mish: 1 Mish (native) and 1 aten.mish" in err


def test_inspect_model_and_engine(trt: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = run(["inspect", "test_cli:small_model", "--image-size", "16", "--json"], capsys)
    assert code == 0, err
    assert data["coverage"]["percent"] == 100.0 and data["mish"]["count"] == 1
    types = [row["type"] for row in data["layer_table"]]
    assert types.count("CONVOLUTION") == 2 and len(types) == data["layers"]
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    reason = torch_mish.tensorrt.engine_runtime_unavailable_reason()  # type: ignore[attr-defined]
    code, _, err = run(["inspect", str(engine)], capsys)
    if reason is not None:
        assert code == 1 and reason in err and len(err.strip().splitlines()) == 1
    else:
        assert code == 2 and "not an engine" in err


def test_bench_pytorch_rows(capsys: pytest.CaptureFixture[str]) -> None:
    levels = {name: logging.getLogger(name).level for name in ("torch", "torch_mish", "torch_tensorrt")}
    code, data, err = run(
        [
            "bench",
            "test_cli:small_model",
            "--image-size",
            "16",
            "--batch",
            "2",
            "--backends",
            "eager,tensorrt",
            "--iters",
            "5",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    (row,) = data["rows"]
    assert row["backend"] == "PyTorch eager" and 0 < row["median_ms"] <= row["p90_ms"] <= row["p99_ms"]
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


# --- bad inputs -----------------------------------------------------------------------------------

BAD_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=nosuch
"""


def bad_inputs(tmp: Path) -> list[tuple[list[str], int, str]]:
    (tmp / "bad.cfg").write_text(BAD_CFG)
    return [
        (["export", str(tmp / "missing.cfg"), "-o", str(tmp / "o.onnx")], 2, "no such file"),
        (["export", "test_cli:small_model", "-o", str(tmp / "o.txt")], 2, "must end in .onnx or .pt2"),
        (["export", "test_cli:small_model", "-o", str(tmp / "nodir" / "o.onnx")], 2, "does not exist"),
        (["export", str(tmp / "bad.cfg"), "-o", str(tmp / "o.pt2")], 2, "bad.cfg:11"),
        (["export", "test_cli:nothing", "-o", str(tmp / "o.pt2")], 2, "cannot import"),
        (["export", "test_cli:small_model", "--batch", "4:2:1", "-o", str(tmp / "o.pt2")], 2, "MIN <= OPT <= MAX"),
        (["export", "test_cli:broken_model", "--image-size", "8", "-o", str(tmp / "o.pt2")], 1, "cannot run"),
        (["build", "test_cli:small_model", "--fp16", "--bf16", "-o", str(tmp / "o.engine")], 2, "pick one"),
        (["build", "test_cli:small_model", "-o", str(tmp / "o.onnx")], 2, "must end in .engine"),
        (["bench", str(tmp / "missing.engine")], 2, "no such file"),
        (["build", "yolov4-tiny.cfg", "--timing-cache", str(tmp / "c.txt"), "-o", str(tmp / "o.plan")], 2, ".bin"),
        (["export", "yolov4-tiny", "--image-size", "100", "-o", str(tmp / "o.onnx")], 2, "does not fit yolov4-tiny"),
        (["export", "test_cli:small_model", "--opset", "12", "--plugin", "-o", str(tmp / "o.onnx")], 2, "--opset 18"),
        (
            ["build", "test_cli:small_model", "--minShapes", "x:1x3x16x16", "-o", str(tmp / "o.engine")],
            2,
            "--optShapes, --maxShapes missing",
        ),
        (["export", "torch.nn:Conv2d", "-o", str(tmp / "o.onnx")], 2, "give a factory that takes no arguments"),
        (["export", "test_cli:small_model", "--opset", "17", "-o", str(tmp / "o.pt2")], 2, "--opset is for ONNX"),
        (
            ["export", "yolov4-tiny", "--weights", str(tmp / "nosuch.weights"), "-o", str(tmp / "o.pt2")],
            2,
            "no such file; give the path of the .weights file trained with this cfg",
        ),
    ]


@pytest.mark.parametrize("case", range(17))
def test_bad_input_message_status_and_no_files(case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, status, message = bad_inputs(tmp_path)[case]
    before = files(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == status, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"torch-mish {argv[0]}: error: ")
    assert files(tmp_path) == before


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
        cli.main(["bench", "test_cli:small_model", "--image-size", "16", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("missing", "opset"), [("onnxscript", None), ("onnx", "12")])
def test_onnx_export_without_the_onnx_packages_says_what_to_install(
    missing: str, opset: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    flags = ["--opset", opset] if opset else []
    code, _, err = run(["export", "test_cli:small_model", *flags, "-o", str(tmp_path / "o.onnx")], capsys)
    assert code == 1 and f"needs {missing}," in err and "pip install 'torch_mish[onnx]'" in err, err
    assert files(tmp_path) == set()


@needs_onnx
def test_a_failure_after_writing_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter has written its file when the check after it fails: exit 1, and no output or
    temporary file is left."""

    def fail(path: Path) -> dict[str, int]:
        assert path.stat().st_size > 0 and path != tmp_path / "m.onnx"  # written, under a temporary name
        raise RuntimeError("check failed")

    monkeypatch.setattr(cli, "count_onnx_mish", fail)
    code, _, err = run(["export", "test_cli:small_model", "--image-size", "8", "-o", str(tmp_path / "m.onnx")], capsys)
    assert code == 1 and "check failed" in err and len(err.strip().splitlines()) == 1
    assert files(tmp_path) == set()


@needs_onnx
def test_precision_and_lowering_it_cannot_honour(
    trt: ModuleType, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch_mish.tensorrt as mt
    from torch_mish.tensorrt.support import can_add_plugin_layers

    # a float32 ONNX file cannot become a float16 engine: engines are strongly typed
    code, _, err = run(
        ["build", str(tiny_onnx), "--batch", "1:2:4", "--fp16", "-o", str(tmp_path / "o.engine")], capsys
    )
    assert code == 2 and "export --dtype float16" in err and len(err.strip().splitlines()) == 1
    if can_add_plugin_layers() and mt.plugin_available():
        pytest.skip("this TensorRT builds the plugin lowering")
    code, _, err = run(
        [
            "build",
            "test_cli:small_model",
            "--image-size",
            "16",
            "--lowering",
            "plugin",
            "-o",
            str(tmp_path / "p.engine"),
        ],
        capsys,
    )
    assert code == 2 and "--lowering plugin cannot be built" in err and "--lowering native" in err
    assert "set_lowering" not in err  # the library's advice, in the CLI's spelling only
    # TorchMish nodes in an ONNX file: the parser of this TensorRT cannot import them
    plugin_onnx = tmp_path / "p.onnx"
    assert (
        cli.main(["export", "test_cli:small_model", "--image-size", "16", "--plugin", "-o", str(plugin_onnx), "-q"])
        == 0
    )
    code, _, err = run(["build", str(plugin_onnx), "-o", str(tmp_path / "p.engine")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert files(tmp_path) == {"p.onnx"}
