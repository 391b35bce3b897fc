"""Fixtures for the TensorRT tests: torch_tensorrt (optional), the plugin test harness, and what
this machine can prove (build networks/engines: always with TensorRT-RTX; run engines: only with a
TensorRT runtime that supports the GPU)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import torch_mish

HERE = Path(__file__).resolve().parent
NO_PLUGIN_BUILT = "torch_mish was built without TensorRT headers (set TENSORRT_INCLUDE_DIR and rebuild)"


@pytest.fixture(scope="session")
def trt_runtime(trt):  # noqa: ANN001, ANN201
    from torch_mish.tensorrt.support import engine_runtime_unavailable_reason

    reason = engine_runtime_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return trt


@pytest.fixture(scope="session")
def plugin_layers(trt):  # noqa: ANN001, ANN201
    """Skip where networks cannot hold plugin layers (TensorRT-RTX 1.6's API has no add_plugin_v3)."""
    from torch_mish.tensorrt.support import can_add_plugin_layers

    if not can_add_plugin_layers():
        pytest.skip(f"{trt.__name__} {trt.__version__} cannot add plugin layers to a network (needs full TensorRT)")
    return trt


@pytest.fixture(scope="session")
def plugin_library(trt) -> Path:  # noqa: ANN001
    """The plugin library for the installed TensorRT, registered with its registry. Skips, as the
    harness does, where the build made none for it (built without its headers); a library that exists
    and fails to register is a failure."""
    import torch_mish.tensorrt as mt

    try:
        mt.plugin_library_path()
    except mt.PluginUnavailableError as exc:
        pytest.skip(str(exc))
    return mt.load_plugin()


def built_plugins() -> dict[str, str]:
    """Plugin library path -> the TensorRT include folder it was compiled against."""
    info = torch_mish.build_info()
    lib_dir = Path(torch_mish.__file__).resolve().parent / "lib"
    return {str(lib_dir / name): inc for name, inc in (info.get("tensorrt_include_dirs") or {}).items()}


class Harness:
    """ctypes view of tests/tensorrt/plugin_harness.cpp loaded with one plugin library."""

    def __init__(self, so: Path, plugin_lib: str) -> None:
        self.lib = ctypes.CDLL(str(so))
        c = self.lib
        c.h_load.argtypes = [ctypes.c_char_p]
        for fn in ("h_last_error", "h_take_log", "h_creator_name", "h_creator_version", "h_creator_namespace"):
            getattr(c, fn).restype = ctypes.c_char_p
        c.h_plugin_name.restype = ctypes.c_char_p
        c.h_plugin_name.argtypes = [ctypes.c_void_p]
        c.h_create.restype = ctypes.c_void_p
        c.h_create.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int),
        ]
        for fn in ("h_roundtrip", "h_clone"):
            getattr(c, fn).restype = ctypes.c_void_p
            getattr(c, fn).argtypes = [ctypes.c_void_p]
        c.h_destroy.argtypes = [ctypes.c_void_p]
        c.h_num_outputs.argtypes = [ctypes.c_void_p]
        c.h_workspace.argtypes = [ctypes.c_void_p]
        c.h_supports.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 5
        c.h_output_type.argtypes = [ctypes.c_void_p, ctypes.c_int]
        c.h_configure.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
        c.h_enqueue.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int64),
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        if c.h_load(plugin_lib.encode()) != 0:
            raise RuntimeError(f"harness could not load {plugin_lib}: {c.h_last_error().decode()}")
        self._keep: list[object] = []

    def take_log(self) -> str:
        return self.lib.h_take_log().decode()

    def create(self, phase: int, fields: list[tuple[str, int, object, int]] | None = None) -> int | None:
        """fields: (name, PluginFieldType value, ctypes data or None, length)."""
        fields = fields or []
        n = len(fields)
        names = (ctypes.c_char_p * max(n, 1))(*[f[0].encode() for f in fields])
        types = (ctypes.c_int * max(n, 1))(*[f[1] for f in fields])
        data = (ctypes.c_void_p * max(n, 1))(
            *[ctypes.cast(f[2], ctypes.c_void_p) if f[2] is not None else None for f in fields]
        )
        lengths = (ctypes.c_int * max(n, 1))(*[f[3] for f in fields])
        self._keep.extend(f[2] for f in fields)
        return self.lib.h_create(phase, n, names, types, data, lengths)

    @staticmethod
    def dims(shape: tuple[int, ...]) -> ctypes.Array:
        return (ctypes.c_int64 * max(len(shape), 1))(*shape)


def _compile_harness(include_dir: str, out: Path) -> Path:
    cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    cuda_inc = Path(cuda_home) / "include"
    if not (cuda_inc / "cuda_runtime_api.h").exists():
        pytest.skip(f"CUDA headers not found in {cuda_inc} (set CUDA_HOME)")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the plugin harness")
    so = out / "libplugin_harness.so"
    cmd = [
        cxx,
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-O1",
        "-isystem",
        include_dir,
        "-isystem",
        str(cuda_inc),
        str(HERE / "plugin_harness.cpp"),
        "-o",
        str(so),
        "-ldl",
    ]
    subprocess.run(cmd, check=True)
    return so


@pytest.fixture(scope="session", params=sorted(built_plugins()) or [None], ids=lambda p: Path(p).name if p else "none")
def harness(request, tmp_path_factory) -> Harness:  # noqa: ANN001
    lib = request.param
    if lib is None:
        pytest.skip(NO_PLUGIN_BUILT)
    include_dir = built_plugins()[lib]
    so = _compile_harness(include_dir, tmp_path_factory.mktemp(Path(lib).stem))
    return Harness(so, lib)
