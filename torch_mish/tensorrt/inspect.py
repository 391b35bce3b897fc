"""Build the TensorRT network torch-tensorrt would build for a model, without running it — for
inspection and for engine builds on machines that cannot run engines (TensorRT-RTX CPU-only mode).

This mirrors torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine up to the
network, through torch-tensorrt internals (TRTInterpreter) whose names are stable from 2.11 to 2.14;
other versions get a clear error instead of a wrong result.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import tensorrt as trt
import torch
import torch_tensorrt

from torch_mish.tensorrt import selection as _lowering

SUPPORTED_TORCH_TENSORRT = ("2.11", "2.12", "2.13", "2.14")


@dataclass
class BuiltNetwork:
    network: trt.INetworkDefinition
    interpreter: object  # keeps the builder and the weights the network refers to alive

    def layers(self) -> list[trt.ILayer]:
        return [self.network.get_layer(i) for i in range(self.network.num_layers)]

    def build_serialized_engine(self) -> bytes:
        """Build the engine (works on the CPU with TensorRT-RTX). Returns its serialized bytes."""
        interp = self.interpreter
        config = interp._populate_trt_builder_config()  # type: ignore[attr-defined]
        engine = interp.builder.build_serialized_network(self.network, config)  # type: ignore[attr-defined]
        if engine is None:
            raise RuntimeError("TensorRT build_serialized_network returned None (see the TensorRT log)")
        return bytes(engine)


def _check_version() -> None:
    version = torch_tensorrt.__version__
    if not version.startswith(SUPPORTED_TORCH_TENSORRT):
        raise RuntimeError(
            f"torch_mish.tensorrt.inspect relies on torch-tensorrt internals checked on "
            f"{', '.join(SUPPORTED_TORCH_TENSORRT)}; found {version}"
        )


def build_network(
    model: torch.nn.Module, inputs: Sequence[torch_tensorrt.Input], *, lowering: str | None = None
) -> BuiltNetwork:
    """Export ``model`` for ``inputs`` (static or min/opt/max shapes), lower it as torch-tensorrt
    does, and convert it into a TensorRT network with the chosen Mish lowering. Requires every op
    to convert (no PyTorch fallback inside a single network)."""
    _check_version()
    from torch_tensorrt.dynamo import CompilationSettings
    from torch_tensorrt.dynamo.conversion import TRTInterpreter
    from torch_tensorrt.dynamo.lowering import get_decompositions, post_lowering, pre_export_lowering

    settings = CompilationSettings(min_block_size=1, require_full_compilation=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ep = torch_tensorrt.dynamo.trace(model, tuple(inputs), device=device)
    ep = pre_export_lowering(ep, settings)
    ep = ep.run_decompositions(get_decompositions(False))
    gm = post_lowering(ep.module(), settings)
    with _lowering.lowering(lowering or _lowering.get_lowering()):
        interp = TRTInterpreter(gm, list(inputs), compilation_settings=settings)
        interp._construct_trt_network_def()
    return BuiltNetwork(interp.ctx.net, interp)


@dataclass
class CoverageReport:
    """torch-tensorrt's dry-run verdict for a model: how much of the graph converts."""

    total_ops: int
    supported_ops: int
    engines: int
    text: str

    @property
    def coverage(self) -> float:
        return 100.0 * self.supported_ops / self.total_ops if self.total_ops else 100.0


def dry_run(
    model: torch.nn.Module,
    inputs: Sequence[torch_tensorrt.Input],
    report_path: str,
    *,
    lowering: str | None = None,
    **settings: object,
) -> CoverageReport:
    """Run torch_tensorrt.dynamo.compile(..., dryrun=report_path) — the public converter-coverage
    check, which needs no GPU — and parse its report."""
    import re

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ep = torch_tensorrt.dynamo.trace(model, tuple(inputs), device=device)
    # torch-tensorrt also prints the whole report to stdout; it is in report_path and the result.
    with _lowering.lowering(lowering or _lowering.get_lowering()), contextlib.redirect_stdout(io.StringIO()):
        torch_tensorrt.dynamo.compile(
            ep, arg_inputs=list(inputs), dryrun=report_path, min_block_size=1, offload_module_to_cpu=True, **settings
        )
    with open(report_path) as f:
        text = f.read()
    match = re.search(r"consists of (\d+) Total Operators, of which (\d+) operators are supported", text)
    if match is None:
        raise RuntimeError(f"unrecognized torch-tensorrt dry-run report in {report_path}")
    engines = len(re.findall(r"TRT Engine #\d+", text))
    return CoverageReport(int(match.group(1)), int(match.group(2)), engines, text)
