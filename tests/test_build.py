"""The build (setup.py, build_helpers/) and its single sources of truth: the CUDA toolkit found from
nvcc, one set of arch flags for the op and the TensorRT plugin, the plugin identity defined in Python
and compiled in, where TensorRT headers are looked for; the set-up script stopping on a failed build,
and CI building both as a newcomer does (no TensorRT headers) and with them."""

from __future__ import annotations

import os
import re
import shutil
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

from build_helpers import tensorrt_plugin as trt_build  # noqa: E402
from build_helpers.cuda import DEFAULT_ARCH_LIST, find_cuda_home, gencode_flags, resolve_arch_list  # noqa: E402


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
def test_our_flags_mean_what_torch_means_by_a_list(monkeypatch: pytest.MonkeyPatch, arch_list: str) -> None:
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


def test_setup_gives_the_op_and_the_plugin_the_same_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """extension() resolves the list once and turns it into nvcc flags once: the op's CUDA sources get
    them (so torch's extension builder adds none of its own), the plugin build the same list, and
    build_info() the list."""
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
    for attr in ("plugin_targets", "gencode", "info"):
        monkeypatch.setattr(setup.BuildExt, attr, getattr(setup.BuildExt, attr))  # restored after the test
    ext = setup.extension()
    flags = gencode_flags("8.6+PTX")
    nvcc_args = ext.extra_compile_args["nvcc"]
    assert [f for f in nvcc_args if "arch" in f] == flags
    assert cpp_extension._get_cuda_arch_flags(nvcc_args) == []  # private: the function that would add more
    assert setup.BuildExt.gencode == flags  # what build_plugins receives
    assert setup.BuildExt.info["arch_list"] == "8.6+PTX"  # what build_info() will say


# ------------------------------------------------------------------------------------------------
# The CUDA toolkit: found from nvcc's real location when CUDA_HOME is unset


def fake_toolkit(root: Path, *, headers: bool = True, names_its_folder: bool = True) -> Path:
    """A CUDA toolkit folder whose bin/nvcc answers --version, and --dryrun with its own folder as the
    real nvcc does (names_its_folder)."""
    (root / "bin").mkdir(parents=True)
    if headers:
        (root / "include").mkdir()
        (root / "include" / "cuda_runtime.h").write_text("")
    nvcc = root / "bin" / "nvcc"
    here = f'case "$*" in *--dryrun*) echo "#$ _HERE_={root / "bin"}" >&2 ;; esac\n'
    version = f'echo "Cuda compilation tools, release {torch.version.cuda or "13.0"}, V0"\n'
    nvcc.write_text("#!/bin/sh\n" + (here if names_its_folder else "") + version)
    nvcc.chmod(0o755)
    return root


def on_path(folder: Path, nvcc: str, kind: str) -> dict[str, str]:
    """An environment whose PATH holds only ``folder``, with an nvcc there that is a symlink to, or a
    wrapper script running, ``nvcc``."""
    folder.mkdir(parents=True)
    if kind == "symlink":
        (folder / "nvcc").symlink_to(nvcc)
    else:
        (folder / "nvcc").write_text(f'#!/bin/sh\nexec {nvcc} "$@"\n')
        (folder / "nvcc").chmod(0o755)
    return {"PATH": str(folder)}


@pytest.mark.parametrize("kind", ["symlink", "wrapper"])
def test_the_toolkit_is_found_from_nvccs_real_location(tmp_path: Path, kind: str) -> None:
    """nvcc on PATH in a folder that is no toolkit (/usr/local/bin), CUDA_HOME unset: the build compiles
    against the toolkit nvcc belongs to, not bin/.. of the PATH entry (which has no cuda_runtime.h)."""
    toolkit = fake_toolkit(tmp_path / "cuda-13.0", names_its_folder=kind == "wrapper")
    env = on_path(tmp_path / "local" / "bin", str(toolkit / "bin" / "nvcc"), kind)
    assert find_cuda_home(env) == (str(toolkit.resolve()), None)
    assert find_cuda_home({**env, "CUDA_HOME": str(toolkit)}) == (str(toolkit), None)


def test_this_machines_nvcc_finds_its_toolkit() -> None:
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on PATH")
    home, problem = find_cuda_home({"PATH": os.environ["PATH"]})
    assert problem is None and home is not None
    assert (Path(home) / "include" / "cuda_runtime.h").exists()


