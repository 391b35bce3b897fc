"""A source -> a TensorRT network (and engine) with the report build, inspect and triton give: the
library builds (torch_mish.tensorrt.inspect for models, torch_mish.tensorrt.network for ONNX files);
this module picks which, translates their errors into the command's spelling and reports."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import census, nms, sources
from torch_mish.cli.console import Console, first_line, import_tensorrt
from torch_mish.cli.options import ENGINE_SUFFIXES, EngineOptions, ModelOptions, UsageError

ENV_VAR = "TORCH_MISH_TRT_LOWERING"  # torch_mish.tensorrt.selection.ENV_VAR, without importing TensorRT
# What the command line changes where the library refuses an ONNX file (OnnxNetworkError.problem).
ONNX_FIXES = {
    "dtype": " (torch-mish export --dtype {dtype})",
    "batch": " (torch-mish export --batch MIN:OPT:MAX)",
    "shape": " (--image-size HxW)",
    "plugin_nodes": "; export without --plugin, or build with a TensorRT that supports plugins",
}


@dataclass
class Network:
    built: Any  # torch_mish.tensorrt.network.BuiltNetwork
    report: dict[str, Any]
    started: float  # time.perf_counter() when the conversion began (after loading the source)
    engine: bytes | None = None
    dry_run_text: str | None = None


def make(
    model: ModelOptions,
    engine: EngineOptions,
    console: Console,
    *,
    build_engine: bool,
    timing_cache: bytes | None = None,
) -> Network:
    """The network of ``model.source`` (an engine too with ``build_engine``), with a progress bar over
    its steps; ``timing_cache``: a TensorRT timing cache to start from (b"" for a new one). With
    ``model.detections`` (--nms), the model is in a Detector and the outputs are named after its four."""
    src = model.source
    if src.endswith(ENGINE_SUFFIXES):
        raise UsageError(f"{src}: already an engine; give a .cfg, .pt2, .onnx or module:factory")
    with console.steps(["load", "convert", "build engine" if build_engine else "network"]) as advance:
        if src.endswith(".onnx"):
            if model.detections is not None:
                raise UsageError(f"--nms: {src}'s outputs were fixed at export; export it with torch-mish export --nms")
            net = _from_onnx(model, engine, console, advance)
        else:
            net = _from_model(model, engine, console, advance, build_engine)
        if build_engine:
            nms.check_engine_build(net.built.layer_types())
            net.engine = net.built.build_serialized_engine(timing_cache=timing_cache)
        seconds = time.perf_counter() - net.started
        advance()
    mt, trt = import_tensorrt(console)
    plugin_layers = net.report["mish"]["lowering"] == "plugin" and net.report["mish"]["count"] > 0
    net.report.update(
        {
            "layers": net.built.network.num_layers,
            "layer_types": net.built.layer_types(),
            "precision": model.dtype,
            "precisions": net.built.precisions(),
            "strongly_typed": True,
            "inputs": net.built.inputs(),
            "outputs": net.built.outputs(),
            "profiles": [
                {name: dict(zip(("min", "opt", "max"), map(list, s), strict=True)) for name, s in p.items()}
                for p in net.built.profiles()
            ],
            "tensorrt": {"module": trt.__name__, "version": trt.__version__},
            "build_seconds": round(seconds, 3),
            "plugin_library": _plugin_library(mt) if plugin_layers else None,
            "runtime": _runtime_note(mt, trt),
        }
    )
    return net


def _from_model(
    model: ModelOptions,
    engine: EngineOptions,
    console: Console,
    advance: Callable[[], None],
    build_engine: bool,
) -> Network:
    mt, trt = import_tensorrt(console)
    import torch_tensorrt

    lowering = resolve_lowering(engine.lowering)
    source = sources.load(model, console)
    detections = model.detections
    if detections is not None:
        nms.check_tensorrt(source.model, detections, build_engine)
    batch = sources.resolve_batch(source, model.batch, console)  # as --image-size defaults to the program's size
    dtype = sources.torch_dtype(model.dtype)
    shape = (source.channels, *source.image_size)
    spec = torch_tensorrt.Input(
        min_shape=(batch[0], *shape), opt_shape=(batch[1], *shape), max_shape=(batch[2], *shape), dtype=dtype
    )
    settings = {"workspace_size": engine.workspace_mib * 2**20} if engine.workspace_mib else {}
    advance()
    started = time.perf_counter()
    try:
        with console.muted():
            coverage = mt.inspect.dry_run(
                sources.with_named_input(source.model.to(dtype)), spec, lowering=lowering, **settings
            )
    except mt.PluginUnavailableError as exc:
        chosen, fixes = [], []
        if lowering == "plugin":
            chosen.append(f"--lowering {lowering}" if engine.lowering else f"{ENV_VAR}={os.environ.get(ENV_VAR)}")
            fixes.append("--lowering native")
        if detections is not None and source.model.nms_kind != "default":
            chosen.append(nms.kind_text(source.model, detections))
            fixes.append("--nms-kind default")
        raise UsageError(
            f"{' and '.join(chosen)} cannot be built with {trt.__name__} {trt.__version__}: "
            f"{exc.reason.splitlines()[0]} Use {' and '.join(fixes)}."
        ) from None
    advance()
    if not coverage.fully_converted:
        raise RuntimeError(
            f"{coverage.supported_ops} of {coverage.total_ops} ops convert ({coverage.coverage:.1f}%) into "
            f"{coverage.engines} TensorRT engines; run `torch-mish inspect {model.source}` for the unsupported ops"
        )
    if detections is not None:
        coverage.network.name_outputs(nms.OUTPUT_NAMES)
    count = census.MishCount(coverage.mish_ops, coverage.aten_mish_ops, coverage.composed_mish_ops)
    if hint := census.convert_hint(count, source.kind):
        console.info(hint)
    report = {
        "source": source.name,
        "source_kind": source.kind,
        "coverage": {
            "total_ops": coverage.total_ops,
            "supported_ops": coverage.supported_ops,
            "percent": coverage.coverage,
            "trt_engines": coverage.engines,
            "fully_converted": coverage.fully_converted,
        },
        **census.report_fields(count, coverage.lowering),
    }
    if detections is not None:
        report["nms"] = nms.report_fields(source.model)
    return Network(coverage.network, report, started, dry_run_text=coverage.text)


def resolve_lowering(flag: str | None) -> str:
    """The lowering to build: --lowering, else TORCH_MISH_TRT_LOWERING, else the library's default
    (torch_mish.tensorrt.selection resolves all three, 'auto' included)."""
    from torch_mish.tensorrt.selection import resolve

    try:
        return resolve(flag)
    except ValueError as exc:
        raise UsageError(first_line(exc)) from None


def _from_onnx(model: ModelOptions, engine: EngineOptions, console: Console, advance: Callable[[], None]) -> Network:
    path = sources.check_exists(model.source)
    if engine.lowering:
        raise UsageError(
            "--lowering applies to model sources; an ONNX file's Mish lowering is fixed at export "
            "(torch-mish export --plugin for TorchMish nodes)"
        )
    if model.weights is not None:
        raise UsageError(f"--weights {model.weights}: darknet weights are for a .cfg source, not {path}")
    _, trt = import_tensorrt(console)
    from torch_mish.tensorrt.network import OnnxNetworkError, build_onnx_network

    counts = census.in_onnx(path)
    advance()
    started = time.perf_counter()
    try:
        built = build_onnx_network(
            path,
            batch=model.batch,
            image_size=model.image_size,
            dtype=sources.torch_dtype(model.dtype),
            workspace=engine.workspace_mib * 2**20 if engine.workspace_mib else None,
            # the parser's errors come back in its exception: one line unless --verbose
            logger=trt.Logger(trt.Logger.VERBOSE if console.verbose else trt.Logger.INTERNAL_ERROR),
        )
    except OnnxNetworkError as exc:
        raise UsageError(first_line(exc) + ONNX_FIXES.get(exc.problem, "").format(dtype=model.dtype)) from None
    advance()
    if counts["TorchMish"]:
        lowering = "plugin"
    elif counts["Mish"]:
        lowering = "native (ONNX Mish, imported by the parser)"
    else:
        lowering = "native (Softplus, Tanh, Mul in the ONNX file)"
    count = census.MishCount(counts["Mish"] + counts["TorchMish"], composed=counts["composed"])
    report = {
        "source": str(path),
        "source_kind": "onnx",
        "coverage": {"onnx_nodes": counts["nodes"], "parsed": True, "percent": 100.0, "trt_engines": 1},
        **census.report_fields(count, lowering),
    }
    return Network(built, report, started)


def _plugin_library(mt: Any) -> str | None:
    try:
        return str(mt.plugin_library_path())
    except mt.PluginUnavailableError:
        return None


def _runtime_note(mt: Any, trt: Any) -> str | None:
    reason = mt.engine_runtime_unavailable_reason()
    if reason is None:
        return None
    if trt.__name__.startswith("tensorrt_rtx"):
        return f"built for the RTX runtime, not run here: {reason}"
    return f"not run here: {reason}"


def read_timing_cache(path: Path | None) -> bytes | None:
    """--timing-cache: the file's bytes, b"" for a file not there yet (TensorRT starts an empty cache,
    as trtexec --timingCacheFile does), None without the flag."""
    if path is None:
        return None
    return path.read_bytes() if path.is_file() else b""


def summary_line(report: dict[str, Any]) -> str:
    """What was built, one line: engine size, TensorRT, time, coverage, Mish, layers, precision, batch."""
    profile = report["profiles"][0] if report["profiles"] else None
    batch = "static"
    if profile:
        s = next(iter(profile.values()))
        batch = f"batch {s['min'][0]}/{s['opt'][0]}/{s['max'][0]} (min/opt/max)"
    mish = census.summary(census_of(report), report["mish"]["lowering"])
    return (
        f"wrote {report['engine']} ({report['engine_bytes'] / 2**20:.1f} MiB, {report['tensorrt']['module']} "
        f"{report['tensorrt']['version']}, {report['build_seconds']:.1f} s): {report['coverage']['percent']:.0f}% "
        f"converted, {mish}, {report['layers']} layers, {report['precision']}, {batch}"
    )


def census_of(report: dict[str, Any]) -> census.MishCount:
    return census.MishCount(report["mish"]["count"], report.get("aten_mish", 0), report.get("composed_mish", 0))


def runtime_lines(report: dict[str, Any], console: Console) -> None:
    """How to load the plugin library at run time, and why the engine was not run here."""
    if report.get("plugin_library"):
        console.info(f"load the plugin library at run time: {report['plugin_library']}")
    if report.get("runtime"):
        console.info(report["runtime"])
