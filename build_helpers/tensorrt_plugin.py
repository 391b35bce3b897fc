"""Build the TensorRT plugin libraries from csrc/trt (called from setup.py; plain nvcc, no torch, no
libnvinfer).

TensorRT headers: TENSORRT_INCLUDE_DIR (os.pathsep-separated) when set, else $TENSORRT_ROOT/include,
then where TensorRT's Debian/RPM packages and tar archives put them. The build says what it found.

One library per TensorRT major version whose headers are found, since ILogger / IPluginRegistry
changed layout between 10.x and 11.x: lib/libtorch_mish_trt<major>.so. The kernel objects (the
same launchers the torch op calls) are compiled once and linked into each, for the architectures the
torch op is compiled for, and the plugin identities (torch_mish/_plugin_identity.py) go in as -D
definitions.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
# Where TensorRT's packages and archives put NvInfer.h, searched when TENSORRT_INCLUDE_DIR is unset
# (after $TENSORRT_ROOT/include): Debian/Ubuntu packages (libnvinfer-dev), RPM packages, and the usual
# places the tar archive (TensorRT-<version>/include) is unpacked to.
SYSTEM_INCLUDE_DIRS = (
    "/usr/include/x86_64-linux-gnu",
    "/usr/include/aarch64-linux-gnu",
    "/usr/include/sbsa-linux-gnu",
    "/usr/include",
    "/usr/local/tensorrt/include",
    "/usr/local/TensorRT/include",
    "/opt/tensorrt/include",
    "/opt/TensorRT/include",
)
TAR_GLOBS = ("/usr/local/TensorRT-*/include", "/opt/TensorRT-*/include", "~/TensorRT-*/include")
# Every library holds every plugin (csrc/trt) and the launchers they call (csrc/kernels, compiled once).
PLUGIN_SOURCES = ("mish_plugin.cpp", "darknet_nms_plugin.cpp")
KERNEL_SOURCES = ("mish_launch.cu", "darknet_nms_launch.cu")


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


def candidate_include_dirs(environ: Mapping[str, str] = os.environ) -> tuple[list[str], str, bool]:
    """Folders to search for TensorRT headers, where the list came from, and whether the user named them."""
    explicit = environ.get("TENSORRT_INCLUDE_DIR")
    if explicit:
        return [e for e in explicit.split(os.pathsep) if e], "TENSORRT_INCLUDE_DIR", True
    dirs = []
    if environ.get("TENSORRT_ROOT"):
        dirs.append(str(Path(environ["TENSORRT_ROOT"]) / "include"))
    dirs += SYSTEM_INCLUDE_DIRS
    for pattern in TAR_GLOBS:
        dirs += sorted(glob.glob(os.path.expanduser(pattern)), reverse=True)  # newest version first
    return dirs, "$TENSORRT_ROOT/include and the system locations", False


def plugin_targets(with_cuda: bool, log: Callable[[str], None] = lambda _: None) -> list[PluginTarget]:
    """The plugin libraries this build will make: one per TensorRT major version found (first found wins)."""
    if not with_cuda:
        log("TensorRT plugin skipped: it needs the CUDA kernels")
        return []
    candidates, source, explicit = candidate_include_dirs()
    targets: dict[int, PluginTarget] = {}
    for entry in candidates:
        path = Path(entry).expanduser().resolve()
        major = tensorrt_major(path)
        if major is None:
            if explicit:
                raise SystemExit(f"TENSORRT_INCLUDE_DIR entry {entry} has no NvInfer.h / NvInferVersion.h")
            continue
        if major < 10:
            if explicit:
                raise SystemExit(f"TensorRT headers in {path} are version {major}: the plugin needs IPluginV3 (10.0+)")
            log(f"TensorRT {major} headers in {path} ignored: the plugin needs IPluginV3 (TensorRT 10.0+)")
            continue
        if major in targets:
            log(f"TensorRT {major} headers in {path} ignored: already using {targets[major].include_dir}")
            continue
        targets[major] = PluginTarget(path, major)
        log(f"TensorRT {major} headers found in {path} (from {source})")
    if not targets:
        log(
            f"TensorRT plugin skipped: no TensorRT 10+ headers (NvInfer.h) in {source} ("
            + ", ".join(candidates)
            + "); set TENSORRT_INCLUDE_DIR to the TensorRT include folder(s)"
        )
    return sorted(targets.values(), key=lambda t: t.major)


def build_plugins(
    out_dir: Path,
    targets: list[PluginTarget],
    arch: list[str],
    identity: Mapping[str, str | int],
    log: Callable[[str], None],
) -> list[Path]:
    """Compile the plugin libraries with ``arch``, the -gencode flags the torch op's CUDA sources get too,
    and ``identity`` (macro name -> value) defined for csrc/trt/plugin_identity.h."""
    if not targets:
        return []
    nvcc = str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    debug = os.environ.get("TORCH_MISH_DEBUG") == "1"
    common = ["-std=c++17", "-Xcompiler", "-fPIC,-fvisibility=hidden", *(["-G", "-g"] if debug else ["-O3"])]
    defines = [f"-D{name}={value}" for name, value in identity.items()]
    build_dir = ROOT / "build" / "trt"
    build_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    kernel_objs = [build_dir / Path(source).with_suffix(".o").name for source in KERNEL_SOURCES]
    for source, obj in zip(KERNEL_SOURCES, kernel_objs, strict=True):
        log(f"compiling {source} for the TensorRT plugins ({' '.join(arch)})")
        subprocess.run([nvcc, *common, *arch, "-c", str(CSRC / "kernels" / source), "-o", str(obj)], check=True)
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
                *defines,
                "-isystem",
                str(target.include_dir),
                "-I",
                str(CSRC),
                *(str(CSRC / "trt" / source) for source in PLUGIN_SOURCES),
                *map(str, kernel_objs),
                "-o",
                str(lib),
            ],
            check=True,
        )
        built.append(lib)
    return built
