"""torch-tensorrt converters for torch.ops.mish (dynamo path).

One thin converter per op target; the layer builders below do the work. Torch-TensorRT has no Mish
converter of its own: it decomposes aten.mish before conversion, while our custom op is opaque to
it and would fall back to PyTorch (splitting the engine) without these.
"""

from __future__ import annotations

import logging
from typing import Any

import tensorrt as trt
import torch
from torch.fx.node import Node, Target
from torch_tensorrt.dynamo import CompilationSettings
from torch_tensorrt.dynamo.conversion import ConversionContext, dynamo_tensorrt_converter
from torch_tensorrt.dynamo.conversion.converter_utils import get_trt_tensor, set_layer_name
from torch_tensorrt.dynamo.types import TRTTensor

from torch_mish.tensorrt import plugin, selection
from torch_mish.tensorrt.support import can_add_plugin_layers

logger = logging.getLogger("torch_mish.tensorrt")

# TensorRT has no float64 Mish path worth having; the plugin supports exactly these. float64 converts
# only with torch-tensorrt's truncate_double=True, which hands the converter a float32 tensor.
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def add_mish_native(ctx: ConversionContext, x: TRTTensor, target: Target, name: str) -> TRTTensor:
    """mish(x) = x * tanh(softplus(x)) from TensorRT layers. TensorRT's SOFTPLUS is
    alpha * log(exp(beta * x) + 1): alpha = beta = 1 is PyTorch's softplus."""
    softplus = ctx.net.add_activation(x, trt.ActivationType.SOFTPLUS)
    softplus.alpha = 1.0
    softplus.beta = 1.0
    set_layer_name(softplus, target, f"{name}_softplus")
    tanh = ctx.net.add_activation(softplus.get_output(0), trt.ActivationType.TANH)
    set_layer_name(tanh, target, f"{name}_tanh")
    product = ctx.net.add_elementwise(x, tanh.get_output(0), trt.ElementWiseOperation.PROD)
    set_layer_name(product, target, f"{name}_prod")
    return product.get_output(0)


def add_mish_plugin(ctx: ConversionContext, x: TRTTensor, target: Target, name: str) -> TRTTensor:
    """One TorchMish IPluginV3 layer (csrc/trt): the torch op's own CUDA kernel."""
    layer = ctx.net.add_plugin_v3([x], [], plugin.create_plugin(name))
    set_layer_name(layer, target, f"{name}_plugin")
    return layer.get_output(0)


def _input_dtype(node: Node) -> torch.dtype | None:
    arg = node.args[0] if node.args else None
    val = arg.meta.get("val") if isinstance(arg, Node) else None
    return getattr(val, "dtype", None)


def mish_validator(node: Node, settings: CompilationSettings | None = None) -> bool:
    """Convert the dtypes both lowerings support, and float64 when ``truncate_double`` is set
    (torch-tensorrt then runs it in float32); anything else stays in PyTorch (and
    require_full_compilation=True turns that into an error naming the op)."""
    dtype = _input_dtype(node)
    if dtype in SUPPORTED_DTYPES:
        return True
    if dtype == torch.float64 and settings is not None and getattr(settings, "truncate_double", False):
        return True
    logger.warning(
        "torch.ops.mish.mish with input dtype %s is not converted to TensorRT%s",
        dtype,
        " (float64 converts with truncate_double=True)" if dtype == torch.float64 else "",
    )
    return False


@dynamo_tensorrt_converter(
    torch.ops.mish.mish.default, capability_validator=mish_validator, supports_dynamic_shapes=True
)
def mish_converter(
    ctx: ConversionContext, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> TRTTensor:
    """torch.ops.mish.mish -> the chosen lowering's layers (``selection.resolve``)."""
    x = args[0]
    if not isinstance(x, TRTTensor):
        x = get_trt_tensor(ctx, x, f"{name}_input")
    chosen = selection.resolve()
    if chosen == "plugin":
        if not can_add_plugin_layers():
            raise plugin.PluginUnavailableError(
                f"Mish lowering 'plugin' was requested for {name}, but this TensorRT ({trt.__version__}) cannot "
                "add plugin layers to a network (INetworkDefinition.add_plugin_v3 is missing, as in TensorRT-RTX).",
                advice="Use set_lowering('native').",
            )
        try:
            return add_mish_plugin(ctx, x, target, name)  # loads the plugin library if needed
        except plugin.PluginUnavailableError as exc:
            raise plugin.PluginUnavailableError(
                f"Mish lowering 'plugin' was requested for {name}, but the plugin cannot be used: {exc}.",
                advice="Use set_lowering('native') to lower Mish to TensorRT layers instead.",
            ) from exc
    return add_mish_native(ctx, x, target, name)
