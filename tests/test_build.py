"""The build's single sources of truth: one CUDA architecture list for the op and the TensorRT plugin,
the plugin identity read from its header, where TensorRT headers are looked for, and the set-up
script stopping on a failed build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

import torch_mish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from csrc.cuda_arch import DEFAULT_ARCH_LIST, gencode_flags, resolve_arch_list  # noqa: E402
from csrc.trt import build as trt_build  # noqa: E402


def torch_arch_flags(monkeypatch: pytest.MonkeyPatch, arch_list: str | None) -> list[str]:
    """The -gencode flags torch's extension builder gives the op's CUDA sources for this setting."""
    if arch_list is None:
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_list)
    # Private, and used only here: it is the function that compiles the op, so agreeing with it is the point.
    return sorted(cpp_extension._get_cuda_arch_flags())


def fake_gpus(monkeypatch: pytest.MonkeyPatch, caps: list[tuple[int, int]], torch_archs: list[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(caps))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: caps[i])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: torch_archs)


@pytest.mark.parametrize(
    "arch_list", ["9.0", "8.6;9.0+PTX", "8.0 8.6 8.9", DEFAULT_ARCH_LIST, "9.0a;10.0a+PTX", "12.0+PTX"]
)
def test_plugin_flags_equal_the_ops_for_a_given_list(monkeypatch: pytest.MonkeyPatch, arch_list: str) -> None:
    resolved = resolve_arch_list(arch_list, [])
    assert sorted(gencode_flags(resolved)) == torch_arch_flags(monkeypatch, resolved)
    assert sorted(gencode_flags(resolved)) == torch_arch_flags(monkeypatch, arch_list)


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ([(8, 6)], "8.6+PTX"),  # the case: an 8.x build host; the plugin used to get sm_90 only
        ([(8, 9), (8, 6), (8, 9)], "8.6;8.9+PTX"),
        ([(12, 1)], "12.0+PTX"),  # newer than this torch was built for: clamped, as torch does
    ],
)
def test_visible_gpus_resolve_like_torch(monkeypatch: pytest.MonkeyPatch, caps: list, expected: str) -> None:
    """TORCH_CUDA_ARCH_LIST unset: setup.py's probe + resolution gives what torch would have chosen for
    the op, and the plugin gets the same flags."""
    import setup  # the repository's setup.py: importing it defines the build, running it builds

    fake_gpus(monkeypatch, caps, ["sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"])
    resolved = resolve_arch_list(None, *setup.visible_gpus())
    assert resolved == expected
    assert sorted(gencode_flags(resolved)) == torch_arch_flags(monkeypatch, None)


def test_no_gpu_and_bad_names() -> None:
    assert resolve_arch_list(None, []) == resolve_arch_list("", []) == DEFAULT_ARCH_LIST
    assert resolve_arch_list("native", []) == DEFAULT_ARCH_LIST
    for bad in ("Ampere", "sm_90", "9"):
        with pytest.raises(ValueError, match="TORCH_CUDA_ARCH_LIST"):
            resolve_arch_list(bad, [])


def test_build_info_records_one_arch_list() -> None:
    info = torch_mish.build_info()
    assert "arch_list" in info, "rebuild: this build predates arch_list in build_info()"
    if not info["cuda_kernels"]:
        assert info["arch_list"] is None
        return
    assert info["arch_list"] == resolve_arch_list(info["arch_list"], []), "not a resolved, explicit list"
    assert gencode_flags(info["arch_list"])


def test_setup_passes_the_resolved_list_to_torch_and_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup.resolve_cuda exports the list it resolved (torch compiles the op from the environment), and
    extension() hands the same string to the plugin build and build_info."""
    import setup

    if not Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc").exists() or torch.version.cuda is None:
        pytest.skip("needs nvcc and a CUDA build of torch (CUDA_HOME)")
    monkeypatch.setenv("CUDA_HOME", os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    monkeypatch.setenv("TORCH_MISH_CUDA", "auto")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "")  # unset for setup; restored (or removed) after the test
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cpp_extension.CUDA_HOME)  # setup.resolve_cuda sets it
    fake_gpus(monkeypatch, [(8, 6)], ["sm_80", "sm_86", "sm_90"])
    monkeypatch.setattr(setup, "plugin_targets", lambda with_cuda, log: [])
    monkeypatch.setattr(setup, "log", lambda msg: None)
    for attr in ("plugin_targets", "arch_list", "info"):
        monkeypatch.setattr(setup.BuildExt, attr, getattr(setup.BuildExt, attr))  # restored after the test
    setup.extension()
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "8.6+PTX"
    assert setup.BuildExt.arch_list == "8.6+PTX"  # what build_plugins receives
    assert setup.BuildExt.info["arch_list"] == "8.6+PTX"  # what build_info() will say


