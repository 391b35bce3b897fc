"""TensorRT lowering of torch.ops.mish for torch-tensorrt.

Importing this module registers the converters for ``torch.ops.mish.mish`` and loads the torch_mish
TensorRT plugin library into TensorRT's plugin registry when one was built for the installed
TensorRT (so saved engines that contain the plugin deserialize).

Lowerings (``set_lowering`` / ``lowering``):
  native  SOFTPLUS(alpha=1, beta=1) -> TANH -> PROD with the input: TensorRT fuses the chain into
          one pointwise kernel, and into a preceding convolution where it can.
  plugin  the TorchMish IPluginV3 layer: the same CUDA kernel as the torch op.
  auto    (default) native, which TensorRT can fuse; a plugin is opaque to its fusion passes.
"""

from __future__ import annotations

try:
    import torch_tensorrt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "torch_mish.tensorrt needs torch-tensorrt matching your torch (pip install torch-tensorrt, or "
        "torch-tensorrt-rtx for TensorRT-RTX). On a machine without a GPU, call "
        "torch_mish.allow_tensorrt_without_gpu() first. Original error: " + str(exc)
    ) from exc

from torch_mish.tensorrt import converters as _converters  # noqa: F401 - registers the converters
from torch_mish.tensorrt.compile import compile, load, save
from torch_mish.tensorrt.plugin import (
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    PluginUnavailableError,
    load_plugin,
    plugin_available,
    plugin_library_path,
)
from torch_mish.tensorrt.selection import LOWERINGS, get_lowering, lowering, set_lowering

__all__ = [
    "LOWERINGS",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "PluginUnavailableError",
    "compile",
    "get_lowering",
    "load",
    "load_plugin",
    "lowering",
    "plugin_available",
    "plugin_library_path",
    "save",
    "set_lowering",
]

load_plugin(missing_ok=True)
