"""The DarknetNMS plugin through TensorRT's own loading protocol (getCreators, setLoggerFinder), without
a TensorRT runtime: creator, fields, serialization round trip, build-time API, error reporting; and,
on a GPU, enqueue against the torch op (the same launcher: the same bits)."""

from __future__ import annotations

import ctypes
import math
import struct

import numpy as np
import pytest
import torch
from helpers import requires_cuda
from tensorrt_helpers import random_rows

# TensorRT enum values (NvInferRuntimeBase.h / NvInferPluginBase.h), stable across 10.x and 11.x.
K_FLOAT, K_HALF, K_INT8, K_INT32, K_BOOL, K_BF16, K_INT64 = 0, 1, 2, 3, 4, 7, 8
K_LINEAR, K_CHW2 = 0, 1
FIELD_FLOAT32, FIELD_INT32, FIELD_CHAR = 1, 5, 6
BUILD, RUNTIME = 0, 1
NAME, VERSION, NAMESPACE = "DarknetNMS", "1", "torch_mish"
KINDS = ("default", "greedynms", "diounms")
OUTPUT_TYPES = [K_INT32, K_FLOAT, K_FLOAT, K_INT32]  # num_dets, det_boxes, det_scores, det_classes
FIELD_TYPES = {
    "format_version": FIELD_INT32,
    "conf_thresh": FIELD_FLOAT32,
    "iou_thresh": FIELD_FLOAT32,
    "max_det": FIELD_INT32,
    "kind": FIELD_CHAR,
    "beta": FIELD_FLOAT32,
    "net_width": FIELD_FLOAT32,
    "net_height": FIELD_FLOAT32,
}


def field(name: str, value: object, field_type: int | None = None, length: int | None = None) -> tuple:
    """A plugin field for the harness: ints as kINT32, floats as kFLOAT32, str as kCHAR with its NUL."""
    if isinstance(value, str):
        raw = value.encode() + b"\0"
        data = ctypes.create_string_buffer(raw, len(raw))
        return (name, FIELD_CHAR if field_type is None else field_type, data, len(raw) if length is None else length)
    kind = field_type if field_type is not None else (FIELD_INT32 if isinstance(value, int) else FIELD_FLOAT32)
    data = ctypes.pointer(ctypes.c_int32(value) if kind == FIELD_INT32 else ctypes.c_float(value))
    return (name, kind, data, 1 if length is None else length)


def random_args(gen: torch.Generator) -> dict[str, object]:
    u = torch.rand(6, generator=gen, dtype=torch.float64).tolist()
    return {
        "conf_thresh": u[0],
        "iou_thresh": u[1],
        "max_det": int(torch.randint(1, 5000, (1,), generator=gen)),
        "kind": KINDS[int(torch.randint(0, 3, (1,), generator=gen))],
        "beta": 2 * u[2],
        "net_width": 32 + 1000 * u[3],
        "net_height": 32 + 1000 * u[4],
    }


def fields_of(args: dict[str, object]) -> list[tuple]:
    return [field(k, v) for k, v in args.items()]


def decode(fields: dict[str, tuple[int, bytes]]) -> dict[str, object]:
    """Serialized fields as Python values (float32 values as the float32 they hold)."""
    out: dict[str, object] = {}
    for name, (ftype, raw) in fields.items():
        if ftype == FIELD_CHAR:
            out[name] = raw
        elif ftype == FIELD_INT32:
            (out[name],) = struct.unpack("<i", raw)
        else:
            (out[name],) = struct.unpack("<f", raw)
    return out


def as_float32(v: float) -> float:
    return float(np.float32(v))


@pytest.fixture
def nms(harness):  # noqa: ANN001, ANN201
    """(harness, the DarknetNMS creator)."""
    return harness, harness.creator(NAME)


