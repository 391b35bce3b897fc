"""The TorchMish plugin library through TensorRT's own loading protocol (getCreators,
setLoggerFinder), without a TensorRT runtime: creator, fields, serialization, build-time API,
error reporting; and, on a GPU, enqueue against the float64 reference."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from helpers import assert_mish_close, mish_reference, random_inputs, requires_cuda

# TensorRT enum values (NvInferRuntimeBase.h / NvInferPluginBase.h), stable across 10.x and 11.x.
K_FLOAT, K_HALF, K_INT8, K_INT32, K_BOOL, K_BF16, K_INT64 = 0, 1, 2, 3, 4, 7, 8
K_LINEAR, K_CHW2, K_HWC8 = 0, 1, 2
FIELD_FLOAT32, FIELD_INT32, FIELD_CHAR = 1, 5, 6
BUILD, RUNTIME = 0, 1


def version_field(value: int = 1, field_type: int = FIELD_INT32, length: int = 1) -> tuple:
    data = ctypes.c_int32(value) if field_type == FIELD_INT32 else ctypes.c_float(value)
    return ("format_version", field_type, ctypes.pointer(data), length)


def test_creator_identity(harness) -> None:  # noqa: ANN001
    """The library reports the identity torch_mish/_plugin_identity.py defines (the build compiles it in)."""
    from torch_mish import _plugin_identity as ident

    h = harness.lib
    expected = (ident.PLUGIN_NAME, ident.PLUGIN_VERSION, ident.PLUGIN_NAMESPACE)
    assert (h.h_creator_name(), h.h_creator_version(), h.h_creator_namespace()) == tuple(v.encode() for v in expected)
    assert expected == ("TorchMish", "1", "torch_mish")  # what engines and ONNX files already name
    assert h.h_creator_field_count() == 1


def test_build_phase_plugin_and_its_build_api(harness) -> None:  # noqa: ANN001
    p = harness.create(BUILD)
    assert p, harness.take_log()
    h = harness.lib
    assert h.h_plugin_name(p) == b"TorchMish"
    assert h.h_num_outputs(p) == 1 and h.h_workspace(p) == 0
    for t in (K_FLOAT, K_HALF, K_BF16):
        assert h.h_supports(p, 0, t, K_LINEAR, t, K_LINEAR) == 1
        assert h.h_supports(p, 1, t, K_LINEAR, t, K_LINEAR) == 1
        assert h.h_output_type(p, t) == t
        assert h.h_configure(p, t, harness.dims((2, 3, 5)), 3) == 0
    assert h.h_supports(p, 1, K_FLOAT, K_LINEAR, K_HALF, K_LINEAR) == 0, "output must have the input's type"
    assert h.h_supports(p, 0, K_HALF, K_CHW2, K_HALF, K_CHW2) == 0, "linear format only"
    assert h.h_supports(p, 2, K_FLOAT, K_LINEAR, K_FLOAT, K_LINEAR) == 0
    for t in (K_INT8, K_INT32, K_BOOL, K_INT64):
        assert h.h_supports(p, 0, t, K_LINEAR, t, K_LINEAR) == 0
        assert h.h_output_type(p, t) == -1
        assert "not supported" in harness.take_log()
        assert h.h_configure(p, t, harness.dims((4,)), 1) != 0
        assert "unsupported" in harness.take_log()
    h.h_destroy(p)


def test_serialized_fields_round_trip(harness) -> None:  # noqa: ANN001
    p = harness.create(BUILD)
    rebuilt = harness.lib.h_roundtrip(p)
    assert rebuilt, harness.take_log()
    clone = harness.lib.h_clone(rebuilt)
    assert clone and harness.lib.h_plugin_name(clone) == b"TorchMish"
    for q in (p, rebuilt, clone):
        harness.lib.h_destroy(q)


@pytest.mark.parametrize(
    ("phase", "fields", "message"),
    [
        (RUNTIME, [], "missing field 'format_version'"),
        (BUILD, [("bogus", FIELD_INT32, ctypes.pointer(ctypes.c_int32(1)), 1)], "unknown field 'bogus'"),
        (RUNTIME, [version_field(1, FIELD_FLOAT32)], "must be one kINT32"),
        (RUNTIME, [version_field(1, FIELD_INT32, 2)], "must be one kINT32"),
        (RUNTIME, [("format_version", FIELD_INT32, None, 1)], "must be one kINT32"),
        (RUNTIME, [version_field(2)], "format version 2"),
    ],
    ids=["missing", "extra", "float", "two-values", "null-data", "future-version"],
)
def test_malformed_fields_return_null_and_say_why(harness, phase, fields, message) -> None:  # noqa: ANN001
    harness.take_log()
    assert not harness.create(phase, fields)
    assert message in harness.take_log()


def test_registers_with_tensorrt_registry(trt, plugin_library) -> None:  # noqa: ANN001
    import torch_mish.tensorrt as mt

    assert plugin_library.exists()
    creator = trt.get_plugin_registry().get_creator(mt.PLUGIN_NAME, mt.PLUGIN_VERSION, mt.PLUGIN_NAMESPACE)
    assert creator is not None
    plugin = creator.create_plugin("m", trt.PluginFieldCollection([]), trt.TensorRTPhase.BUILD)
    assert plugin is not None
    bad = trt.PluginFieldCollection([trt.PluginField("bogus", np.array([1], np.int32), trt.PluginFieldType.INT32)])
    assert creator.create_plugin("m", bad, trt.TensorRTPhase.BUILD) is None


TORCH_TO_TRT = {torch.float32: K_FLOAT, torch.float16: K_HALF, torch.bfloat16: K_BF16}
SHAPES = [(0,), (1,), (7,), (3, 5, 7), (2, 3, 33, 33), ((1 << 20) + 3,)]


@requires_cuda
@pytest.mark.parametrize("dtype", list(TORCH_TO_TRT))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
def test_enqueue_matches_float64(harness, dtype, shape, aligned, gen) -> None:  # noqa: ANN001
    """The runtime path (attachToContext, onShapeChange, enqueue) on a non-default stream."""
    n = int(np.prod(shape))
    base = random_inputs(n + 1, gen).to(device="cuda", dtype=dtype)
    x = (base[:n] if aligned else base[1:]).reshape(shape)
    y = torch.full_like(x, float("nan"))  # poisoned: every element must be written
    p = harness.create(BUILD)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        rc = harness.lib.h_enqueue(
            p, TORCH_TO_TRT[dtype], harness.dims(shape), len(shape), x.data_ptr(), y.data_ptr(), stream.cuda_stream
        )
    stream.synchronize()
    harness.lib.h_destroy(p)
    assert rc == 0, harness.take_log()
    assert_mish_close(y, mish_reference(x), f"plugin enqueue {dtype} {shape}")
    torch.testing.assert_close(y, torch.ops.mish.mish(x), rtol=0, atol=0)  # same launcher, same bits


@requires_cuda
def test_enqueue_refuses_unsupported_type(harness) -> None:  # noqa: ANN001
    x = torch.ones(8, device="cuda", dtype=torch.int32)
    p = harness.create(BUILD)
    rc = harness.lib.h_enqueue(p, K_INT32, harness.dims((8,)), 1, x.data_ptr(), x.data_ptr(), None)
    harness.lib.h_destroy(p)
    assert rc != 0 and "unsupported" in harness.take_log()
