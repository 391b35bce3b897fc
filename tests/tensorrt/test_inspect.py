"""torch_mish.tensorrt.inspect: coverage from this run with the chosen lowering's converter, the
network's optimization profiles read back, tensors or Inputs as inputs."""

from __future__ import annotations

import pytest
import torch
from tensorrt_helpers import IMAGE, YOLO_MISH_LAYERS, inputs, mish_chains, plugin_layer_count, yolo
from torch import nn

import torch_mish


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_yolo_converts_with_full_coverage_native(trt, tmp_path, dynamic: bool) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import dry_run

    report = dry_run(yolo(), inputs(dynamic), tmp_path / "report.txt", lowering="native")
    assert report.coverage == 100.0 and report.engines == 1 and report.fully_converted, report.text
    assert report.mish_ops == YOLO_MISH_LAYERS and report.lowering == "native"
    # The converter ran: the network holds one SOFTPLUS -> TANH -> PROD chain per Mish.
    assert len(mish_chains(trt, report.network.network)) == YOLO_MISH_LAYERS
    assert (tmp_path / "report.txt").read_text() == report.text


def test_plugin_coverage_comes_from_the_plugin_converter(trt) -> None:  # noqa: ANN001
    """dry_run(lowering='plugin') runs the plugin converter: plugin layers where the TensorRT can hold
    them, the converter's own error where it cannot (TensorRT-RTX), never a bare 100 %."""
    from torch_mish.tensorrt import PluginUnavailableError
    from torch_mish.tensorrt.inspect import dry_run
    from torch_mish.tensorrt.support import can_add_plugin_layers

    model = yolo()
    if not can_add_plugin_layers():
        with pytest.raises(PluginUnavailableError, match="add_plugin_v3"):
            dry_run(model, inputs(False), lowering="plugin")
        return
    report = dry_run(model, inputs(False), lowering="plugin")
    assert report.fully_converted and plugin_layer_count(trt, report.network.network) == YOLO_MISH_LAYERS


def test_dry_run_detects_fallback(trt, tmp_path) -> None:  # noqa: ANN001
    """The coverage check can fail: keep the op in PyTorch and it must report the split."""
    from torch_mish.tensorrt.inspect import dry_run

    report = dry_run(yolo(), inputs(False), torch_executed_ops={torch.ops.mish.mish.default})
    assert report.coverage < 100.0 and report.engines > 1 and not report.fully_converted


def test_report_is_from_this_run(trt, tmp_path) -> None:  # noqa: ANN001
    """torch-tensorrt keeps an existing report file; dry_run must not read a previous model's back."""
    from torch_mish.tensorrt.inspect import dry_run

    path = tmp_path / "report.txt"
    first = dry_run(nn.Sequential(nn.Conv2d(3, 4, 3), torch_mish.Mish()).eval(), [torch.randn(1, 3, 16, 16)], path)
    second = dry_run(yolo(), inputs(False), path)
    assert first.total_ops != second.total_ops
    assert second.mish_ops == YOLO_MISH_LAYERS and path.read_text() == second.text


def test_tensors_are_inputs_too(trt) -> None:  # noqa: ANN001
    """A bare tensor is one input of its shape (not split along its first dimension)."""
    from torch_mish.tensorrt.inspect import build_network, dry_run

    x = torch.randn(2, 3, IMAGE, IMAGE)
    built = build_network(yolo(), x, lowering="native")
    assert built.network.num_inputs == 1 and tuple(built.network.get_input(0).shape) == (2, 3, IMAGE, IMAGE)
    assert dry_run(yolo(), [x]).fully_converted


@pytest.mark.parametrize("min_batch", [1, 2])
def test_profile_read_back_from_the_network(trt, min_batch: int) -> None:  # noqa: ANN001
    """The optimization profile TensorRT will build with is the Input's min/opt/max: torch-tensorrt
    warns that a min of 1 becomes 2 (torch.export's 0/1 specialization), but the profile keeps 1."""
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(), inputs(True, min_batch=min_batch), lowering="native")
    ((shapes,),) = [list(p.values()) for p in built.profiles()]
    assert shapes == ((min_batch, 3, IMAGE, IMAGE), (2, 3, IMAGE, IMAGE), (4, 3, IMAGE, IMAGE))
    assert len(built.build_serialized_engine()) > 10_000


def test_layer_types_count_the_network(trt) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(nn.Sequential(nn.Conv2d(3, 4, 3), torch_mish.Mish()).eval(), torch.randn(1, 3, 8, 8))
    types = built.layer_types()
    assert (
        types.get("ACTIVATION") == 2 and types.get("ELEMENTWISE", 0) >= 1 and sum(types.values()) == len(built.layers())
    )


def test_float64_model_with_batchnorm_builds_with_truncate_double(trt) -> None:  # noqa: ANN001
    """truncate_double=True runs float64 in float32 (torch-tensorrt's meaning): a float64 model with
    BatchNorm builds and dry-runs on any host, as a Conv+Mish one did; the user's model stays float64."""
    from torch_mish.tensorrt.inspect import build_network, dry_run

    model = yolo(torch.float64)
    for spec in (inputs(False, torch.float64), torch.randn(2, 3, IMAGE, IMAGE, dtype=torch.float64)):
        built = build_network(model, spec, lowering="native", truncate_double=True)
        assert len(mish_chains(trt, built.network)) == YOLO_MISH_LAYERS
        assert built.layer_types().get("SCALE", 0) + built.layer_types().get("NORMALIZATION", 0) > 0
        assert built.network.get_input(0).dtype == trt.DataType.FLOAT
    report = dry_run(model, inputs(True, torch.float64), lowering="native", truncate_double=True)
    assert report.fully_converted and report.mish_ops == YOLO_MISH_LAYERS, report.text
    assert len(report.network.build_serialized_engine()) > 10_000
    assert {p.dtype for p in model.parameters()} == {torch.float64}