def test_creator_identity_and_fields(nms) -> None:  # noqa: ANN001
    harness, creator = nms
    from torch_mish import _plugin_identity as identity  # not torch_mish.tensorrt: no torch-tensorrt needed

    expected = (identity.NMS_PLUGIN_NAME, identity.NMS_PLUGIN_VERSION, identity.PLUGIN_NAMESPACE)
    assert expected == (NAME, VERSION, NAMESPACE)
    assert dict(harness.creator_fields(creator)) == FIELD_TYPES
    p = harness.create_with(creator, BUILD, fields_of({"conf_thresh": 0.25, "iou_thresh": 0.45, "max_det": 300}))
    assert p, harness.take_log()
    assert harness.lib.h_plugin_name(p) == NAME.encode()
    assert harness.lib.h_num_outputs(p) == 4
    harness.lib.h_destroy(p)
    # The library's other plugin is still the harness's default creator.
    assert harness.lib.h_creator_name() == b"TorchMish"


def test_serialized_fields_round_trip(nms, gen) -> None:  # noqa: ANN001
    """Every field comes back with the value given (as float32 / int32 / the kind's name), through
    getFieldsToSerialize -> createPlugin(kRUNTIME) and through clone."""
    harness, creator = nms
    for _ in range(20):
        args = random_args(gen)
        p = harness.create_with(creator, BUILD, fields_of(args))
        assert p, harness.take_log()
        written = harness.serialized_fields(p)
        assert {k: t for k, (t, _) in written.items()} == FIELD_TYPES
        values = decode(written)
        expected = {k: (as_float32(v) if isinstance(v, float) else v) for k, v in args.items()}
        expected["kind"] = args["kind"].encode() + b"\0"
        assert values == {**expected, "format_version": 1}
        rebuilt = harness.lib.h_roundtrip(p)
        assert rebuilt, harness.take_log()
        clone = harness.lib.h_clone(rebuilt)
        assert clone, harness.take_log()
        assert decode(harness.serialized_fields(rebuilt)) == values
        assert decode(harness.serialized_fields(clone)) == values
        for q in (p, rebuilt, clone):
            harness.lib.h_destroy(q)


def test_build_fields_default_as_the_op(nms) -> None:  # noqa: ANN001
    """Building needs conf_thresh, iou_thresh and max_det; the rest default to the op's defaults
    (what TensorRT's ONNX parser relies on for attributes a node leaves out)."""
    harness, creator = nms
    p = harness.create_with(creator, BUILD, fields_of({"max_det": 7, "iou_thresh": 0.5, "conf_thresh": 0.1}))
    assert p, harness.take_log()
    values = decode(harness.serialized_fields(p))
    harness.lib.h_destroy(p)
    assert values["kind"] == b"default\0"
    assert values["beta"] == as_float32(0.6)
    assert (values["net_width"], values["net_height"]) == (1.0, 1.0)
    assert (values["max_det"], values["conf_thresh"], values["iou_thresh"]) == (7, as_float32(0.1), 0.5)


@pytest.mark.parametrize("nul", [True, False], ids=["with-nul", "without-nul"])
def test_kind_text_with_or_without_terminator(nms, nul: bool) -> None:  # noqa: ANN001
    harness, creator = nms
    kind = field("kind", "diounms", length=8 if nul else 7)
    p = harness.create_with(creator, BUILD, [*fields_of({"conf_thresh": 0.2, "iou_thresh": 0.4, "max_det": 5}), kind])
    assert p, harness.take_log()
    assert decode(harness.serialized_fields(p))["kind"] == b"diounms\0"
    harness.lib.h_destroy(p)


REQUIRED = {"conf_thresh": 0.25, "iou_thresh": 0.45, "max_det": 100}
ALL = {**REQUIRED, "kind": "greedynms", "beta": 0.6, "net_width": 608.0, "net_height": 608.0, "format_version": 1}


def _without(args: dict, name: str) -> list[tuple]:
    return fields_of({k: v for k, v in args.items() if k != name})


