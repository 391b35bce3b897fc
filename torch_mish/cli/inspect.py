"""``torch-mish inspect``: coverage, Mish layers and the TensorRT network.

Converter coverage and graph split (torch-tensorrt's dry run), Mish count and the TensorRT network's layers
(-v: the whole table); for an engine file, TensorRT's engine inspector where a runtime exists.

example: yolov4-csp.cfg --image-size 512 --lowering native -v
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch_mish.cli import census, networks, sources
from torch_mish.cli.console import Console, import_tensorrt
from torch_mish.cli.flags import add_command, add_model_args
from torch_mish.cli.options import ENGINE_SUFFIXES, EngineOptions, ModelOptions, UsageError


@dataclass(frozen=True)
class InspectOptions:
    model: ModelOptions
    engine: EngineOptions
    show_dry_run: bool


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run, sources=", an .onnx file, or an engine (.engine/.plan)")
    p.add_argument("--show-dry-run", action="store_true", help="print torch-tensorrt's dry-run report")
    add_model_args(p, "N, or MIN:OPT:MAX", engine=True, nms=True)
    return p


def run(options: InspectOptions, console: Console) -> dict[str, Any]:
    if options.model.source.endswith(ENGINE_SUFFIXES):
        if options.model.detections is not None:
            raise UsageError("--nms: an engine's outputs were fixed when it was built; inspect its source with --nms")
        return inspect_engine(options.model.source, console)
    net = networks.make(options.model, options.engine, console, build_engine=False)
    report = {**net.report, "layer_table": net.built.layer_table()}
    if options.show_dry_run and net.dry_run_text is not None:
        report["dry_run_text"] = net.dry_run_text
    c = report["coverage"]
    console.info(f"{report['source']}: {c['percent']:.1f}% of ops convert, {c['trt_engines']} TensorRT engine(s)")
    if report.get("dry_run_text"):
        console.info(report["dry_run_text"].rstrip())
    console.info(f"Mish: {census.summary(networks.census_of(report), report['mish']['lowering'])}")
    console.info(
        f"network: {report['layers']} layers: " + ", ".join(f"{k} {v}" for k, v in report["layer_types"].items())
    )
    if console.verbose:
        for row in report["layer_table"]:
            console.info(f"  {row['index']:>5} {row['type']:<14} {row['output_dtype'] or '-':<6} {row['name']}")
    for key in ("inputs", "outputs"):
        for t in report[key]:
            console.info(f"{key[:-1]} {t['name']}: {t['shape']} {t['dtype']}")
    return report


def inspect_engine(src: str, console: Console) -> dict[str, Any]:
    path = sources.check_exists(src)
    mt, trt = import_tensorrt(console)
    reason = mt.engine_runtime_unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            f"cannot inspect {path} here: {reason}; run on a machine with one, or inspect the source "
            "(torch-mish inspect model.cfg|.pt2|.onnx)"
        )
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UsageError(f"{path}: not an engine this TensorRT ({trt.__version__}) can load; rebuild it here")
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    console.info(json.dumps(info, indent=1))
    return {"engine": str(path), "inspector": info}
