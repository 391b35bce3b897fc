"""``torch-mish build``: a TensorRT engine and a JSON report.

Build a TensorRT engine (strongly typed) from a model or an .onnx file, with a JSON report: coverage, Mish
count and lowering, layers by type, precisions, the optimization profile read back, TensorRT version, build
time, plugin library. On a host without a GPU, TensorRT-RTX builds the engine for the RTX runtime (not run
here).

example: yolov4-csp.cfg --weights yolov4-csp.weights --fp16 --batch 1:8:16 -o yolov4-csp.engine --report
  report.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import networks, outputs
from torch_mish.cli.console import Console
from torch_mish.cli.flags import add_command, add_model_args
from torch_mish.cli.options import ENGINE_SUFFIXES, EngineOptions, ModelOptions, output_file


@dataclass(frozen=True)
class BuildOptions:
    model: ModelOptions
    engine: EngineOptions
    output: Path = output_file(*ENGINE_SUFFIXES, flag="-o/--saveEngine")
    report: Path | None = output_file(".json", flag="--report")
    timing_cache: Path | None = output_file(".bin", ".cache", flag="--timing-cache")


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run, sources=", or an .onnx file (TensorRT's ONNX parser)")
    p.add_argument("-o", "--output", "--saveEngine", dest="output", required=True, help="engine file (.engine/.plan)")
    p.add_argument("--report", help="write the build report (JSON) here")
    p.add_argument(
        "--timing-cache",
        "--timingCacheFile",
        dest="timing_cache",
        help="TensorRT timing cache file (.bin/.cache), read if present and written back after the build",
    )
    add_model_args(p, "N, or MIN:OPT:MAX: the optimization profile's batch sizes", engine=True, nms=True)
    return p


def run(options: BuildOptions, console: Console) -> dict[str, Any]:
    cache_in = networks.read_timing_cache(options.timing_cache)
    net = networks.make(options.model, options.engine, console, build_engine=True, timing_cache=cache_in)
    assert net.engine is not None
    report = {**net.report, "engine": str(options.output), "engine_bytes": len(net.engine)}
    if options.timing_cache is not None:
        report["timing_cache"] = str(options.timing_cache)
    with outputs.atomic(options.output) as tmp:
        tmp.write_bytes(net.engine)
        if options.report is not None:
            outputs.write_json(options.report, report)
        if options.timing_cache is not None and net.built.timing_cache is not None:
            outputs.write_bytes(options.timing_cache, net.built.timing_cache)
    console.info(networks.summary_line(report))
    networks.runtime_lines(report, console)
    return report