def _with(args: dict, name: str, value: object, **kw: object) -> list[tuple]:
    return [*_without(args, name), field(name, value, **kw)]


@pytest.mark.parametrize(
    ("phase", "fields", "message"),
    [
        (BUILD, _without(REQUIRED, "conf_thresh"), "missing field 'conf_thresh'"),
        (BUILD, _without(REQUIRED, "max_det"), "missing field 'max_det'"),
        *[(RUNTIME, _without(ALL, k), f"missing field '{k}' when deserializing") for k in ALL],
        (BUILD, [*fields_of(REQUIRED), field("bogus", 1)], "unknown field 'bogus'"),
        (BUILD, [*fields_of(REQUIRED), field("max_det", 3)], "field 'max_det' given twice"),
        (BUILD, _with(REQUIRED, "conf_thresh", 1, field_type=FIELD_INT32), "'conf_thresh' must be one kFLOAT32"),
        (BUILD, _with(REQUIRED, "max_det", 3.0, field_type=FIELD_FLOAT32), "'max_det' must be one kINT32"),
        (BUILD, _with(REQUIRED, "iou_thresh", 0.5, length=2), "'iou_thresh' must be one kFLOAT32"),
        (BUILD, [*_without(REQUIRED, "iou_thresh"), ("iou_thresh", FIELD_FLOAT32, None, 1)], "no data"),
        (BUILD, [*fields_of(REQUIRED), field("kind", 2)], "'kind' must be a kCHAR string"),
        (BUILD, [*fields_of(REQUIRED), field("kind", "nms")], "unknown kind 'nms'"),
        (RUNTIME, _with(ALL, "format_version", 2), "format version 2"),
        (BUILD, _with(REQUIRED, "conf_thresh", 1.5), "conf_thresh must be in [0, 1], got 1.5"),
        (BUILD, _with(REQUIRED, "conf_thresh", -0.25), "conf_thresh must be in [0, 1], got -0.25"),
        (BUILD, _with(REQUIRED, "iou_thresh", math.nan), "iou_thresh must be in [0, 1], got nan"),
        (BUILD, _with(REQUIRED, "iou_thresh", 1.25), "iou_thresh must be in [0, 1], got 1.25"),
        (BUILD, _with(REQUIRED, "max_det", 0), "max_det must be at least 1, got 0"),
        (BUILD, [*fields_of(REQUIRED), field("beta", -0.5)], "beta must be finite and >= 0, got -0.5"),
        (BUILD, [*fields_of(REQUIRED), field("beta", math.inf)], "beta must be finite and >= 0, got inf"),
        (BUILD, [*fields_of(REQUIRED), field("net_width", 0.0)], "net_width and net_height must be finite and > 0"),
        (BUILD, [*fields_of(REQUIRED), field("net_height", -1.0)], "net_width and net_height must be finite and > 0"),
    ],
)
def test_malformed_fields_return_null_and_say_why(nms, phase, fields, message) -> None:  # noqa: ANN001
    harness, creator = nms
    harness.take_log()
    assert not harness.create_with(creator, phase, fields)
    log = harness.take_log()
    assert message in log and "torch_mish::DarknetNMS" in log, log


