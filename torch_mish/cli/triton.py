"""``torch-mish triton``: a Triton model repository.

Write a Triton model repository entry: NAME/config.pbtxt (platform tensorrt_plan, max_batch_size and dynamic
batching from the profile, inputs and outputs read from the built network) and NAME/1/model.plan.

example: yolov4-csp.cfg --weights yolov4-csp.weights --fp16 --batch 1:8:16 -o model_repository --name
  yolov4-csp
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import networks, outputs
from torch_mish.cli.console import Console
from torch_mish.cli.flags import add_command, add_model_args
from torch_mish.cli.options import EngineOptions, ModelOptions, UsageError, output_dir

TRITON_TYPES = {
    "FLOAT": "TYPE_FP32",
    "HALF": "TYPE_FP16",
    "BF16": "TYPE_BF16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "INT8": "TYPE_INT8",
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
}


@dataclass(frozen=True)
class TritonOptions:
    model: ModelOptions
    engine: EngineOptions
    output: Path  # the repository folder, created if missing
    name: str
    force: bool


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run, sources=", or an .onnx file")
    p.add_argument("-o", "--output", required=True, help="the model repository (a directory, created if missing)")
    p.add_argument("--name", required=True, help="the model's name in the repository")
    p.add_argument("--force", action="store_true", help="replace an existing NAME/")
    add_model_args(p, "N, or MIN:OPT:MAX (max_batch_size = MAX, preferred batch = OPT)", engine=True, nms=True)
    return p


def run(options: TritonOptions, console: Console) -> dict[str, Any]:
    repo = output_dir(options.output, "the model repository")
    name = options.name
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--name {name!r}: give a plain model name, e.g. --name yolov4")
    target = repo / name
    if target.exists() and not options.force:
        raise UsageError(f"{target} exists; remove it or pass --force to replace it")
    net = networks.make(options.model, options.engine, console, build_engine=True)
    engine = net.engine
    assert engine is not None
    report = {**net.report, "engine": str(target / "1" / "model.plan"), "engine_bytes": len(engine)}
    config = triton_config(name, report)

    def write(folder: Path) -> None:
        (folder / "1").mkdir()
        (folder / "1" / "model.plan").write_bytes(engine)
        (folder / "config.pbtxt").write_text(config)

    created = not repo.exists()
    repo.mkdir(exist_ok=True)  # as an exporter creates its output file
    try:
        outputs.replace_dir(target, write)
    except BaseException:
        if created:
            repo.rmdir()
        raise
    console.info(f"wrote {target}/config.pbtxt and {target}/1/model.plan")
    if report.get("plugin_library"):
        console.info(
            f"plugin lowering: start Triton with LD_PRELOAD={report['plugin_library']} "
            f"or --backend-config=tensorrt,plugins={report['plugin_library']}"
        )
    if report.get("runtime"):
        console.info(report["runtime"])
    return {**report, "repository": str(repo), "config": config}


def triton_config(name: str, report: dict[str, Any]) -> str:
    profile = report["profiles"][0] if report["profiles"] else {}
    # Triton batches along a dynamic first dimension only; a static engine gets max_batch_size 0.
    dynamic = bool(profile) and all(t["shape"][0] == -1 for t in report["inputs"])
    max_batch = max(s["max"][0] for s in profile.values()) if dynamic else 0
    lines = []
    if report.get("plugin_library"):
        lines += [
            "# The engine has torch_mish TorchMish plugin layers: load the plugin library into Triton, either",
            f"#   LD_PRELOAD={report['plugin_library']} tritonserver ...",
            f"#   tritonserver --backend-config=tensorrt,plugins={report['plugin_library']} ...",
        ]
    lines += [f'name: "{name}"', 'platform: "tensorrt_plan"', f"max_batch_size: {max_batch}"]
    for key, tensors in (("input", report["inputs"]), ("output", report["outputs"])):
        lines.append(f"{key} [")
        for i, t in enumerate(tensors):
            dims = t["shape"][1:] if dynamic else t["shape"]
            dtype = TRITON_TYPES.get(t["dtype"], "TYPE_" + t["dtype"])
            comma = "," if i + 1 < len(tensors) else ""
            lines.append(f'  {{ name: "{t["name"]}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}{comma}')
        lines.append("]")
    if dynamic:
        opt = min(s["opt"][0] for s in profile.values())
        lines.append(f"dynamic_batching {{ preferred_batch_size: [ {opt} ] }}")
    return "\n".join(lines) + "\n"
