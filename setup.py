"""Build torch_mish: the torch op library (torch_mish._C) and, when TensorRT headers are found, the
TensorRT plugin library.

Knobs (environment variables):
  TORCH_MISH_CUDA        auto (default): CUDA kernels when nvcc and a CUDA build of torch are present;
                         1: require them; 0: CPU-only build.
  TORCH_CUDA_ARCH_LIST   GPU architectures, torch's usual syntax ("8.0;9.0+PTX"). Default: the visible
                         GPUs, or DEFAULT_ARCH_LIST when none is visible.
  TORCH_MISH_DEBUG       1: -O0 -g (host) and -G (device).
  TENSORRT_INCLUDE_DIR   TensorRT include folder(s), os.pathsep-separated, one plugin library per
                         TensorRT major version found (see csrc/trt/README.md).
  MAX_JOBS               parallel compile jobs (default: CPU count).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from setuptools import setup
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent
PACKAGE = "torch_mish"
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0;10.0;12.0+PTX"


def log(msg: str) -> None:
    print(f"[torch_mish build] {msg}", flush=True)


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def nvcc_version(cuda_home: str) -> str | None:
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    if not nvcc.exists():
        return None
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def resolve_cuda() -> tuple[bool, str | None]:
    """Decide whether to compile CUDA kernels; fail early on an inconsistent toolchain."""
    mode = env_flag("TORCH_MISH_CUDA", "auto")
    if mode not in ("auto", "0", "1"):
        sys.exit(f"TORCH_MISH_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None
    cuda_home = os.environ.get("CUDA_HOME") or cpp_extension.CUDA_HOME
    if not cuda_home and Path("/usr/local/cuda/bin/nvcc").exists():
        cuda_home = "/usr/local/cuda"
    nvcc = nvcc_version(cuda_home) if cuda_home else None
    problems = []
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is a CPU-only build")
    if nvcc is None:
        problems.append("no nvcc found (set CUDA_HOME)")
    if problems:
        if mode == "1":
            sys.exit("TORCH_MISH_CUDA=1 but " + " and ".join(problems))
        log("CUDA kernels skipped: " + " and ".join(problems))
        return False, None
    if nvcc.split(".")[0] != torch.version.cuda.split(".")[0]:
        sys.exit(
            f"CUDA mismatch: torch {torch.__version__} was built with CUDA {torch.version.cuda}, "
            f"but nvcc in {cuda_home} is CUDA {nvcc}. Install a torch build for CUDA {nvcc.split('.')[0]}.x, "
            "point CUDA_HOME at a matching toolkit, or build CPU-only with TORCH_MISH_CUDA=0."
        )
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home  # torch resolves it at import; keep both in agreement
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST  # torch cannot probe without a GPU
    return True, nvcc


def write_build_info(with_cuda: bool, nvcc: str | None, trt_libs: dict[str, str]) -> None:
    info = {
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_kernels": with_cuda,
        "nvcc": nvcc,
        "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if with_cuda else None,
        "tensorrt_plugins": sorted(trt_libs),
        "tensorrt_include_dirs": trt_libs,  # plugin library -> the TensorRT headers it was built with
    }
    body = "".join(f"{k} = {v!r}\n" for k, v in info.items())
    (ROOT / PACKAGE / "_build_info.py").write_text(
        '"""Written by setup.py: what this build was made for."""\n\n' + body
    )


def extension() -> cpp_extension.CppExtension:
    with_cuda, nvcc = resolve_cuda()
    debug = env_flag("TORCH_MISH_DEBUG", "0") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-DPy_LIMITED_API=0x03090000"]  # torch picks the C++ standard (C++20 since 2.10)
    nvcc_flags = ["-O0", "-G", "-g"] if debug else ["-O3", "-lineinfo"]
    sources = [
        "csrc/ops/mish_schema.cpp",
        "csrc/ops/mish_autograd.cpp",
        "csrc/ops/batch_norm_mish.cpp",
        "csrc/ops/mish_cpu.cpp",
    ]
    if with_cuda:
        sources += ["csrc/ops/mish_cuda.cpp", "csrc/kernels/mish_launch.cu"]

    from csrc.trt.build import plugin_targets  # noqa: PLC0415 - build helper lives beside its sources

    targets = plugin_targets(with_cuda)
    trt_libs = [t.library for t in targets]
    log(
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA kernels: {with_cuda}"
        + (f" (nvcc {nvcc}, arch list {os.environ.get('TORCH_CUDA_ARCH_LIST', 'visible GPUs')})" if with_cuda else "")
        + f", debug: {debug}, TensorRT plugins: {trt_libs or 'none'}"
    )
    write_build_info(with_cuda, nvcc, {t.library: str(t.include_dir) for t in targets})
    kind = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    return kind(
        f"{PACKAGE}._C",
        sources,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags},
        py_limited_api=True,
    )


class BuildExt(cpp_extension.BuildExtension):
    """torch's BuildExtension, plus the TensorRT plugin libraries (they link neither torch nor TensorRT)."""

    def run(self) -> None:
        super().run()
        from csrc.trt.build import build_plugins  # noqa: PLC0415

        out_dir = ROOT / PACKAGE / "lib" if self.inplace else Path(self.build_lib) / PACKAGE / "lib"
        build_plugins(out_dir, with_cuda=any(s.endswith(".cu") for e in self.extensions for s in e.sources), log=log)


if __name__ == "__main__":
    if "MAX_JOBS" not in os.environ:
        os.environ["MAX_JOBS"] = str(os.cpu_count() or 1)
    if shutil.which("ninja") is None:
        log("ninja not found: compiling serially (pip install ninja)")
    sys.path.insert(0, str(ROOT))
    setup(
        ext_modules=[extension()],
        cmdclass={"build_ext": BuildExt.with_options(no_python_abi_suffix=True)},
        options={"bdist_wheel": {"py_limited_api": "cp39"}},
    )