def test_build_api(nms, gen) -> None:  # noqa: ANN001
    """Types, formats, shapes (the batch passes through, K = max_det), configure and workspace."""
    harness, creator = nms
    args = {**random_args(gen), "max_det": 37}
    p = harness.create_with(creator, BUILD, fields_of(args))
    assert p, harness.take_log()
    for t in (K_FLOAT, K_HALF, K_BF16):
        assert harness.output_types_io(p, [t], 4) == OUTPUT_TYPES
        io = [(t, K_LINEAR)] + [(o, K_LINEAR) for o in OUTPUT_TYPES]
        assert all(harness.supports_io(p, pos, 1, io) for pos in range(5))
    for t in (K_INT8, K_INT32, K_BOOL, K_INT64):
        assert harness.output_types_io(p, [t], 4) is None
        assert "not supported" in harness.take_log()
        assert not harness.supports_io(p, 0, 1, [(t, K_LINEAR)] + [(o, K_LINEAR) for o in OUTPUT_TYPES])
    good = [(K_HALF, K_LINEAR)] + [(o, K_LINEAR) for o in OUTPUT_TYPES]
    for pos in range(1, 5):  # each output's type is fixed, whatever the input's
        wrong = list(good)
        wrong[pos] = (K_HALF if OUTPUT_TYPES[pos - 1] != K_HALF else K_FLOAT, K_LINEAR)
        assert not harness.supports_io(p, pos, 1, wrong)
    assert not harness.supports_io(p, 0, 1, [(K_HALF, K_CHW2)] + good[1:]), "linear format only"
    assert not harness.supports_io(p, 5, 1, good) and not harness.supports_io(p, 0, 1, good[:4])

    k = 37
    assert harness.output_shapes_io(p, [(-1, 300, 8)], 4) == [(-1, 1), (-1, k, 4), (-1, k), (-1, k)]
    assert harness.output_shapes_io(p, [(3, 300, 85)], 4) == [(3, 1), (3, k, 4), (3, k), (3, k)]
    assert harness.output_shapes_io(p, [(3, 300)], 4) is None and "rank 3" in harness.take_log()

    def io(batch: int, rows: int, width: int, t: int = K_HALF) -> tuple[list, list]:
        outs = [(K_INT32, (batch, 1)), (K_FLOAT, (batch, k, 4)), (K_FLOAT, (batch, k)), (K_INT32, (batch, k))]
        return [(t, (batch, rows, width))], outs

    assert harness.configure_io(p, *io(2, 300, 85)) == 0
    assert harness.configure_io(p, *io(2, 300, 5)) != 0 and "at least one class" in harness.take_log()
    assert harness.configure_io(p, *io(2, 300, 85, K_INT32)) != 0 and "not supported" in harness.take_log()
    bad_out = io(2, 300, 85)
    bad_out[1][3] = (K_FLOAT, (2, k))
    assert harness.configure_io(p, *bad_out) != 0 and "output 3 has type kFLOAT" in harness.take_log()
    sizes = [harness.workspace_io(p, *io(b, r, 85)) for b, r in ((1, 300), (2, 300), (2, 6000))]
    assert 0 < sizes[0] < sizes[1] < sizes[2]
    harness.lib.h_destroy(p)


def test_registers_with_tensorrt_registry(trt, plugin_library) -> None:  # noqa: ANN001
    """The converter's own field list makes a plugin in TensorRT's registry; a bad one does not."""
    import torch_mish.tensorrt as mt
    from torch_mish.tensorrt.nms import NmsArgs, nms_plugin_fields

    assert plugin_library.exists()
    creator = trt.get_plugin_registry().get_creator(NAME, VERSION, NAMESPACE)
    assert creator is not None and mt.plugin.nms_plugin_available()
    args = NmsArgs(0.25, 0.45, 300, "diounms", 0.6, 640.0, 512.0)
    assert creator.create_plugin("nms", trt.PluginFieldCollection(nms_plugin_fields(args)), trt.TensorRTPhase.BUILD)
    bad = NmsArgs(0.25, 1.5, 300, "diounms", 0.6, 640.0, 512.0)
    assert (
        creator.create_plugin("nms", trt.PluginFieldCollection(nms_plugin_fields(bad)), trt.TensorRTPhase.BUILD) is None
    )


# --- enqueue on the GPU: the op's launcher, the op's bits ------------------------------------------

