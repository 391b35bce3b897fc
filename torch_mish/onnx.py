"""ONNX export of models that call torch.ops.mish.

``import torch_mish`` registers ``torch.ops.mish.mish`` with both of PyTorch's ONNX exporters, so a
plain ``torch.onnx.export`` (``dynamo=True``, the default, or the TorchScript exporter with
``dynamo=False``) works on a model converted with ``convert_mish``:

- opset 18 and above: the standard ONNX ``Mish`` op (a function op since opset 18): what onnxruntime
  runs and what TensorRT's ONNX parser imports as SOFTPLUS -> TANH -> PROD;
- below 18: ``Mul(x, Tanh(Softplus(x)))``, the same function written out;
- bfloat16 below opset 22 (where ``Mish`` and ``Softplus`` take no bfloat16): computed in float32
  between two Casts.

``torch_mish.onnx.export(..., plugin=True)`` writes ``torch_mish::TorchMish`` nodes instead, which
TensorRT's ONNX parser maps to the torch_mish plugin (register the plugin library first:
``trtexec --dynamicPlugins=...`` or ``torch_mish.tensorrt.load_plugin()``).

The dynamo exporter has no public registry: see ``torch_mish._compat`` for the one used.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from torch_mish import _compat
from torch_mish._plugin_identity import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

MISH_OPSET = 18  # ONNX Mish exists from opset 18 on
BFLOAT16_MISH_OPSET = 22  # and takes bfloat16 from opset 22
_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _dynamo_mish(x: Any) -> Any:
    """torch.ops.mish.mish for the dynamo exporter (traced with onnxscript ops at export time)."""
    import onnxscript

    op = onnxscript.opset18
    opset = _compat.requested_onnx_opset() or MISH_OPSET
    dtype = getattr(x, "dtype", None)
    if dtype is not None and int(dtype) == _BFLOAT16 and opset < BFLOAT16_MISH_OPSET:
        y = op.Cast(x, to=_FLOAT)
        y = op.Mish(y) if opset >= MISH_OPSET else op.Mul(y, op.Tanh(op.Softplus(y)))
        return op.Cast(y, to=_BFLOAT16)
    # Written at opset 18; the exporter converts Softplus/Tanh/Mul down to a lower requested opset
    # (it cannot convert Mish down: ONNX has no earlier Mish).
    return op.Mish(x) if opset >= MISH_OPSET else op.Mul(x, op.Tanh(op.Softplus(x)))


def _torchscript_mish(g: Any, x: Any) -> Any:
    """torch.ops.mish.mish for the TorchScript exporter (``dynamo=False``), at the export's opset."""
    dtype = x.type().scalarType() if x.type().kind() == "TensorType" else None
    if dtype == "BFloat16" and g.opset < BFLOAT16_MISH_OPSET:
        y = g.op("Cast", x, to_i=_FLOAT)
        y = g.op("Mish", y) if g.opset >= MISH_OPSET else g.op("Mul", y, g.op("Tanh", g.op("Softplus", y)))
        return g.op("Cast", y, to_i=_BFLOAT16)
    if g.opset >= MISH_OPSET:
        return g.op("Mish", x)
    return g.op("Mul", x, g.op("Tanh", g.op("Softplus", x)))


def register_exporters() -> None:
    """Register torch.ops.mish.mish with both ONNX exporters (``import torch_mish`` does this)."""
    # Public API; opset 9 is the TorchScript exporter's oldest, the symbolic picks by g.opset.
    torch.onnx.register_custom_op_symbolic("mish::mish", _torchscript_mish, 9)
    _compat.add_onnx_translation(torch.ops.mish.mish.default, _dynamo_mish)


# --- the TensorRT plugin node ---------------------------------------------------------------------


# The TensorRT plugin creator's name, version and namespace (torch_mish/_plugin_identity.py): the ONNX op
# type, its domain and its attributes.
PLUGIN_OP = PLUGIN_NAME
PLUGIN_DOMAIN = PLUGIN_NAMESPACE


def _plugin_translation() -> Any:
    import onnxscript
    from onnx.defs import OpSchema

    name, version, namespace = PLUGIN_OP, PLUGIN_VERSION, PLUGIN_DOMAIN
    string = OpSchema.AttrType.STRING
    schema = OpSchema(
        name,
        namespace,
        1,
        inputs=[OpSchema.FormalParameter("X", "T")],
        outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "Mish's dtypes")],
        attributes=[
            OpSchema.Attribute("plugin_version", string, "TensorRT plugin creator version"),
            OpSchema.Attribute("plugin_namespace", string, "TensorRT plugin creator namespace"),
        ],
    )
    node = onnxscript.values.Op(onnxscript.values.Opset(namespace, 1), name, op_schema=schema)

    def mish_plugin(x: Any) -> Any:
        # TensorRT's ONNX parser looks an unknown op up in the plugin registry by its op type, with
        # these two attributes naming the creator's version and namespace.
        return node(x, plugin_version=version, plugin_namespace=namespace)

    return mish_plugin


def export(
    model: torch.nn.Module,
    args: Any = (),
    f: str | os.PathLike[str] | None = None,
    *,
    plugin: bool = False,
    **kwargs: Any,
) -> Any:
    """``torch.onnx.export`` with one addition: ``plugin=True`` writes ``torch_mish::TorchMish`` nodes
    for the TensorRT plugin instead of the standard ``Mish``.

    Every other argument is ``torch.onnx.export``'s, with its meaning (``args`` a tensor or a tuple,
    ``opset_version``, ``dynamic_axes`` or ``dynamic_shapes``, ``input_names``, ``dynamo``, ...);
    an argument it does not know raises its TypeError. Returns what ``torch.onnx.export`` returns.

    One check more than ``torch.onnx.export``: a file written at another opset than ``opset_version``
    raises ValueError. (Torch's dynamo exporter writes opset 18 when its version converter cannot
    take the graph lower, and only logs it; the TorchScript exporter, ``dynamo=False``, writes the
    opsets below 18.)
    """
    if plugin:
        if kwargs.get("dynamo", True) is False:
            raise ValueError(
                "plugin=True needs the dynamo exporter: the TorchScript exporter (dynamo=False) is not supported"
            )
        table = dict(kwargs.pop("custom_translation_table", None) or {})
        table[torch.ops.mish.mish.default] = _plugin_translation()
        kwargs["custom_translation_table"] = table
    result = torch.onnx.export(model, args, f, **kwargs)
    requested = kwargs.get("opset_version")
    if requested is not None:
        written = _written_opset(result, f)
        if written is not None and written != requested:
            if isinstance(f, (str, os.PathLike)):
                os.remove(f)
            raise ValueError(
                f"opset_version={requested} was requested and torch.onnx wrote opset {written} "
                f"(its dynamo exporter could not convert the graph to {requested}; the file was removed); "
                "for opsets below 18 export with dynamo=False"
            )
    return result


def _written_opset(result: Any, f: Any) -> int | None:
    """The default-domain opset of what an export produced: the file, or the returned program; None
    where it cannot be read (the TorchScript exporter runs without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None

    if isinstance(f, (str, os.PathLike)) and os.path.exists(f):
        proto = onnx.load(os.fspath(f), load_external_data=False)
    elif getattr(result, "model_proto", None) is not None:
        proto = result.model_proto
    else:
        return None
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
