"""TensorRT's ONNX parser on torch_mish's ONNX export: the standard Mish imports and builds an engine
(TensorRT-RTX on the CPU); TorchMish plugin nodes need a TensorRT with plugin support."""

from __future__ import annotations

import pytest
import torch
from tensorrt_helpers import mish_chains
from torch import nn

import torch_mish

pytest.importorskip("onnxscript", reason="onnxscript is not installed")


def export(tmp_path, plugin: bool) -> bytes:  # noqa: ANN001
    import torch_mish.onnx as mish_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), torch_mish.Mish()).eval()
    path = tmp_path / "m.onnx"
    mish_onnx.export(
        model,
        (torch.randn(2, 3, 16, 16),),
        path,
        plugin=plugin,
        external_data=False,  # one file: the weights travel in the bytes handed to the parser
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=8)},),
    )
    return path.read_bytes()


def parse_and_build(trt, data: bytes):  # noqa: ANN001, ANN201
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(data)
    errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
    if not ok:
        return network, None, errors
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, (1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))
    config.add_optimization_profile(profile)
    return network, builder.build_serialized_network(network, config), errors


def test_standard_mish_parses_and_builds(trt, tmp_path) -> None:  # noqa: ANN001
    network, engine, errors = parse_and_build(trt, export(tmp_path, plugin=False))
    assert not errors, errors
    # ONNX Mish is imported as SOFTPLUS -> TANH -> PROD(x, .): the chain, by connectivity and type.
    ((softplus, _tanh, _prod),) = mish_chains(trt, network)
    assert (softplus.alpha, softplus.beta) == (1.0, 1.0)
    assert engine is not None and engine.nbytes > 0


def test_plugin_nodes_parse_into_plugin_layers(plugin_layers, plugin_library, tmp_path) -> None:  # noqa: ANN001
    trt = plugin_layers
    network, engine, errors = parse_and_build(trt, export(tmp_path, plugin=True))
    assert not errors, errors
    kinds = [network.get_layer(i).type for i in range(network.num_layers)]
    assert trt.LayerType.PLUGIN_V3 in kinds and engine is not None
