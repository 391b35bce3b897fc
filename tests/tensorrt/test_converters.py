"""torch_mish.tensorrt.converters: the TensorRT layers each lowering emits, their math, the dtypes
that convert, and engine builds. Runs on a CPU with TensorRT-RTX; nothing here executes an engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tensorrt_helpers import YOLO_MISH_LAYERS, inputs, mish_chains, plugin_layer_count, yolo
from torch import nn

import torch_mish


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_native_network_structure(trt, dtype: torch.dtype) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(dtype), inputs(True, dtype), lowering="native")
    chains = mish_chains(trt, built.network)
    assert len(chains) == YOLO_MISH_LAYERS
    assert plugin_layer_count(trt, built.network) == 0
    for softplus, tanh, prod in chains:
        assert (softplus.alpha, softplus.beta) == (1.0, 1.0)
        assert prod.get_output(0).dtype == softplus.get_input(0).dtype == tanh.get_output(0).dtype


def test_native_layer_formulas_compute_mish(trt, gen) -> None:  # noqa: ANN001
    """Evaluate the emitted chain with TensorRT's documented layer formulas (SOFTPLUS:
    alpha * log(exp(beta * x) + 1); TANH; PROD) using the parameters read back from the network.
    A wrong alpha/beta, a missing product or a product with the wrong operand fails here."""
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(nn.Sequential(torch_mish.Mish()), inputs(False), lowering="native")
    ((softplus, tanh, prod),) = mish_chains(trt, built.network)
    values = {built.network.get_input(0).name: torch.randn(10_000, generator=gen, dtype=torch.float64) * 8}
    x = values[softplus.get_input(0).name]
    values[softplus.get_output(0).name] = softplus.alpha * torch.log1p(torch.exp(softplus.beta * x))
    values[tanh.get_output(0).name] = torch.tanh(values[tanh.get_input(0).name])
    y = values[prod.get_input(0).name] * values[prod.get_input(1).name]
    torch.testing.assert_close(y, F.mish(x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_native_engine_builds(trt, dtype: torch.dtype, dynamic: bool) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(dtype), inputs(dynamic, dtype), lowering="native")
    engine = built.build_serialized_engine()
    assert len(engine) > 10_000


def test_plugin_lowering_refuses_clearly_without_plugin_layers(trt) -> None:  # noqa: ANN001
    """Where the network API cannot take plugin layers (TensorRT-RTX), 'plugin' is an error that
    says so: never a silent fallback."""
    from torch_mish.tensorrt.support import can_add_plugin_layers

    if can_add_plugin_layers():
        pytest.skip(
            f"needs a TensorRT without plugin layers (TensorRT-RTX): {trt.__name__} {trt.__version__} adds them,"
            " which the plugin network test covers"
        )
    from torch_mish.tensorrt.inspect import build_network

    with pytest.raises(Exception, match="add_plugin_v3"):
        build_network(nn.Sequential(torch_mish.Mish()), inputs(False), lowering="plugin")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_plugin_network_structure_and_engine(plugin_layers, plugin_library, dtype: torch.dtype) -> None:  # noqa: ANN001
    trt = plugin_layers
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(dtype), inputs(True, dtype), lowering="plugin")
    assert plugin_layer_count(trt, built.network) == YOLO_MISH_LAYERS
    assert not mish_chains(trt, built.network)
    assert len(built.build_serialized_engine()) > 10_000


def test_float64_converts_only_with_truncate_double(trt, tmp_path) -> None:  # noqa: ANN001
    """float64 is left to PyTorch (a split graph, which compile's require_full_compilation turns
    into an error), unless torch-tensorrt's truncate_double=True runs it in float32, as for nn.Mish."""
    from torch_mish.tensorrt.inspect import dry_run

    model = yolo(torch.float64)
    refused = dry_run(model, inputs(False, torch.float64), tmp_path / "refused.txt", lowering="native")
    assert refused.coverage < 100.0 and refused.network is None, refused.text
    # With truncate_double the validator admits the same node (asked directly: dry_run narrows a float64
    # model to float32 before torch-tensorrt sees it, test_inspect.py).
    from torch_tensorrt.dynamo import CompilationSettings

    from torch_mish.tensorrt.converters import mish_validator

    program = torch.export.export(model, (torch.randn(1, 3, 32, 32, dtype=torch.float64),))
    nodes = [n for n in program.graph.nodes if n.target == torch.ops.mish.mish.default]
    assert len(nodes) == YOLO_MISH_LAYERS
    with torch_mish.allow_tensorrt_without_gpu():  # CompilationSettings asks for the current GPU
        truncating, plain = CompilationSettings(truncate_double=True), CompilationSettings()
    assert all(mish_validator(n, truncating) for n in nodes)
    assert not any(mish_validator(n, plain) for n in nodes)


def test_the_registered_converter_is_mish_converter(trt) -> None:  # noqa: ANN001
    """torch-tensorrt's registry holds torch_mish's converter under the converter's own name, apart from
    the model-conversion API torch_mish.convert_mish."""
    from torch_tensorrt.dynamo.conversion import DYNAMO_CONVERTERS

    from torch_mish.tensorrt import converters

    registered, _ = DYNAMO_CONVERTERS.get_all_converters_with_target(torch.ops.mish.mish.default)
    assert registered == [converters.mish_converter]
    assert not hasattr(converters, "convert_mish")