def test_nvcc_without_a_toolkit_stops_the_build_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import setup

    toolkit = fake_toolkit(tmp_path / "cuda", headers=False)
    env = on_path(tmp_path / "bin", str(toolkit / "bin" / "nvcc"), "wrapper")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("TORCH_MISH_CUDA", "auto")
    monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "13.0")
    with pytest.raises(SystemExit) as stop:
        setup.resolve_cuda()
    message = str(stop.value.code)
    assert "\n" not in message and f"nvcc at {tmp_path / 'bin' / 'nvcc'}" in message
    assert "CUDA_HOME" in message and "TORCH_MISH_CUDA=0" in message
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with pytest.raises(SystemExit, match=f"CUDA_HOME={tmp_path} is not a CUDA toolkit.*TORCH_MISH_CUDA=0"):
        setup.resolve_cuda()


# ------------------------------------------------------------------------------------------------
# The plugin's identity: defined once (torch_mish/_plugin_identity.py), compiled into the plugin


def test_plugin_identity_is_defined_once() -> None:
    """Its values appear in one source file: Python imports them, the build passes them to the C++."""
    from torch_mish import _plugin_identity, onnx

    # The build and the C++ sources hold no value; the package assigns none but there.
    names = (_plugin_identity.PLUGIN_NAME, _plugin_identity.NMS_PLUGIN_NAME)
    literals = [f"{q}{name}{q}" for name in names for q in "\"'"]
    build = [ROOT / "setup.py", *(ROOT / "build_helpers").rglob("*.py"), *(ROOT / "csrc").rglob("*.[ch]*")]
    assert not [str(p.relative_to(ROOT)) for p in build if any(lit in p.read_text() for lit in literals)]
    assignment = re.compile(r"^\s*(\w+)\s*(:\s*\w+\s*)?=\s*(\"|')(TorchMish|DarknetNMS|torch_mish)(\"|')", re.MULTILINE)
    written = ("_build_info.py", "_plugin_identity.py")
    package = [p for p in (ROOT / "torch_mish").rglob("*.py") if p.name not in written]
    assert not [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in package for m in assignment.finditer(p.read_text())]
    assert (onnx.PLUGIN_OP, onnx.PLUGIN_DOMAIN, onnx.PLUGIN_VERSION) == (
        _plugin_identity.PLUGIN_NAME,
        _plugin_identity.PLUGIN_NAMESPACE,
        _plugin_identity.PLUGIN_VERSION,
    )
    info = torch_mish.build_info()
    keys = ("plugin_name", "plugin_version", "plugin_namespace", "plugin_format_version")
    recorded = {k: info.get(k) for k in (*keys, *(f"nms_{k}" for k in keys if k != "plugin_namespace"))}
    assert list(recorded.values()) == list(_plugin_identity.MACROS.values()), "built with another identity: rebuild"


def test_the_plugin_header_needs_the_identity_from_the_build(tmp_path: Path) -> None:
    """csrc/trt/plugin_identity.h holds no values: compiled without the build's definitions it stops,
    naming where they come from; with them, its constants are the Python values."""
    from torch_mish import _plugin_identity

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    probe = tmp_path / "probe.cpp"
    probe.write_text(
        '#include "plugin_identity.h"\n#include <cstdio>\n'
        'int main() { std::printf("%s %s %s %d %s %s %d", mish::trt::kPluginName, mish::trt::kPluginVersion, '
        "mish::trt::kPluginNamespace, mish::trt::kFormatVersion, mish::trt::kNmsPluginName, "
        "mish::trt::kNmsPluginVersion, mish::trt::kNmsFormatVersion); }\n"
    )
    compile_probe = [cxx, "-std=c++17", "-I", str(ROOT / "csrc" / "trt"), str(probe), "-o", str(tmp_path / "probe")]
    bare = subprocess.run(compile_probe, capture_output=True, text=True)
    assert bare.returncode != 0 and "torch_mish/_plugin_identity.py" in bare.stderr
    defines = [f"-D{name}={value}" for name, value in _plugin_identity.MACROS.items()]
    subprocess.run([*compile_probe, *defines], check=True)
    out = subprocess.run([tmp_path / "probe"], capture_output=True, text=True, check=True).stdout
    assert out == " ".join(str(v) for v in _plugin_identity.MACROS.values())


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
    files = [ROOT / "setup.py", *(ROOT / "scripts").glob("*.sh"), *(ROOT / "build_helpers").rglob("*.py")]
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


