"""torch-tensorrt conversion of torch.ops.mish: coverage (dry run), the emitted TensorRT layers,
their math, and engine builds. Runs on a CPU with TensorRT-RTX; nothing here executes an engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_mish
from torch_mish.models import YOLOv4CSP, count_layers

IMAGE = 64
# Full depth (all 112 Mish layers), narrow channels: converts in seconds on a CPU.
YOLO_KW = {"width": 0.0625, "depth": 1.0, "num_classes": 3}


def yolo(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return YOLOv4CSP(**YOLO_KW).eval().to(dtype)


def inputs(dynamic: bool, dtype: torch.dtype = torch.float32) -> list:
    import torch_tensorrt

    if dynamic:
        return [
            torch_tensorrt.Input(
                min_shape=(1, 3, IMAGE, IMAGE),
                opt_shape=(2, 3, IMAGE, IMAGE),
                max_shape=(4, 3, IMAGE, IMAGE),
                dtype=dtype,
            )
        ]
    return [torch_tensorrt.Input(shape=(2, 3, IMAGE, IMAGE), dtype=dtype)]


def test_lowering_selection(trt) -> None:  # noqa: ANN001
    import torch_mish.tensorrt as mt

    assert mt.get_lowering() == "auto"
    with mt.lowering("plugin"):
        assert mt.get_lowering() == "plugin"
        with mt.lowering("native"):
            assert mt.get_lowering() == "native"
        assert mt.get_lowering() == "plugin"
    assert mt.get_lowering() == "auto"
    with pytest.raises(ValueError, match="unknown Mish lowering 'fast'"):
        mt.set_lowering("fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("lowering", ["native", "plugin"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_yolo_converts_with_full_coverage(trt, tmp_path, lowering: str, dynamic: bool) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import dry_run

    model = yolo()
    assert count_layers(model)[1] >= 100
    report = dry_run(model, inputs(dynamic), str(tmp_path / "report.txt"), lowering=lowering)
    assert report.coverage == 100.0 and report.engines == 1, report.text


def test_dry_run_detects_fallback(trt, tmp_path) -> None:  # noqa: ANN001
    """The coverage check can fail: keep the op in PyTorch and it must report the split."""
    from torch_mish.tensorrt.inspect import dry_run

    report = dry_run(yolo(), inputs(False), str(tmp_path / "r.txt"), torch_executed_ops={torch.ops.mish.mish.default})
    assert report.coverage < 100.0 and report.engines > 1


def _mish_chains(trt, network) -> list[tuple]:  # noqa: ANN001
    """Every SOFTPLUS activation with the layers that consume it, followed by tensor connectivity
    (not names): [(softplus, tanh, prod)], each cast to its layer class so its parameters read."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    consumers: dict[str, list] = {}
    for layer in layers:
        for j in range(layer.num_inputs):
            consumers.setdefault(layer.get_input(j).name, []).append(layer)

    def as_activation(layer):  # noqa: ANN001, ANN202
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
        chains.append((softplus, tanh, prod))
    return chains


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_native_network_structure(trt, dtype: torch.dtype) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(dtype), inputs(True, dtype), lowering="native")
    chains = _mish_chains(trt, built.network)
    assert len(chains) == 112
    for softplus, tanh, prod in chains:
        assert (softplus.alpha, softplus.beta) == (1.0, 1.0)
        assert prod.op == trt.ElementWiseOperation.PROD
        operands = {prod.get_input(0).name, prod.get_input(1).name}
        assert operands == {softplus.get_input(0).name, tanh.get_output(0).name}, "PROD must multiply x by tanh"
        assert prod.get_output(0).dtype == softplus.get_input(0).dtype == tanh.get_output(0).dtype


def test_native_layer_formulas_compute_mish(trt, gen) -> None:  # noqa: ANN001
    """Evaluate the emitted chain with TensorRT's documented layer formulas (SOFTPLUS:
    alpha * log(exp(beta * x) + 1); TANH; PROD) using the parameters read back from the network.
    A wrong alpha/beta, a missing product or a product with the wrong operand fails here."""
    from torch_mish.tensorrt.inspect import build_network

    model = nn.Sequential(torch_mish.Mish())
    built = build_network(model, inputs(False), lowering="native")
    ((softplus, tanh, prod),) = _mish_chains(trt, built.network)
    values = {built.network.get_input(0).name: torch.randn(10_000, generator=gen, dtype=torch.float64) * 8}
    x = values[softplus.get_input(0).name]
    values[softplus.get_output(0).name] = softplus.alpha * torch.log1p(torch.exp(softplus.beta * x))
    values[tanh.get_output(0).name] = torch.tanh(values[tanh.get_input(0).name])
    assert prod.op == trt.ElementWiseOperation.PROD
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
        pytest.skip("this TensorRT can add plugin layers: covered by test_plugin_network_structure")
    from torch_mish.tensorrt.inspect import build_network

    with pytest.raises(Exception, match="add_plugin_v3"):
        build_network(nn.Sequential(torch_mish.Mish()), inputs(False), lowering="plugin")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_plugin_network_structure_and_engine(plugin_layers, dtype: torch.dtype) -> None:  # noqa: ANN001
    trt = plugin_layers
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(dtype), inputs(True, dtype), lowering="plugin")
    layers = built.layers()
    plugins = [layer for layer in layers if layer.type == trt.LayerType.PLUGIN_V3]
    assert len(plugins) == 112
    assert not [layer for layer in layers if layer.type == trt.LayerType.ACTIVATION and "softplus" in layer.name]
    assert len(built.build_serialized_engine()) > 10_000


def test_unsupported_dtype_stays_out(trt, tmp_path) -> None:  # noqa: ANN001
    """float64 is refused by the validator; with require_full_compilation that is an error, not a
    silently split engine."""
    from torch_mish.tensorrt.converters import mish_validator

    class Node:
        def __init__(self, dtype: torch.dtype) -> None:
            self.args = (torch.fx.Node.__new__(torch.fx.Node),)
            self.args[0].meta = {"val": torch.empty(0, dtype=dtype)}

    assert mish_validator(Node(torch.float32)) and mish_validator(Node(torch.bfloat16))
    assert not mish_validator(Node(torch.float64))
