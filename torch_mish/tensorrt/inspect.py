"""What torch-tensorrt builds for a model, without running it: converter coverage, the TensorRT
network layer by layer, its optimization profiles, and a serialized engine.

None of this needs a GPU. With TensorRT-RTX it works on a CPU-only host (which can build engines for
RTX GPUs but run none), so CI machines can check that a model converts with no PyTorch fallback and
cross-build its engine.

- ``dry_run``: torch-tensorrt's own converter-coverage check (its public ``dryrun``), then the network
  built with the chosen Mish lowering, so the figure comes from this run and the converter ran.
- ``build_network``: the network torch-tensorrt would build (the same lowering passes, then its
  interpreter), for reading back and for ``build_serialized_engine``. It comes back as a
  ``network.BuiltNetwork``, as networks read from ONNX files do (``network.build_onnx_network``).

``build_network`` goes through torch-tensorrt internals (``torch_mish._compat``): checked on
torch-tensorrt 2.11 to 2.14, refused with a clear error on other versions.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import torch
import torch_tensorrt

from torch_mish import _compat
from torch_mish._cpu_tensorrt import allow_tensorrt_without_gpu
from torch_mish.ops import count_composed_mish, count_mish_nodes
from torch_mish.tensorrt import selection as _lowering
from torch_mish.tensorrt.network import BuiltNetwork

InputSpec = torch.Tensor | torch_tensorrt.Input
Inputs = InputSpec | Sequence[InputSpec]


def as_input_list(inputs: Inputs) -> list[InputSpec]:
    """One example tensor or Input, or a sequence of them, as the list torch-tensorrt takes.
    (``list(tensor)`` would split a tensor along its first dimension.)"""
    if isinstance(inputs, (torch.Tensor, torch_tensorrt.Input)):
        return [inputs]
    items = list(inputs)
    for item in items:
        if not isinstance(item, (torch.Tensor, torch_tensorrt.Input)):
            raise TypeError(f"inputs: expected tensors or torch_tensorrt.Input, got {type(item).__name__}")
    return items


def as_trt_inputs(inputs: Inputs) -> list[torch_tensorrt.Input]:
    """Inputs as ``torch_tensorrt.Input`` (a tensor gives a static Input of its shape and dtype)."""
    return [
        i if isinstance(i, torch_tensorrt.Input) else torch_tensorrt.Input.from_tensor(i) for i in as_input_list(inputs)
    ]


def _narrow_float64(model: torch.nn.Module, inputs: list[InputSpec]) -> tuple[torch.nn.Module, list[InputSpec]]:
    """What ``truncate_double=True`` means (float64 weights and inputs run in float32), done before
    tracing, on a copy of the model: torch-tensorrt casts float64 constants and engine inputs itself,
    but its BatchNorm converter hands float64 weights to TensorRT unchanged ("Unsupported tensorrt
    dtype"), and its dry run casts float64 inputs on a GPU."""

    def narrowed(t: torch.Tensor) -> torch.Tensor:
        return t.float() if t.dtype == torch.float64 else t

    def narrowed_input(spec: InputSpec) -> InputSpec:
        if isinstance(spec, torch.Tensor):
            return narrowed(spec)
        if spec.dtype.to(torch.dtype, use_default=True) != torch.float64:
            return spec
        spec = copy.copy(spec)
        spec.dtype = torch_tensorrt.dtype.f32
        spec.torch_tensor = narrowed(spec.torch_tensor)
        return spec

    tensors = [*model.parameters(), *model.buffers()]
    if any(t.dtype == torch.float64 for t in tensors):
        model = copy.deepcopy(model)._apply(narrowed)
    return model, [narrowed_input(i) for i in inputs]


def build_network(
    model: torch.nn.Module, inputs: Inputs, *, lowering: str | None = None, **settings: Any
) -> BuiltNetwork:
    """Export ``model`` for ``inputs`` (tensors, or ``torch_tensorrt.Input`` with static or
    min/opt/max shapes), lower it as torch-tensorrt does and convert it into a TensorRT network with
    the chosen Mish lowering (default: ``get_lowering()``). ``settings`` are torch-tensorrt
    ``CompilationSettings`` fields (``truncate_double=True``, ...). Every op must convert: one network,
    no PyTorch fallback."""
    _compat.check_torch_tensorrt_version("torch_mish.tensorrt.inspect.build_network")
    from torch_tensorrt.dynamo import CompilationSettings
    from torch_tensorrt.dynamo.conversion import TRTInterpreter
    from torch_tensorrt.dynamo.lowering import get_decompositions, post_lowering, pre_export_lowering

    trt_inputs = as_trt_inputs(inputs)
    if settings.get("truncate_double"):
        model, trt_inputs = _narrow_float64(model, trt_inputs)
    with allow_tensorrt_without_gpu():
        compilation = CompilationSettings(**{"min_block_size": 1, **settings, "require_full_compilation": True})
        device = "cuda" if torch.cuda.is_available() else "cpu"
        program = torch_tensorrt.dynamo.trace(model, tuple(trt_inputs), device=device)
        program = pre_export_lowering(program, compilation)
        program = program.run_decompositions(get_decompositions(compilation.enable_experimental_decompositions))
        graph = post_lowering(program.module(), compilation)
        with _lowering.lowering(lowering or _lowering.get_lowering()):
            interpreter = TRTInterpreter(graph, trt_inputs, compilation_settings=compilation)
            _compat.construct_network(interpreter)
    return BuiltNetwork(
        interpreter.ctx.net,
        interpreter.builder,
        lambda: _compat.builder_config(interpreter),  # torch-tensorrt's configuration: profiles, workspace
        list(interpreter.optimization_profiles or []),
        owner=interpreter,
    )


@dataclass
class CoverageReport:
    """A model's conversion verdict from one dry run: torch-tensorrt's converter coverage and graph
    split, how many Mish calls it has, and (when everything converts into one engine) the network
    built with the chosen lowering."""

    total_ops: int
    supported_ops: int
    engines: int
    text: str
    lowering: str
    mish_ops: int  # torch.ops.mish.mish calls: the ones the lowering decides
    aten_mish_ops: int = 0  # nn.Mish / F.mish (aten.mish): torch-tensorrt decomposes these itself
    composed_mish_ops: int = 0  # x * tanh(softplus(x)) in plain torch ops: no Mish op at all
    network: BuiltNetwork | None = field(default=None, repr=False)

    @property
    def coverage(self) -> float:
        return 100.0 * self.supported_ops / self.total_ops if self.total_ops else 100.0

    @property
    def fully_converted(self) -> bool:
        return self.supported_ops == self.total_ops and self.engines == 1 and self.network is not None


_REPORT_OPS = re.compile(r"consists of (\d+) Total Operators, of which (\d+) operators are supported")


def dry_run(
    model: torch.nn.Module,
    inputs: Inputs,
    report_path: str | Path | None = None,
    *,
    lowering: str | None = None,
    **settings: Any,
) -> CoverageReport:
    """Converter coverage of ``model`` for ``inputs``, from this run.

    Runs ``torch_tensorrt.dynamo.compile(..., dryrun=...)`` (which partitions the graph without
    building engines) and parses its report; when every op is supported and the graph is one
    engine, also builds the TensorRT network with the chosen Mish lowering (``build_network``), so the
    converters really ran: a lowering that cannot be built here raises its error. ``report_path``
    (optional) receives torch-tensorrt's text report, replacing any file there. ``settings`` go to
    torch-tensorrt (``torch_executed_ops``, ``truncate_double``, ...)."""
    chosen = _lowering.resolve(lowering)
    trt_inputs = as_trt_inputs(inputs)
    dry_settings = {"min_block_size": 1, "offload_module_to_cpu": True, **settings}
    if settings.get("truncate_double"):
        model, trt_inputs = _narrow_float64(model, trt_inputs)
        if not torch.cuda.is_available():
            # torch-tensorrt's repair of float64 inputs asks for a GPU, and none are left to repair.
            del dry_settings["truncate_double"]
    with allow_tensorrt_without_gpu(), tempfile.TemporaryDirectory(prefix="torch_mish_dryrun_") as tmp:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        program = torch_tensorrt.dynamo.trace(model, tuple(trt_inputs), device=device)
        mish_ops, aten_mish_ops = count_mish_nodes(program.graph)
        composed_mish_ops = count_composed_mish(program.graph)
        # A fresh path: torch-tensorrt will not overwrite an existing report (it keeps the old one).
        fresh = Path(tmp) / "dryrun.txt"
        with _lowering.lowering(chosen), redirect_stdout(StringIO()):  # it also prints the report
            torch_tensorrt.dynamo.compile(
                program,
                arg_inputs=trt_inputs,
                dryrun=str(fresh),
                **dry_settings,
            )
        text = fresh.read_text()
    if report_path is not None:
        Path(report_path).write_text(text)
    match = _REPORT_OPS.search(text)
    if match is None:
        raise RuntimeError(f"unrecognized torch-tensorrt dry-run report:\n{text[:2000]}")
    report = CoverageReport(
        total_ops=int(match.group(1)),
        supported_ops=int(match.group(2)),
        engines=len(re.findall(r"TRT Engine #\d+", text)),
        text=text,
        lowering=chosen,
        mish_ops=mish_ops,
        aten_mish_ops=aten_mish_ops,
        composed_mish_ops=composed_mish_ops,
    )
    if report.supported_ops == report.total_ops and report.engines == 1:
        network_settings = {k: v for k, v in settings.items() if k != "torch_executed_ops"}
        report.network = build_network(model, trt_inputs, lowering=chosen, **network_settings)
    return report