def fake_venv_python(venv: Path, log: Path) -> None:
    """A stand-in for the environment's python that records each call with the TensorRT variables it saw,
    fails the install check's wheel build (the end of what these tests follow), and succeeds otherwise."""
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text(
        textwrap.dedent(
            f"""\
            #!/usr/bin/env bash
            echo "TENSORRT_INCLUDE_DIR=${{TENSORRT_INCLUDE_DIR-unset}}" \\
              "TENSORRT_ROOT=${{TENSORRT_ROOT-unset}} $*" >>{log}
            case "$*" in
              "-m build "*) exit 3 ;;
              *tensorrt_plugins*) [ -z "${{FAKE_PLUGINS_BUILT:-}}" ] ;;
              *) exit 0 ;;
            esac
            """
        )
    )
    fake.chmod(0o755)


def run_ci(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """.ci/run in a copy of the checkout's scripts beside a stand-in shared folder, with a fake venv."""
    repo = tmp_path / "repo"
    (tmp_path / "shared" / "third_party").mkdir(parents=True)
    for rel in [".ci/run", *(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh")), "pyproject.toml"]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text((ROOT / rel).read_text())
    log = tmp_path / "calls.log"
    fake_venv_python(tmp_path / "venv", log)
    environ = {**os.environ, "TORCH_MISH_VENV": str(tmp_path / "venv"), "TORCH_TRT_SPEC": "", **env}
    environ["TENSORRT_INCLUDE_DIR"] = "/somewhere/include"  # what a developer's shell may hold
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], env=environ, capture_output=True, text=True, timeout=120)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_ci_runs_the_tensorrt_tests_against_a_build_without_headers(tmp_path: Path) -> None:
    """CI builds as a newcomer does (no TENSORRT_INCLUDE_DIR, no TENSORRT_ROOT) and runs the TensorRT and
    build tests there, then the whole suite once with the headers, then the install check."""
    proc, calls = run_ci(tmp_path)
    assert "install check" in proc.stderr + proc.stdout, proc.stdout + proc.stderr  # reached stage 3
    pytest_runs = [c for c in calls if " -m pytest " in c]
    headers = f"{tmp_path}/shared/third_party/tensorrt-11.1/include"
    assert len(pytest_runs) == 2, calls
    assert pytest_runs[0].startswith("TENSORRT_INCLUDE_DIR=unset TENSORRT_ROOT=unset ")
    assert pytest_runs[1].startswith(f"TENSORRT_INCLUDE_DIR={headers}")

    def paths(call: str) -> list[str]:  # pytest's positional arguments ("-p no:cacheprovider" aside)
        args = call.split(" -m pytest ", 1)[1].split()
        return [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] != "-p"]

    # Only the named tests without headers (a path argument must narrow the run, not add to tests/);
    # no path with them, so pytest runs pyproject.toml's testpaths: the whole suite.
    assert paths(pytest_runs[0]) == ["tests/tensorrt", "tests/test_build.py"]
    assert paths(pytest_runs[1]) == []
    builds = [c for c in calls if "-e ." in c]
    assert [b.split()[0] for b in builds] == [
        "TENSORRT_INCLUDE_DIR=unset",
        f"TENSORRT_INCLUDE_DIR={headers}:{headers.replace('11.1', '10.16')}",
    ]


def test_ci_stops_when_the_headerless_build_found_headers(tmp_path: Path) -> None:
    proc, calls = run_ci(tmp_path, FAKE_PLUGINS_BUILT="1")
    assert proc.returncode != 0
    assert sum(" -m pytest " in c for c in calls) == 1, "must stop before the run with headers"


# Imports the package may make only when an optional extra is installed (each behind a message
# naming what to install), by the extra that provides them: torch-tensorrt brings tensorrt.
OPTIONAL_IMPORTS = {
    "torch_tensorrt": "tensorrt",
    "tensorrt": "tensorrt",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",  # torch_mish.darknet.deploy runs ONNX files with it
    "PIL": "image",  # Pillow: torch_mish.darknet (images, datasets)
    "pycocotools": "train",
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


def test_csrc_holds_only_cpp_sources() -> None:
    """The build's Python lives in build_helpers/, beside setup.py, not among the C++ sources."""
    assert not sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.py"))
