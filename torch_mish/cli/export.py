"""``torch-mish export``: a model to ONNX or .pt2.

Export a model to ONNX (standard Mish op, or TorchMish plugin nodes with --plugin) or to a .pt2
ExportedProgram.

example: yolov4-csp.cfg --weights yolov4-csp.weights --image-size 512 --batch 1:8:16 -o yolov4-csp.onnx
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import census, nms, sources
from torch_mish.cli.console import Console, first_line
from torch_mish.cli.flags import add_command, add_model_args
from torch_mish.cli.options import DTYPES, ModelOptions, UsageError, output_file
from torch_mish.cli.outputs import atomic


@dataclass(frozen=True)
class ExportOptions:
    model: ModelOptions
    output: Path = output_file(".onnx", ".pt2")
    opset: int | None
    plugin: bool


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run)
    p.add_argument("-o", "--output", required=True, help="OUT.onnx or OUT.pt2")
    add_model_args(p, "N, or MIN:OPT:MAX for a dynamic batch dimension", nms=True)
    p.add_argument("--opset", type=int, help="ONNX opset (18+: ONNX Mish; below: Mul(x, Tanh(Softplus(x))))")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="convert the model and input to this dtype")
    p.add_argument("--plugin", action="store_true", help="ONNX with torch_mish::TorchMish nodes (TensorRT plugin)")
    return p


def run(options: ExportOptions, console: Console) -> dict[str, Any]:
    import torch

    out = options.output
    check_flags(options)
    with console.steps(["load", "export"]) as advance:
        source = sources.load(options.model, console)
        batch = sources.resolve_batch(source, options.model.batch, console)
        dtype = sources.torch_dtype(options.model.dtype)
        model = source.model.to(dtype)
        x = sources.example_input(source, batch, dtype)
        advance()
        result: dict[str, Any] = {
            "source": source.name,
            "source_kind": source.kind,
            "output": str(out),
            "format": out.suffix[1:],
            "dtype": options.model.dtype,
            "input_shape": [list(x.shape[1:])],
            "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        }
        program = None
        if not uses_torchscript_exporter(options):  # ONNX from opset 18 and .pt2: one torch.export of the model
            program = torch.export.export(model, (x,), dynamic_shapes=sources.dynamic_shapes(batch))
        with atomic(out) as tmp:
            if program is not None and out.suffix == ".pt2":
                torch.export.save(program, tmp)
            else:
                result.update(write_onnx(options, program or model, x, batch, tmp, console))
            count = census.in_graph((program or torch.export.export(model, (x,))).graph)
            advance()
    result.update(mish_nodes=count.ops, aten_mish_nodes=count.aten, composed_mish_nodes=count.composed)
    if options.model.detections is not None:
        result["nms"] = nms.report_fields(model)
    result["bytes"] = out.stat().st_size
    console.info(f"wrote {out} ({result['bytes'] / 2**20:.1f} MiB, {census.summary(count)}) from {source.name}")
    if hint := census.convert_hint(count, source.kind):
        console.info(hint)
    if options.model.detections is not None and out.suffix == ".onnx" and (note := nms.onnx_note(model)):
        console.info(note)
    return result


def uses_torchscript_exporter(options: ExportOptions) -> bool:
    """Below ONNX Mish's opset the TorchScript exporter: torch's dynamo exporter writes 18+."""
    import torch_mish.onnx

    return options.opset is not None and options.opset < torch_mish.onnx.MISH_OPSET


def check_flags(options: ExportOptions) -> None:
    """Flags that do not fit the output's format, and the ONNX packages an .onnx output needs."""
    import torch_mish.onnx

    suffix = options.output.suffix
    if options.plugin and suffix != ".onnx":
        raise UsageError("--plugin writes TorchMish nodes into an ONNX file: use -o NAME.onnx")
    if options.opset is not None and suffix != ".onnx":
        raise UsageError(f"--opset is for ONNX output (-o NAME.onnx), not {suffix}")
    if options.plugin and uses_torchscript_exporter(options):
        raise UsageError(f"--plugin needs --opset {torch_mish.onnx.MISH_OPSET} or above")
    if suffix == ".onnx":
        # The dynamo exporter (opset 18+) needs onnxscript; both exporters' files are read back with onnx.
        needed = ("onnx",) if uses_torchscript_exporter(options) else ("onnx", "onnxscript")
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            raise RuntimeError(
                f"ONNX export needs {' and '.join(missing)}, not installed here: pip install 'torch_mish[onnx]'"
            )


def write_onnx(options: ExportOptions, model: Any, x: Any, batch: Any, path: Path, console: Console) -> dict[str, Any]:
    """Export ``model`` (an ExportedProgram from opset 18 on, else the module) to ``path``; how the file
    writes Mish, read back from it."""
    import torch_mish.onnx

    outputs = (
        {"output_names": list(nms.OUTPUT_NAMES)} if options.model.detections is not None else output_names(model, x)
    )
    names = {"input_names": [sources.INPUT_NAME], **outputs}
    legacy = uses_torchscript_exporter(options)
    if legacy:
        dynamic = {sources.INPUT_NAME: {0: "batch"}} if batch[0] != batch[2] else None
        kwargs: dict[str, Any] = {"dynamo": False, "dynamic_axes": dynamic, **names}
    else:
        kwargs = {"external_data": False, **names}  # the program carries its dynamic batch
    if options.opset is not None:
        kwargs["opset_version"] = options.opset
    try:
        # The TorchScript exporter logs its whole graph to stderr from C++ when it fails.
        with console.muted(), console.muted_fds(skip=not legacy):
            torch_mish.onnx.export(model, (x,), path, plugin=options.plugin, **kwargs)
    except ValueError as exc:
        raise UsageError(f"{exc}") from None
    except Exception as exc:
        if not legacy:
            raise
        reason = first_line(exc)[:300]  # its message carries the whole graph
        raise UsageError(f"--opset {options.opset}: torch.onnx's exporter failed: {reason}") from None
    written = census.in_onnx(path)  # read back: what the file holds
    if options.plugin:
        mish_as = "torch_mish::TorchMish (TensorRT plugin)"
    elif legacy:
        mish_as = "Mul(x, Tanh(Softplus(x)))"
    else:
        mish_as = "ONNX Mish"
    held = {
        "Mish": written["Mish"],
        "TorchMish": written["TorchMish"],
        "Mul(x, Tanh(Softplus(x)))": written["composed"],
    }
    result = {"opset": options.opset, "mish_as": mish_as, "onnx_mish_nodes": held}
    if options.model.detections is not None:
        result["onnx_nms_nodes"] = {op: written[op] for op in ("NonMaxSuppression", "DarknetNMS")}
    return result


def output_names(model: Any, x: Any) -> dict[str, list[str]]:
    """output_names for torch.onnx.export: the names torch-tensorrt gives an engine built from the model
    (output0, ...), so an engine built from the ONNX file binds alike. The outputs are counted on fake
    tensors (shapes only); a model that cannot run on them keeps the exporter's names."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils import _pytree

    module = model.module() if isinstance(model, torch.export.ExportedProgram) else model
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            outputs = _pytree.tree_leaves(module(torch.empty(x.shape, dtype=x.dtype, device=x.device)))
    except Exception:  # noqa: BLE001 - exported all the same, with the exporter's output names
        return {}
    return {"output_names": [f"output{i}" for i in range(len(outputs))]}
