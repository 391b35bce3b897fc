"""Build the TensorRT plugin libraries (called from setup.py; plain nvcc, no torch, no libnvinfer).

One library per TensorRT major version whose headers are found, since ILogger / IPluginRegistry
changed layout between 10.x and 11.x: lib/libtorch_mish_trt<major>.so. The Mish kernel object is
compiled once and linked into each.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent
# Where TensorRT SDKs and distribution packages usually put NvInfer.h.
DEFAULT_INCLUDE_DIRS = (
    "/usr/include/x86_64-linux-gnu",
    "/usr/include/aarch64-linux-gnu",
    "/usr/local/tensorrt/include",
    "/opt/tensorrt/include",
    "/usr/local/TensorRT/include",
)


@dataclass(frozen=True)
class PluginTarget:
    include_dir: Path
    major: int

    @property
    def library(self) -> str:
        return f"libtorch_mish_trt{self.major}.so"


def tensorrt_major(include_dir: Path) -> int | None:
    header = include_dir / "NvInferVersion.h"
    if not (include_dir / "NvInfer.h").exists() or not header.exists():
        return None
    match = re.search(r"#define\s+TRT_MAJOR_ENTERPRISE\s+(\d+)", header.read_text())
    match = match or re.search(r"#define\s+NV_TENSORRT_MAJOR\s+(\d+)", header.read_text())
    return int(match.group(1)) if match else None


def plugin_targets(with_cuda: bool) -> list[PluginTarget]:
    """The plugin libraries this build will make: one per TensorRT major version found."""
    if not with_cuda:
        return []
    explicit = os.environ.get("TENSORRT_INCLUDE_DIR")
    candidates = explicit.split(os.pathsep) if explicit else DEFAULT_INCLUDE_DIRS
    targets: dict[int, PluginTarget] = {}
    for entry in filter(None, candidates):
        path = Path(entry).expanduser().resolve()
        major = tensorrt_major(path)
        if major is None:
            if explicit:
                raise SystemExit(f"TENSORRT_INCLUDE_DIR entry {entry} has no NvInfer.h / NvInferVersion.h")
            continue
        if major < 10:
            raise SystemExit(f"TensorRT headers in {path} are version {major}: the plugin needs IPluginV3 (10.0+)")
        targets.setdefault(major, PluginTarget(path, major))
    return sorted(targets.values(), key=lambda t: t.major)


def gencode_flags(arch_list: str) -> list[str]:
    flags = []
    for arch in filter(None, re.split(r"[;\s]+", arch_list)):
        ptx = arch.endswith("+PTX")
        num = arch.removesuffix("+PTX").replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def build_plugins(out_dir: Path, with_cuda: bool, log: Callable[[str], None]) -> list[Path]:
    targets = plugin_targets(with_cuda)
    if not targets:
        return []
    nvcc = str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    arch = gencode_flags(os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0+PTX"))
    debug = os.environ.get("TORCH_MISH_DEBUG") == "1"
    common = ["-std=c++17", "-Xcompiler", "-fPIC,-fvisibility=hidden", *(["-G", "-g"] if debug else ["-O3"])]
    build_dir = CSRC.parent / "build" / "trt"
    build_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    kernel_obj = build_dir / "mish_launch.o"
    log(f"compiling the Mish kernel for the TensorRT plugin ({' '.join(arch)})")
    subprocess.run(
        [nvcc, *common, *arch, "-c", str(CSRC / "kernels" / "mish_launch.cu"), "-o", str(kernel_obj)], check=True
    )
    built = []
    for target in targets:
        lib = out_dir / target.library
        log(f"building {lib.name} against TensorRT {target.major} headers in {target.include_dir}")
        subprocess.run(
            [
                nvcc,
                *common,
                *arch,
                "-shared",
                "-isystem",
                str(target.include_dir),
                "-I",
                str(CSRC),
                str(HERE / "mish_plugin.cpp"),
                str(kernel_obj),
                "-o",
                str(lib),
            ],
            check=True,
        )
        built.append(lib)
    return built
