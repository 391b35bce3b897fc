"""What the installed TensorRT can do on this machine: one answer for the converters, the tests
and the demo."""

from __future__ import annotations

from functools import cache

import numpy as np
import tensorrt as trt
import torch

# Compute capabilities TensorRT-RTX runs engines on (its own error message lists them: 8.0 8.6 8.9
# 12.0 12.1 and newer); it refuses 9.0 (H100/H200).
RTX_RUNTIME_CAPABILITIES = {(8, 0), (8, 6), (8, 9), (12, 0), (12, 1)}


def is_tensorrt_rtx() -> bool:
    """True when ``tensorrt`` is TensorRT-RTX (torch-tensorrt-rtx aliases tensorrt_rtx to it)."""
    return trt.__name__.startswith("tensorrt_rtx")


def can_add_plugin_layers() -> bool:
    """False where the network API has no add_plugin_v3 (TensorRT-RTX 1.6)."""
    return hasattr(trt.INetworkDefinition, "add_plugin_v3")


def engine_runtime_unavailable_reason() -> str | None:
    """Why no TensorRT engine can run here, or None if one can."""
    if not torch.cuda.is_available():
        return "no CUDA device: TensorRT engines need a GPU to run"
    cc = torch.cuda.get_device_capability()
    if is_tensorrt_rtx() and cc not in RTX_RUNTIME_CAPABILITIES and cc < (12, 0):
        return f"TensorRT-RTX cannot run engines on compute capability {cc[0]}.{cc[1]}; needs full TensorRT"
    return None


@cache
def nms_engine_unavailable_reason() -> str | None:
    """Why this TensorRT cannot build an engine with an ``INMSLayer`` here, or None if it can.
    TensorRT-RTX (1.6, 1.7) in CPU-only mode has no implementation of the layer: its builder fails
    with "NMS has no runners that implement it". Probed once with a one-layer network."""
    builder = trt.Builder(trt.Logger(trt.Logger.INTERNAL_ERROR))
    network = builder.create_network(0)
    boxes = network.add_input("boxes", trt.float32, (1, 8, 4))
    scores = network.add_input("scores", trt.float32, (1, 8, 2))
    limit = network.add_constant((), trt.Weights(np.array(4, np.int32))).get_output(0)
    network.mark_output(network.add_nms(boxes, scores, limit).get_output(0))
    if builder.build_serialized_network(network, builder.create_builder_config()) is not None:
        return None
    return f"{trt.__name__} {trt.__version__} cannot build an engine with an INMSLayer on this host (no implementation)"