TORCH_TO_TRT = {torch.float32: K_FLOAT, torch.float16: K_HALF, torch.bfloat16: K_BF16}
CASES = [  # (batch, rows, classes, max_det)
    (2, 300, 3, 50),
    (1, 2535, 80, 300),  # yolov4-tiny at 416: 2535 rows
    (3, 17, 1, 40),  # more slots than candidates: rows past num_dets stay zero
    (4, 1000, 5, 7),  # more detections than max_det
    (0, 10, 2, 5),
]


def _enqueue(harness, creator, rows: torch.Tensor, args: dict[str, object]) -> tuple[int, list[torch.Tensor]]:  # noqa: ANN001
    n, r, width = rows.shape
    k = int(args["max_det"])
    p = harness.create_with(creator, BUILD, fields_of(args))
    assert p, harness.take_log()
    # Poisoned outputs: every element must be written.
    outs = [
        torch.full((n, 1), -7, dtype=torch.int32, device="cuda"),
        torch.full((n, k, 4), math.nan, device="cuda"),
        torch.full((n, k), math.nan, device="cuda"),
        torch.full((n, k), -7, dtype=torch.int32, device="cuda"),
    ]
    specs_in = [(TORCH_TO_TRT[rows.dtype], (n, r, width))]
    specs_out = [(t, tuple(o.shape)) for t, o in zip(OUTPUT_TYPES, outs, strict=True)]
    assert harness.configure_io(p, specs_in, specs_out) == 0, harness.take_log()
    workspace = torch.empty(harness.workspace_io(p, specs_in, specs_out), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        rc = harness.enqueue_io(
            p, specs_in, specs_out, [rows.data_ptr()], [o.data_ptr() for o in outs], workspace.data_ptr(),
            stream.cuda_stream,
        )  # fmt: skip
    stream.synchronize()
    harness.lib.h_destroy(p)
    return rc, outs


@requires_cuda
@pytest.mark.parametrize("dtype", list(TORCH_TO_TRT))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_enqueue_matches_the_op_bit_for_bit(nms, dtype, kind, case, gen) -> None:  # noqa: ANN001
    """attachToContext, onShapeChange, enqueue on a non-default stream: the op's outputs, exactly."""
    harness, creator = nms
    batch, num_rows, classes, max_det = case
    net = (608.0, 416.0)
    rows = random_rows(batch, num_rows, classes, gen, net).to(device="cuda", dtype=dtype)
    args = {"conf_thresh": 0.25, "iou_thresh": 0.45, "max_det": max_det, "kind": kind, "beta": 0.75,
            "net_width": net[0], "net_height": net[1]}  # fmt: skip
    rc, got = _enqueue(harness, creator, rows, args)
    assert rc == 0, harness.take_log()
    expected = torch.ops.mish.darknet_nms(rows, 0.25, 0.45, max_det, kind, 0.75, *net)
    for name, e, g in zip(("num_dets", "det_boxes", "det_scores", "det_classes"), expected, got, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape, name
        assert torch.equal(g, e), f"{name} differs from the op ({kind}, {dtype}, {case})"
    if batch:
        assert int(got[0].max()) > 0, "the case should produce detections"


@requires_cuda
def test_enqueue_refuses_unsupported_type(nms) -> None:  # noqa: ANN001
    harness, creator = nms
    p = harness.create_with(creator, BUILD, fields_of(REQUIRED))
    rows = torch.zeros(1, 4, 7, dtype=torch.int32, device="cuda")
    specs_out = [(K_INT32, (1, 1)), (K_FLOAT, (1, 100, 4)), (K_FLOAT, (1, 100)), (K_INT32, (1, 100))]
    rc = harness.enqueue_io(p, [(K_INT32, (1, 4, 7))], specs_out, [rows.data_ptr()], [rows.data_ptr()] * 4, None, None)
    harness.lib.h_destroy(p)
    log = harness.take_log()  # refused when the shapes are set (onShapeChange), before any launch
    assert rc != 0 and "kINT32" in log and "kFLOAT, kHALF or kBF16" in log, log
