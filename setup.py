"""Build torch_mish: the torch op library (torch_mish._C) and, when TensorRT headers are found, the
TensorRT plugin library.

Knobs (environment variables):
  TORCH_MISH_CUDA        auto (default): CUDA kernels when nvcc and a CUDA build of torch are present;
                         1: require them; 0: CPU-only build.
  CUDA_HOME              the CUDA toolkit. Default: the toolkit of the nvcc on PATH, else /usr/local/cuda.
  TORCH_CUDA_ARCH_LIST   GPU architectures ("8.0;9.0+PTX", ';' or space separated). Default: the visible
                         GPUs, or build_helpers/cuda.DEFAULT_ARCH_LIST when none is visible. Resolved once,
                         into one set of nvcc flags for the op and the TensorRT plugin, and recorded in
                         torch_mish.build_info()["arch_list"].
  TORCH_MISH_DEBUG       1: -O0 -g (host) and -G (device).
  TENSORRT_INCLUDE_DIR   TensorRT include folder(s), os.pathsep-separated, one plugin library per
                         TensorRT major version found (see csrc/trt/README.md). Unset: $TENSORRT_ROOT/include,
                         then the Debian/RPM package and tar archive locations (build_helpers/tensorrt_plugin.py).
  MAX_JOBS               parallel compile jobs (default: CPU count).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import types
from pathlib import Path

import torch
from setuptools import setup
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # build_helpers/ sits beside setup.py, in the checkout and the sdist

from build_helpers.cuda import find_cuda_home, gencode_flags, nvcc_version, resolve_arch_list  # noqa: E402
from build_helpers.tensorrt_plugin import build_plugins, plugin_targets  # noqa: E402

PACKAGE = "torch_mish"


def limited_api() -> tuple[str, str]:
    """The abi3 tag and Py_LIMITED_API value, both from pyproject.toml's requires-python (one truth)."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', text, re.MULTILINE)
    if match is None:
        sys.exit('pyproject.toml: expected requires-python = ">=X.Y"')
    major, minor = int(match.group(1)), int(match.group(2))
    return f"cp{major}{minor}", f"0x{major:02X}{minor:02X}0000"


