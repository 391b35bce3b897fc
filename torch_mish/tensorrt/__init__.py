"""TensorRT lowering of torch.ops.mish for torch-tensorrt.

Importing this module registers the converters for ``torch.ops.mish.mish`` and
``torch.ops.mish.darknet_nms`` (``torch_mish.tensorrt.nms``) and loads the torch_mish
TensorRT plugin library into TensorRT's plugin registry when one was built for the installed
TensorRT (so saved engines that contain the plugin deserialize). It imports on a host without a GPU
too (see ``torch_mish.allow_tensorrt_without_gpu``): networks and engines can be built there with
TensorRT-RTX, not run.

Lowerings (``set_lowering`` / ``lowering`` / ``TORCH_MISH_TRT_LOWERING``):
  native  (default) SOFTPLUS(alpha=1, beta=1) -> TANH -> PROD with the input, in the input's dtype:
          TensorRT can fuse these layers.
  plugin  the TorchMish IPluginV3 layer: the same CUDA kernel as the torch op, opaque to TensorRT's
          fusion passes.
"""

from __future__ import annotations

from torch_mish._cpu_tensorrt import allow_tensorrt_without_gpu

try:
    with allow_tensorrt_without_gpu():  # torch_tensorrt asks for the GPU's capability at import
        import torch_tensorrt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "torch_mish.tensorrt needs torch-tensorrt built for your torch "
        "(pip install torch-tensorrt, or torch-tensorrt-rtx for TensorRT-RTX). Original error: " + str(exc)
    ) from exc

from torch_mish.tensorrt import converters as _converters  # noqa: F401, E402 - registers the converters
from torch_mish.tensorrt import inspect  # noqa: E402
from torch_mish.tensorrt import nms as _nms  # noqa: F401, E402 - registers the darknet_nms converter
from torch_mish.tensorrt.compile import compile, load, save  # noqa: E402
from torch_mish.tensorrt.plugin import (  # noqa: E402
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    PluginUnavailableError,
    load_plugin,
    plugin_available,
    plugin_library_path,
)
from torch_mish.tensorrt.selection import LOWERINGS, get_lowering, lowering, set_lowering  # noqa: E402
from torch_mish.tensorrt.support import engine_runtime_unavailable_reason  # noqa: E402

__all__ = [
    "LOWERINGS",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "PluginUnavailableError",
    "compile",
    "engine_runtime_unavailable_reason",
    "get_lowering",
    "inspect",
    "load",
    "load_plugin",
    "lowering",
    "plugin_available",
    "plugin_library_path",
    "save",
    "set_lowering",
]

load_plugin(missing_ok=True)
