"""torch-mish export: ONNX run in onnxruntime, .pt2 reloaded, a program's batch and size as defaults,
Mish counted as build and inspect count it, and nothing left behind by a failure after writing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cli.helpers import SIZE, files, needs_onnx, run, small_model
from torch_mish.darknet import Darknet


@needs_onnx
def test_export_tiny_onnx_runs_in_onnxruntime(tiny_weights: tuple[Darknet, Path], tiny_onnx: Path) -> None:
    import onnxruntime as ort

    model, _ = tiny_weights
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))  # batch 3: dynamic
    # the names of an engine's bindings (built from the model or from this file): one name everywhere
    assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["output0"]
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-3)
    assert [p.name for p in tiny_onnx.parent.iterdir()] == ["tiny.onnx"]  # no temporary file left


@needs_onnx
@pytest.mark.parametrize("opset", [17, 12])
def test_export_below_opset_18_writes_the_composed_mish(
    opset: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / f"m{opset}.onnx"
    argv = ["export", "cli.helpers:small_model", "--image-size", "16", "--opset", str(opset), "-o", str(out)]
    code, result, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    assert (result["mish_nodes"], result["mish_as"]) == (1, "Mul(x, Tanh(Softplus(x)))")
    assert result["onnx_mish_nodes"] == {"Mish": 0, "TorchMish": 0, "Mul(x, Tanh(Softplus(x)))": 1}
    written = [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")]
    assert written == [opset]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 16, 16)
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), small_model().eval()(x), rtol=1e-4, atol=1e-5)


def test_export_pt2_reloads_and_is_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small.pt2"
    argv = ["export", "cli.helpers:small_model", "--image-size", "16", "--batch", "1:2:8", "-o", str(out), "--json"]
    code, result, err = run(argv, capsys)
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


def test_a_programs_batch_and_image_size_are_the_defaults(
    programs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .pt2's batch (static or a range) and image size hold unless told otherwise; a batch or size the
    program was not exported for is refused in one line."""
    static, dynamic = programs["static"], programs["dynamic"]
    for src, expected in [(static, [2, 2, 2]), (dynamic, [1, 2, 8])]:
        code, result, err = run(["export", str(src), "-o", str(tmp_path / "again.pt2"), "--json"], capsys)
        assert code == 0, err
        assert [result["batch"][k] for k in ("min", "opt", "max")] == expected
        assert result["input_shape"] == [[3, 16, 16]] and "the program's own" in err
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


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_an_unconverted_model_has_no_mish_op_and_says_how_to_convert(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hand-written x * tanh(softplus(x)) is not a Mish op: export counts it apart (as build and inspect
    do), in either format, and names convert_mish."""
    if suffix == ".onnx" and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnxscript is not installed")
    out = tmp_path / f"u{suffix}"
    code, result, err = run(
        ["export", "cli.helpers:unconverted_model", "--image-size", "8", "-o", str(out), "--json"], capsys
    )
    assert code == 0, err
    assert (result["mish_nodes"], result["aten_mish_nodes"], result["composed_mish_nodes"]) == (0, 0, 2)
    if suffix == ".onnx":
        assert result["onnx_mish_nodes"] == {"Mish": 0, "TorchMish": 0, "Mul(x, Tanh(Softplus(x)))": 2}
    assert "2 x*tanh(softplus(x)) in plain ops) from cli.helpers:unconverted_model" in err
    assert "torch_mish.convert_mish(model)" in err
    converted = tmp_path / f"c{suffix}"
    code, result, err = run(
        ["export", "cli.helpers:small_model", "--image-size", "8", "-o", str(converted), "--json"], capsys
    )
    assert code == 0 and result["composed_mish_nodes"] == 0 and "convert_mish" not in err, err


def test_mish_counts_keep_nn_mish_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nn.Mish is aten.mish in a .pt2: counted, and named apart from torch_mish's op."""
    code, result, err = run(
        ["export", "cli.helpers:mixed_model", "--image-size", "8", "-o", str(tmp_path / "m.pt2"), "--json"], capsys
    )
    assert code == 0, err
    assert (result["mish_nodes"], result["aten_mish_nodes"]) == (1, 1)
    assert "1 Mish and 1 aten.mish (nn.Mish / F.mish)" in err


@pytest.mark.parametrize(("missing", "opset"), [("onnxscript", None), ("onnx", "12")])
def test_onnx_export_without_the_onnx_packages_says_what_to_install(
    missing: str, opset: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    flags = ["--opset", opset] if opset else []
    code, _, err = run(["export", "cli.helpers:small_model", *flags, "-o", str(tmp_path / "o.onnx")], capsys)
    assert code == 1 and f"needs {missing}," in err and "pip install 'torch_mish[onnx]'" in err, err
    assert files(tmp_path) == set()


@needs_onnx
def test_a_failure_after_writing_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter has written its file when the check after it fails: exit 1, and no output or
    temporary file is left."""
    from torch_mish.cli import census

    def fail(path: Path) -> dict[str, int]:
        assert path.stat().st_size > 0 and path != tmp_path / "m.onnx"  # written, under a temporary name
        raise RuntimeError("check failed")

    monkeypatch.setattr(census, "in_onnx", fail)
    code, _, err = run(
        ["export", "cli.helpers:small_model", "--image-size", "8", "-o", str(tmp_path / "m.onnx")], capsys
    )
    assert code == 1 and "check failed" in err and len(err.strip().splitlines()) == 1
    assert files(tmp_path) == set()
