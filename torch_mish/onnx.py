"""ONNX export of models that call torch.ops.mish.

The op becomes the standard ONNX ``Mish`` (a function op since opset 18) — what onnxruntime runs and
what TensorRT's ONNX parser imports as SOFTPLUS -> TANH -> PROD — or, with ``plugin=True``, a
``torch_mish::TorchMish`` node that TensorRT's ONNX parser maps to the TorchMish plugin (load the
plugin library first: ``trtexec --dynamicPlugins=...`` or torch_mish.tensorrt.load_plugin()).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from torch_mish._plugin_identity import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

MIN_OPSET = 18  # ONNX Mish is a function op from opset 18 on (bfloat16 from 22)
PLUGIN_DOMAIN = PLUGIN_NAMESPACE  # csrc/trt/plugin_identity.h
PLUGIN_OP = PLUGIN_NAME


def _plugin_schema() -> Any:
    """ONNX schema of the TorchMish node (the exporter type-checks custom ops against one)."""
    from onnx.defs import OpSchema

    string = OpSchema.AttrType.STRING
    return OpSchema(
        PLUGIN_OP,
        PLUGIN_DOMAIN,
        1,
        inputs=[OpSchema.FormalParameter("X", "T")],
        outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "Mish's dtypes")],
        attributes=[
            OpSchema.Attribute("plugin_version", string, "TensorRT plugin creator version"),
            OpSchema.Attribute("plugin_namespace", string, "TensorRT plugin creator namespace"),
        ],
    )


def _dynamo_translation(plugin: bool, opset: int) -> dict[Any, Any]:
    import onnxscript

    # Plain functions over onnxscript opsets: the exporter traces them into the graph.
    std = onnxscript.values.Opset("", opset)
    custom = onnxscript.values.Opset(PLUGIN_DOMAIN, 1)

    def mish_standard(x: Any) -> Any:
        return std.Mish(x)

    def mish_plugin(x: Any) -> Any:
        # TensorRT's ONNX parser looks unknown ops up in the plugin registry by op type, with
        # these two attributes naming the creator's version and namespace.
        return onnxscript.values.Op(custom, PLUGIN_OP, op_schema=_plugin_schema())(
            x, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE
        )

    return {torch.ops.mish.mish.default: mish_plugin if plugin else mish_standard}


def register_torchscript_symbolic(opset: int = MIN_OPSET) -> None:
    """Teach the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) to write Mish."""

    def symbolic(g: Any, x: Any) -> Any:
        return g.op("Mish", x)

    torch.onnx.register_custom_op_symbolic("mish::mish", symbolic, opset)


def export(
    model: torch.nn.Module,
    args: Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    *,
    plugin: bool = False,
    dynamo: bool = True,
    opset: int = MIN_OPSET,
    dynamic_shapes: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """Export ``model`` to ONNX with torch.ops.mish as ``Mish`` (or the TorchMish plugin node).

    Args:
        dynamo: use the torch.export-based exporter (default) or the TorchScript one (standard Mish only).
        dynamic_shapes: for the dynamo exporter, as in torch.export; dynamic_axes for TorchScript.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX Mish needs opset >= {MIN_OPSET}, got {opset}")
    if dynamo:
        program = torch.onnx.export(
            model,
            tuple(args),
            dynamo=True,
            opset_version=opset,
            custom_translation_table=_dynamo_translation(plugin, opset),
            dynamic_shapes=dynamic_shapes,
            input_names=list(input_names) if input_names else None,
            output_names=list(output_names) if output_names else None,
            optimize=True,
        )
        program.save(str(path))
        return
    if plugin:
        raise ValueError("the TorchMish plugin node is only written by the dynamo exporter (dynamo=True)")
    register_torchscript_symbolic(opset)
    torch.onnx.export(
        model,
        tuple(args),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=list(input_names) if input_names else None,
        output_names=list(output_names) if output_names else None,
        dynamic_axes=dynamic_axes,
    )
