"""Sources on the command line (torch_mish.cli.sources): packaged cfgs by name and their typos,
module:factory models that import from their project, and the one image-size rule of a darknet cfg."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from cli.helpers import files, run


def test_a_packaged_cfg_by_its_bare_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As packaged_cfg() and the demo take it: yolov4-tiny for yolov4-tiny.cfg."""
    code, data, err = run(["export", "yolov4-tiny", "-o", str(tmp_path / "t.pt2"), "--json"], capsys)
    assert code == 0, err
    assert data["source"] == "yolov4-tiny.cfg" and (tmp_path / "t.pt2").is_file()


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("yolov4-cps.cfg", "yolov4-cps.cfg: no such file; did you mean yolov4-csp.cfg? give a cfg path or a packaged"),
        ("yolov4-cps", "yolov4-cps: no such file; did you mean yolov4-csp? give a cfg path or a packaged cfg name"),
        ("yolov4tiny", "yolov4tiny: no such file; did you mean yolov4-tiny? give a cfg path"),
        ("nosuch.cfg", "nosuch.cfg: no such file; give a cfg path or a packaged cfg name (yolov4.cfg, "),
    ],
)
def test_a_mistyped_cfg_name_says_what_was_meant(
    src: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A packaged cfg's name mistyped, with or without .cfg, gets the missing file's message and the close
    names; not 'unsupported source'."""
    code, _, err = run(["export", src, "-o", str(tmp_path / "o.pt2")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"torch-mish export: error: {message}"), err
    assert files(tmp_path) == set()


@pytest.mark.parametrize("size", ["400", "410", "416x410"])
def test_one_image_size_rule_for_a_darknet_cfg(size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A size that is not a multiple of the network's largest stride is refused with one message, whether
    or not the network could run at it (410 runs through yolov4-tiny; 400 does not)."""
    code, _, err = run(["export", "yolov4-tiny", "--image-size", size, "-o", str(tmp_path / "o.pt2")], capsys)
    h, _, w = size.partition("x")
    assert code == 2, err
    assert f"--image-size {h}x{w or h} does not fit yolov4-tiny.cfg (its largest stride is 32); " in err
    assert "use a multiple of 32, e.g. 416x416" in err and len(err.strip().splitlines()) == 1
    assert files(tmp_path) == set()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A model project as users have one: a factory whose body, and whose model's forward, import other
    modules of the project (unique names, so that no earlier import answers for them). The command runs
    from the project's folder; returns the factory's module name."""
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path / "project"
    (folder / f"layers_{tag}").mkdir(parents=True)
    (folder / f"layers_{tag}" / "__init__.py").write_text(
        "import torch\n\n\ndef conv():\n    return torch.nn.Conv2d(3, 4, 3)\n"
    )
    (folder / f"act_{tag}.py").write_text("import torch_mish\n\n\ndef mish(x):\n    return torch_mish.mish(x)\n")
    (folder / f"factory_{tag}.py").write_text(
        "import torch\n\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        from layers_{tag} import conv  # imported when the factory runs\n\n"
        "        self.conv = conv()\n\n"
        "    def forward(self, x):\n"
        f"        from act_{tag} import mish  # imported when the model runs\n\n"
        "        return mish(self.conv(x))\n\n\n"
        "def make():\n"
        "    return Net()\n"
    )
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield f"factory_{tag}"
    for name in [m for m in sys.modules if tag in m]:
        del sys.modules[name]


def test_a_factory_imports_from_its_project(project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = list(sys.path)
    code, data, err = run(
        ["export", f"{project}:make", "--image-size", "8", "-o", str(tmp_path / "m.pt2"), "--json"], capsys
    )
    assert code == 0, err
    assert data["mish_nodes"] == 1
    assert sys.path == before  # main() ran in this process: its path is as it was
