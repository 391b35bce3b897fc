"""Models, inputs and network readers shared by the TensorRT tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from yolov4_csp import YOLOv4CSP

IMAGE = 64
# Full depth (all 112 Mish layers), narrow channels: converts in seconds on a CPU.
YOLO_KW = {"width": 0.0625, "depth": 1.0, "num_classes": 3}
YOLO_MISH_LAYERS = 112


def yolo(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return YOLOv4CSP(**YOLO_KW).eval().to(dtype)


def inputs(dynamic: bool, dtype: torch.dtype = torch.float32, min_batch: int = 1) -> list:
    import torch_tensorrt

    if dynamic:
        return [
            torch_tensorrt.Input(
                min_shape=(min_batch, 3, IMAGE, IMAGE),
                opt_shape=(2, 3, IMAGE, IMAGE),
                max_shape=(4, 3, IMAGE, IMAGE),
                dtype=dtype,
            )
        ]
    return [torch_tensorrt.Input(shape=(2, 3, IMAGE, IMAGE), dtype=dtype)]


def mish_chains(trt: Any, network: Any) -> list[tuple]:
    """Every SOFTPLUS activation with the layers that consume it, followed by tensor connectivity
    (not names): [(softplus, tanh, prod)], each cast to its layer class so its parameters read."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    consumers: dict[str, list] = {}
    for layer in layers:
        for j in range(layer.num_inputs):
            consumers.setdefault(layer.get_input(j).name, []).append(layer)

    def as_activation(layer: Any) -> Any:
        if layer.type != trt.LayerType.ACTIVATION:
            return None
        layer.__class__ = trt.IActivationLayer
        return layer

    chains = []
    for layer in layers:
        softplus = as_activation(layer)
        if softplus is None or softplus.type != trt.ActivationType.SOFTPLUS:
            continue
        (tanh,) = consumers[softplus.get_output(0).name]
        tanh = as_activation(tanh)
        assert tanh is not None and tanh.type == trt.ActivationType.TANH, f"{softplus.name} not followed by TANH"
        (prod,) = consumers[tanh.get_output(0).name]
        assert prod.type == trt.LayerType.ELEMENTWISE, f"{tanh.name} not followed by an elementwise layer"
        prod.__class__ = trt.IElementWiseLayer
        assert prod.op == trt.ElementWiseOperation.PROD, f"{prod.name} is {prod.op}, not PROD"
        operands = {prod.get_input(0).name, prod.get_input(1).name}
        assert operands == {softplus.get_input(0).name, tanh.get_output(0).name}, "PROD must multiply x by tanh"
        chains.append((softplus, tanh, prod))
    return chains


def plugin_layer_count(trt: Any, network: Any) -> int:
    return sum(network.get_layer(i).type == trt.LayerType.PLUGIN_V3 for i in range(network.num_layers))


def random_rows(
    batch: int, num_rows: int, classes: int, gen: torch.Generator, net: tuple[float, float] = (416.0, 416.0)
) -> torch.Tensor:
    """float32 darknet rows (N, R, 5 + classes) in input pixels of a ``net`` (width, height) input:
    boxes clustered around a few centres (so that NMS suppresses, and DIoU differs from IoU), sizes
    up to 30 % of the input, objectness and class probabilities uniform in [0, 1]."""
    size = torch.tensor(net)
    centres = torch.rand(batch, max(1, num_rows // 6), 2, generator=gen) * size
    pick = torch.randint(0, centres.shape[1], (batch, num_rows, 1), generator=gen).expand(-1, -1, 2)
    xy = centres.gather(1, pick) + torch.randn(batch, num_rows, 2, generator=gen) * 4
    wh = torch.rand(batch, num_rows, 2, generator=gen) * size * 0.3 + 2
    scores = torch.rand(batch, num_rows, 1 + classes, generator=gen)
    return torch.cat([xy, wh, scores], dim=-1)
