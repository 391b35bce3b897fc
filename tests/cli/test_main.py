"""The command as a whole (torch_mish.cli and its options): help, exit statuses, one-line errors that
leave no file behind, and termination (SIGTERM) that cleans up as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.helpers import files, run
from torch_mish import cli

TESTS = Path(__file__).resolve().parents[1]


def test_python_m_help_and_every_subcommand_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch_mish", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [c.__name__.rsplit(".", 1)[-1] for c in cli.COMMANDS] == [
        "export",
        "build",
        "inspect",
        "triton",
        "bench",
        "detect",
        "train",
        "val",
    ]
    for command in cli.COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1]
        assert f"\n  {name} " in proc.stdout
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "example:" in text and f"torch-mish {name} " in text, name
        assert "--json" in text and "--verbose" in text  # every command has the common flags
    with pytest.raises(SystemExit):
        cli.main(["build", "--help"])
    text = capsys.readouterr().out
    assert "strongly typed" in text  # what --fp16/--bf16 do
    assert "(default: None)" not in text and "``" not in proc.stdout  # no empty defaults, no doc markup


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
    small = "cli.helpers:small_model"
    return [
        (["export", str(tmp / "missing.cfg"), "-o", str(tmp / "o.onnx")], 2, "no such file"),
        (["export", small, "-o", str(tmp / "o.txt")], 2, "must end in .onnx or .pt2"),
        (["export", small, "-o", str(tmp / "nodir" / "o.onnx")], 2, "does not exist"),
        (["export", str(tmp / "bad.cfg"), "-o", str(tmp / "o.pt2")], 2, "bad.cfg:11"),
        (["export", "cli.helpers:nothing", "-o", str(tmp / "o.pt2")], 2, "cannot import"),
        (["export", small, "--batch", "4:2:1", "-o", str(tmp / "o.pt2")], 2, "MIN <= OPT <= MAX"),
        (["export", "cli.helpers:broken_model", "--image-size", "8", "-o", str(tmp / "o.pt2")], 1, "cannot run"),
        (["build", small, "--fp16", "--bf16", "-o", str(tmp / "o.engine")], 2, "pick one"),
        (["build", small, "-o", str(tmp / "o.onnx")], 2, "must end in .engine"),
        (["bench", str(tmp / "missing.engine")], 2, "no such file"),
        (["build", "yolov4-tiny.cfg", "--timing-cache", str(tmp / "c.txt"), "-o", str(tmp / "o.plan")], 2, ".bin"),
        (["export", "yolov4-tiny", "--image-size", "100", "-o", str(tmp / "o.onnx")], 2, "does not fit yolov4-tiny"),
        (["export", small, "--opset", "12", "--plugin", "-o", str(tmp / "o.onnx")], 2, "--opset 18"),
        (
            ["build", small, "--minShapes", "x:1x3x16x16", "-o", str(tmp / "o.engine")],
            2,
            "--optShapes, --maxShapes missing",
        ),
        (["export", "torch.nn:Conv2d", "-o", str(tmp / "o.onnx")], 2, "give a factory that takes no arguments"),
        (["export", small, "--opset", "17", "-o", str(tmp / "o.pt2")], 2, "--opset is for ONNX"),
        (
            ["export", "yolov4-tiny", "--weights", str(tmp / "nosuch.weights"), "-o", str(tmp / "o.pt2")],
            2,
            "no such file; give the path of the .weights file trained with this cfg",
        ),
        (["export", small, "--weights", str(tmp / "w.weights"), "-o", str(tmp / "o.pt2")], 2, "for a .cfg source"),
        (["build", small, "--workspace", "0", "-o", str(tmp / "o.plan")], 2, "--workspace"),
        (["triton", small, "-o", str(tmp / "nodir" / "repo"), "--name", "m"], 2, "does not exist; create it first"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_bad_input_message_status_and_no_files(case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, status, message = bad_inputs(tmp_path)[case]
    before = files(tmp_path)
    try:
        code, _, err = run(argv, capsys)
    except SystemExit as exc:  # argparse's own check of a flag's type
        code, err = exc.code, capsys.readouterr().err.strip().splitlines()[-1] + "\n"
        assert code == status and err.startswith(f"torch-mish {argv[0]}: error: ") and message in err, err
        return
    assert code == status, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"torch-mish {argv[0]}: error: ")
    assert files(tmp_path) == before


SIGTERM_AFTER_WRITING = """
import os, signal, sys
import torch_mish.cli.census as census

read_back = census.in_onnx


def in_onnx(path):  # the exporter has written the file, under its temporary name
    counts = read_back(path)
    print("written:", path, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    return counts


census.in_onnx = in_onnx
from torch_mish.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_writing_leaves_nothing(tmp_path: Path) -> None:
    """A terminated run (a CI job cancelled, a pod stopped) removes its temporary output as Ctrl-C does,
    and exits 128 + SIGTERM."""
    pytest.importorskip("onnxscript", reason="onnxscript is not installed")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["export", "cli.helpers:small_model", "--image-size", "8", "-o", str(out / "m.onnx")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_AFTER_WRITING, *argv], capture_output=True, text=True, timeout=300, env=env
    )
    assert "written:" in proc.stdout, proc.stderr
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1] == "torch-mish export: terminated"
    assert files(out) == set()


def test_interrupt_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # noqa: ANN001
    from torch_mish.cli import census

    pytest.importorskip("onnxscript", reason="onnxscript is not installed")

    def interrupted(path: Path) -> None:
        assert path.stat().st_size > 0  # written, under a temporary name
        raise KeyboardInterrupt

    monkeypatch.setattr(census, "in_onnx", interrupted)
    code, _, err = run(
        ["export", "cli.helpers:small_model", "--image-size", "8", "-o", str(tmp_path / "m.onnx")], capsys
    )
    assert code == 130 and err == "torch-mish export: interrupted\n"
    assert files(tmp_path) == set()