# ------------------------------------------------------------------------------------------------
# The plugin's identity: one definition (csrc/trt/plugin_identity.h), read by Python


def test_plugin_identity_comes_from_the_header() -> None:
    from torch_mish import _plugin_identity, onnx

    header = _plugin_identity.parse_header(_plugin_identity.HEADER.read_text())
    assert header == {
        "plugin_name": "TorchMish",
        "plugin_version": "1",
        "plugin_namespace": "torch_mish",
        "plugin_format_version": 1,
    }
    info = torch_mish.build_info()
    assert {k: info.get(k) for k in header} == header, "build_info() disagrees with plugin_identity.h: rebuild"
    assert (onnx.PLUGIN_OP, onnx.PLUGIN_DOMAIN, onnx.PLUGIN_VERSION) == ("TorchMish", "torch_mish", "1")
    assert _plugin_identity.FORMAT_VERSION == 1


def test_plugin_identity_falls_back_to_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout whose last build predates the identity entries still gets them."""
    import types

    from torch_mish import _plugin_identity

    monkeypatch.setitem(sys.modules, "torch_mish._build_info", types.ModuleType("torch_mish._build_info"))
    assert _plugin_identity.identity()["plugin_name"] == "TorchMish"
    with pytest.raises(ValueError, match="kPluginVersion"):
        _plugin_identity.parse_header('constexpr char const* kPluginName = "X";')


def test_no_hand_copies_of_the_plugin_identity() -> None:
    """Python reads the identity; a literal assignment like PLUGIN_NAME = "TorchMish" is a second copy."""
    copies = []
    for path in (ROOT / "torch_mish").rglob("*.py"):
        if path.name == "_build_info.py":  # written by setup.py from the header
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(PLUGIN_\w+|FORMAT_VERSION)\s*(:\s*\w+\s*)?=\s*(\"|'|\d)", line):
                copies.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
            if re.search(r"plugin_(version|namespace)\s*=\s*[\"']", line):
                copies.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not copies, "hand copies of csrc/trt/plugin_identity.h:\n" + "\n".join(copies)


# ------------------------------------------------------------------------------------------------
# TensorRT headers: where the build looks, and what it says


def fake_tensorrt(root: Path, major: int) -> Path:
    inc = root / "include"
    inc.mkdir(parents=True)
    (inc / "NvInfer.h").write_text("")
    (inc / "NvInferVersion.h").write_text(f"#define TRT_MAJOR_ENTERPRISE {major}\n")
    return inc


def test_tensorrt_headers_from_tensorrt_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    inc = fake_tensorrt(tmp_path / "TensorRT-11.1", 11)
    monkeypatch.delenv("TENSORRT_INCLUDE_DIR", raising=False)
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path / "TensorRT-11.1"))
    said: list[str] = []
    targets = trt_build.plugin_targets(True, log=said.append)
    assert targets and targets[0] == trt_build.PluginTarget(inc.resolve(), 11)
    assert any(f"TensorRT 11 headers found in {inc.resolve()}" in m for m in said), said
    dirs, _, explicit = trt_build.candidate_include_dirs()
    assert not explicit and dirs[0] == str(inc)
    for system in ("/usr/include/x86_64-linux-gnu", "/usr/include", "/usr/local/TensorRT/include"):
        assert system in dirs


def test_tensorrt_include_dir_wins_and_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = fake_tensorrt(tmp_path / "a", 10), fake_tensorrt(tmp_path / "b", 11)
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", f"{b}{os.pathsep}{a}")
    assert [t.major for t in trt_build.plugin_targets(True)] == [10, 11]
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="has no NvInfer.h"):
        trt_build.plugin_targets(True)


def test_no_tensorrt_headers_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TENSORRT_INCLUDE_DIR", raising=False)
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path))
    monkeypatch.setattr(trt_build, "SYSTEM_INCLUDE_DIRS", ())
    monkeypatch.setattr(trt_build, "TAR_GLOBS", ())
    said: list[str] = []
    assert trt_build.plugin_targets(True, log=said.append) == []
    assert any("TensorRT plugin skipped" in m and str(tmp_path / "include") in m for m in said), said


def test_only_ci_names_the_workspace_headers() -> None:
    """Users have no ../shared: nothing they run may look there (CI passes TENSORRT_INCLUDE_DIR)."""
    files = [ROOT / "setup.py", *(ROOT / "scripts").glob("*.sh"), *(ROOT / "csrc").rglob("*.py")]
    offenders = [
        str(p.relative_to(ROOT)) for p in files if re.search(r"\.\./shared|/shared/|shared/third_party", p.read_text())
    ]
    assert not offenders
    assert "shared/third_party" in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------------------------------------
# scripts/setup_env.sh: a failed build stops the script and shows the compiler's error


def test_setup_env_stops_on_a_failed_build(tmp_path: Path) -> None:
    """A stand-in python whose build fails like a C++ #error: the script must exit non-zero, print the
    error, and never reach the import (which would run the suite against an older library)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env bash
            case "$*" in
              *"-e ."*) echo "[torch_mish build] torch 0 (CUDA 0)"
                       echo "csrc/ops/mish_cpu.cpp:3:2: error: #error planted by the test" >&2
                       echo "ninja: build stopped: subcommand failed." >&2; exit 1 ;;
              *"import torch_mish"*) echo "REACHED THE IMPORT"; exit 0 ;;
              *) exit 0 ;;
            esac
            """
        )
    )
    fake.chmod(0o755)
    env = {**os.environ, "TORCH_MISH_VENV": str(venv), "TORCH_TRT_SPEC": ""}
    proc = subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'setup_env.sh'}; echo AFTER SETUP"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "error: #error planted by the test" in proc.stderr
    assert "REACHED THE IMPORT" not in proc.stdout and "AFTER SETUP" not in proc.stdout


# Imports the package may make only when an optional extra is installed (each behind a message
# naming what to install), by the extra that provides them: torch-tensorrt brings tensorrt.
OPTIONAL_IMPORTS = {
    "torch_tensorrt": "tensorrt",
    "tensorrt": "tensorrt",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "PIL": "image",  # Pillow: torch_mish.darknet.images
}


def test_every_import_of_the_package_is_a_declared_dependency() -> None:
    """A module the package imports and pyproject.toml does not declare breaks a user's install
    (the CLI's progress bars once needed an undeclared tqdm)."""
    import ast

    text = (ROOT / "pyproject.toml").read_text()  # by hand: tomllib is Python 3.11+

    def names(listing: str) -> set[str]:
        return {n.lower().replace("-", "_") for n in re.findall(r'"([A-Za-z0-9_.-]+)', listing)}

    declared = names(re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1))  # type: ignore[union-attr]
    table = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = {k: names(v) for k, v in re.findall(r"^(\w+) = \[(.*?)\]", table, re.M | re.S)}
    imported: dict[str, set[str]] = {}
    for path in (ROOT / "torch_mish").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("torch_mish", "__future__"):
                    imported.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    undeclared = {
        top: sorted(where)
        for top, where in imported.items()
        if top not in declared and not (top in OPTIONAL_IMPORTS and OPTIONAL_IMPORTS[top] in extras)
    }
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
    assert "tensorrt" in extras and "torch_tensorrt" in extras["tensorrt"] and {"onnx", "onnxscript"} <= extras["onnx"]
