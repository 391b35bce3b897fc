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


@pytest.fixture(scope="session")
def trt_runtime(trt):  # noqa: ANN001, ANN201
    from torch_mish.tensorrt.support import engine_runtime_unavailable_reason

    reason = engine_runtime_unavailable_reason()
    if reason:
        pytest.skip(f"no TensorRT runtime that runs engines here: {reason}")
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
        pytest.skip(f"no plugin library for this TensorRT: {exc}")
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
        self._declare_io_functions()
        if c.h_load(plugin_lib.encode()) != 0:
            raise RuntimeError(f"harness could not load {plugin_lib}: {c.h_last_error().decode()}")
        self._keep: list[object] = []

    def _declare_io_functions(self) -> None:
        """The functions that take a creator or any number of inputs and outputs (DarknetNMS)."""
        c, p, i, i64 = self.lib, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        ip, i64p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int64)
        strs, ptrs = ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_void_p)
        c.h_find_creator.restype, c.h_find_creator.argtypes = p, [ctypes.c_char_p]
        c.h_creator_fields.argtypes = [p, strs, ip, i]
        c.h_create_with.restype, c.h_create_with.argtypes = p, [p, i, i, strs, ip, ptrs, ip]
        c.h_serialized_fields.argtypes = [p, strs, ip, ip, ptrs, i]
        c.h_supports_io.argtypes = [p, i, i, i, ip, ip]
        c.h_output_types_io.argtypes = [p, i, ip, i, ip]
        c.h_output_shapes_io.argtypes = [p, i, ip, i64p, i, ip, i64p]
        tensors = [i, ip, ip, i64p]  # count, types, ranks, dims (MAX_RANK per tensor)
        c.h_configure_io.argtypes = [p, *tensors, *tensors]
        c.h_workspace_io.restype, c.h_workspace_io.argtypes = i64, [p, *tensors, *tensors]
        c.h_enqueue_io.argtypes = [p, *tensors, *tensors, ptrs, ptrs, p, p]

    def take_log(self) -> str:
        return self.lib.h_take_log().decode()

    def create(self, phase: int, fields: list[tuple[str, int, object, int]] | None = None) -> int | None:
        """createPlugin on the library's first creator (TorchMish); fields as for ``create_with``."""
        return self.create_with(self.creator(self.lib.h_creator_name().decode()), phase, fields or [])

    @staticmethod
    def dims(shape: tuple[int, ...]) -> ctypes.Array:
        return (ctypes.c_int64 * max(len(shape), 1))(*shape)

    # --- any creator, any number of inputs and outputs ----------------------------------------

    MAX_RANK = 8  # plugin_harness.cpp's kMaxRank

    def creator(self, name: str) -> int:
        found = self.lib.h_find_creator(name.encode())
        assert found, f"no creator {name!r} in the library"
        return found

    def creator_fields(self, creator: int) -> list[tuple[str, int]]:
        names, types = (ctypes.c_char_p * 32)(), (ctypes.c_int * 32)()
        n = self.lib.h_creator_fields(creator, names, types, 32)
        return [(names[k].decode(), types[k]) for k in range(n)]

    def create_with(self, creator: int, phase: int, fields: list[tuple[str, int, object, int]]) -> int | None:
        """createPlugin on ``creator``; fields: (name, PluginFieldType value, ctypes data or None, length)."""
        n = len(fields)
        names = (ctypes.c_char_p * max(n, 1))(*[f[0].encode() for f in fields])
        types = (ctypes.c_int * max(n, 1))(*[f[1] for f in fields])
        data = (ctypes.c_void_p * max(n, 1))(
            *[ctypes.cast(f[2], ctypes.c_void_p) if f[2] is not None else None for f in fields]
        )
        lengths = (ctypes.c_int * max(n, 1))(*[f[3] for f in fields])
        self._keep.extend(f[2] for f in fields)
        return self.lib.h_create_with(creator, phase, n, names, types, data, lengths)

    def serialized_fields(self, plugin: int) -> dict[str, tuple[int, bytes]]:
        """getFieldsToSerialize(): name -> (PluginFieldType value, the field's bytes)."""
        sizes = {0: 2, 1: 4, 2: 8, 3: 1, 4: 2, 5: 4, 6: 1, 9: 2, 10: 8}  # bytes per element, by PluginFieldType
        names, types, lengths = (ctypes.c_char_p * 32)(), (ctypes.c_int * 32)(), (ctypes.c_int * 32)()
        data = (ctypes.c_void_p * 32)()
        n = self.lib.h_serialized_fields(plugin, names, types, lengths, data, 32)
        assert n >= 0, self.take_log()
        return {
            names[k].decode(): (types[k], ctypes.string_at(data[k], lengths[k] * sizes[types[k]])) for k in range(n)
        }

    def _tensors(self, specs: list[tuple[int, tuple[int, ...]]]) -> list:
        """(count, types, ranks, dims) for tensors given as (TensorRT type value, shape)."""
        n = len(specs)
        dims = [0] * (self.MAX_RANK * max(n, 1))
        for k, (_, shape) in enumerate(specs):
            dims[k * self.MAX_RANK : k * self.MAX_RANK + len(shape)] = shape
        return [
            n,
            (ctypes.c_int * max(n, 1))(*[t for t, _ in specs]),
            (ctypes.c_int * max(n, 1))(*[len(shape) for _, shape in specs]),
            (ctypes.c_int64 * len(dims))(*dims),
        ]

    def supports_io(self, plugin: int, pos: int, nb_in: int, io: list[tuple[int, int]]) -> bool:
        """supportsFormatCombination at ``pos`` for tensors given as (type, format)."""
        types = (ctypes.c_int * len(io))(*[t for t, _ in io])
        formats = (ctypes.c_int * len(io))(*[f for _, f in io])
        return self.lib.h_supports_io(plugin, pos, nb_in, len(io) - nb_in, types, formats) == 1

    def output_types_io(self, plugin: int, in_types: list[int], nb_out: int) -> list[int] | None:
        out = (ctypes.c_int * nb_out)()
        rc = self.lib.h_output_types_io(plugin, len(in_types), (ctypes.c_int * len(in_types))(*in_types), nb_out, out)
        return list(out) if rc == 0 else None

    def output_shapes_io(self, plugin: int, shapes: list[tuple[int, ...]], nb_out: int) -> list[tuple[int, ...]] | None:
        """getOutputShapes for input shapes (-1: a dimension unknown when building)."""
        _, _, ranks, dims = self._tensors([(0, s) for s in shapes])
        out_ranks = (ctypes.c_int * nb_out)()
        out_dims = (ctypes.c_int64 * (self.MAX_RANK * nb_out))()
        rc = self.lib.h_output_shapes_io(plugin, len(shapes), ranks, dims, nb_out, out_ranks, out_dims)
        if rc != 0:
            return None
        return [tuple(out_dims[k * self.MAX_RANK : k * self.MAX_RANK + out_ranks[k]]) for k in range(nb_out)]

    def configure_io(self, plugin: int, inputs: list, outputs: list) -> int:
        return self.lib.h_configure_io(plugin, *self._tensors(inputs), *self._tensors(outputs))

    def workspace_io(self, plugin: int, inputs: list, outputs: list) -> int:
        return self.lib.h_workspace_io(plugin, *self._tensors(inputs), *self._tensors(outputs))

    def enqueue_io(self, plugin: int, inputs: list, outputs: list, in_ptrs, out_ptrs, workspace, stream) -> int:  # noqa: ANN001
        ins = (ctypes.c_void_p * len(in_ptrs))(*in_ptrs)
        outs = (ctypes.c_void_p * len(out_ptrs))(*out_ptrs)
        return self.lib.h_enqueue_io(
            plugin, *self._tensors(inputs), *self._tensors(outputs), ins, outs, workspace, stream
        )


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
        pytest.skip("torch_mish was built without TensorRT headers (set TENSORRT_INCLUDE_DIR and rebuild)")
    include_dir = built_plugins()[lib]
    so = _compile_harness(include_dir, tmp_path_factory.mktemp(Path(lib).stem))
    return Harness(so, lib)