def plugin_identity() -> types.ModuleType:
    """torch_mish/_plugin_identity.py, the plugin identity's one definition, read without importing
    torch_mish (whose import needs this build)."""
    spec = importlib.util.spec_from_file_location("_torch_mish_plugin_identity", ROOT / PACKAGE / "_plugin_identity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def visible_gpus() -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """Capabilities of the visible GPUs and the newest architecture this torch was compiled for."""
    if not torch.cuda.is_available():
        return [], None
    caps = [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    sms = [int(re.sub(r"\D", "", a.split("_")[1])) for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
    return caps, (max((sm // 10, sm % 10) for sm in sms) if sms else None)


def log(msg: str) -> None:
    print(f"[torch_mish build] {msg}", flush=True)


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def resolve_cuda() -> tuple[bool, str | None, str | None]:
    """Decide whether to compile CUDA kernels and for which architectures; fail early on an inconsistent
    toolchain. Returns (CUDA kernels?, nvcc version, resolved arch list)."""
    mode = env_flag("TORCH_MISH_CUDA", "auto")
    if mode not in ("auto", "0", "1"):
        sys.exit(f"TORCH_MISH_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None, None
    cuda_home, unusable = find_cuda_home()
    if unusable and (mode == "1" or torch.version.cuda is not None):
        # One line, before anything is compiled (the compiler's "cuda_runtime.h: No such file" is not).
        sys.exit(f"{unusable}: set CUDA_HOME to the CUDA toolkit, or build CPU-only with TORCH_MISH_CUDA=0")
    nvcc = nvcc_version(cuda_home) if cuda_home else None
    problems = []
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is a CPU-only build")
    if nvcc is None:
        problems.append(unusable or "no nvcc found (set CUDA_HOME)")
    if problems:
        if mode == "1":
            sys.exit("TORCH_MISH_CUDA=1 but " + " and ".join(problems))
        log("CUDA kernels skipped: " + " and ".join(problems))
        return False, None, None
    if nvcc.split(".")[0] != torch.version.cuda.split(".")[0]:
        sys.exit(
            f"CUDA mismatch: torch {torch.__version__} was built with CUDA {torch.version.cuda}, "
            f"but nvcc in {cuda_home} is CUDA {nvcc}. Install a torch build for CUDA {nvcc.split('.')[0]}.x, "
            "point CUDA_HOME at a matching toolkit, or build CPU-only with TORCH_MISH_CUDA=0."
        )
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home  # torch resolves it at import; keep both in agreement
    try:
        arch_list = resolve_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), *visible_gpus())
    except ValueError as exc:
        sys.exit(str(exc))
    return True, nvcc, arch_list


def build_info(with_cuda: bool, nvcc: str | None, arch_list: str | None, trt_libs: dict[str, str]) -> dict:
    """What torch_mish.build_info() will report; written by BuildExt once the build has succeeded."""
    identity = plugin_identity()
    return {
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_kernels": with_cuda,
        "nvcc": nvcc,
        "arch_list": arch_list,  # what the op's CUDA kernels and every plugin library were compiled for
        "tensorrt_plugins": sorted(trt_libs),
        "tensorrt_include_dirs": trt_libs,  # plugin library -> the TensorRT headers it was built with
        # What the plugin libraries were compiled with (torch_mish/_plugin_identity.py at build time).
        "plugin_name": identity.PLUGIN_NAME,
        "plugin_version": identity.PLUGIN_VERSION,
        "plugin_namespace": identity.PLUGIN_NAMESPACE,
        "plugin_format_version": identity.FORMAT_VERSION,
        "nms_plugin_name": identity.NMS_PLUGIN_NAME,
        "nms_plugin_version": identity.NMS_PLUGIN_VERSION,
        "nms_plugin_format_version": identity.NMS_FORMAT_VERSION,
    }


def write_build_info(package_dir: Path, info: dict) -> None:
    body = "".join(f"{k} = {v!r}\n" for k, v in info.items())
    (package_dir / "_build_info.py").write_text('"""Written by setup.py: what this build was made for."""\n\n' + body)


def extension() -> cpp_extension.CppExtension:
    with_cuda, nvcc, arch_list = resolve_cuda()
    debug = env_flag("TORCH_MISH_DEBUG", "0") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    # a*b + c stays two roundings on the host, as nvcc's __fmul_rn/__fadd_rn keep it on the device: the
    # CPU and CUDA NMS kernels must decide alike (csrc/kernels/darknet_nms_math.h)
    cxx += ["-ffp-contract=off"]
    cxx += [f"-DPy_LIMITED_API={limited_api()[1]}"]  # torch picks the C++ standard (C++20 since 2.10)
    nvcc_flags = ["-O0", "-G", "-g"] if debug else ["-O3", "-lineinfo"]
    sources = [
        "csrc/ops/mish_schema.cpp",
        "csrc/ops/mish_autograd.cpp",
        "csrc/ops/batch_norm_mish.cpp",
        "csrc/ops/mish_cpu.cpp",
        "csrc/ops/darknet_nms.cpp",
        "csrc/ops/darknet_nms_cpu.cpp",
    ]
    # One translation of the list into nvcc flags, for the op's CUDA sources and the plugin's alike
    # (given arch flags, torch's extension builder adds none of its own).
    gencode = gencode_flags(arch_list) if with_cuda else []
    if with_cuda:
        sources += ["csrc/ops/mish_cuda.cpp", "csrc/kernels/mish_launch.cu"]
        sources += ["csrc/ops/darknet_nms_cuda.cpp", "csrc/kernels/darknet_nms_launch.cu"]
        nvcc_flags += gencode

    targets = plugin_targets(with_cuda, log=log)
    BuildExt.plugin_targets, BuildExt.gencode = targets, gencode
    BuildExt.info = build_info(with_cuda, nvcc, arch_list, {t.library: str(t.include_dir) for t in targets})
    trt_libs = [t.library for t in targets]
    log(
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA kernels: {with_cuda}"
        + (f" (nvcc {nvcc}, arch list {arch_list} for the op and the plugin)" if with_cuda else "")
        + f", debug: {debug}, TensorRT plugins: {trt_libs or 'none'}"
    )
    kind = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    return kind(
        f"{PACKAGE}._C",
        sources,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags},
        py_limited_api=True,
    )


class BuildExt(cpp_extension.BuildExtension):
    """torch's BuildExtension, plus the TensorRT plugin libraries (they link neither torch nor TensorRT)."""

    # Set by extension(): what was resolved and printed is what gets built and recorded.
    plugin_targets: list = []
    gencode: list[str] = []
    info: dict = {}

    def run(self) -> None:
        super().run()
        package_dir = ROOT / PACKAGE if self.inplace else Path(self.build_lib) / PACKAGE
        # lib/ holds this build's plugin libraries only: never one left by an earlier build (a CPU-only
        # wheel built after a CUDA build shipped the old plugins from setuptools' build/ folder).
        for stale in (package_dir / "lib").glob("libtorch_mish_trt*.so"):
            stale.unlink()
        build_plugins(package_dir / "lib", self.plugin_targets, self.gencode, plugin_identity().MACROS, log=log)
        # Last, so that a failed build leaves the previous build's description with the previous library.
        write_build_info(package_dir, self.info)


if __name__ == "__main__":
    if "MAX_JOBS" not in os.environ:
        os.environ["MAX_JOBS"] = str(os.cpu_count() or 1)
    if shutil.which("ninja") is None:
        log("ninja not found: compiling serially (pip install ninja)")
    setup(
        ext_modules=[extension()],
        cmdclass={"build_ext": BuildExt.with_options(no_python_abi_suffix=True)},
        options={"bdist_wheel": {"py_limited_api": limited_api()[0]}},
    )
