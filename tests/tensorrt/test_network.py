"""torch_mish.tensorrt.network without the command line: networks from ONNX files that the tests export
(TensorRT-RTX parses and builds them on the CPU), described by the same BuiltNetwork as a model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorrt_helpers import mish_chains
from torch import nn

import torch_mish

pytest.importorskip("onnxscript", reason="onnxscript is not installed")

SIZE = 16


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), torch_mish.Mish(), nn.Conv2d(8, 4, 1)).eval()


def export(
    path: Path, *, batch: int = 2, dynamic: bool = True, dtype: torch.dtype = torch.float32, plugin: bool = False
) -> Path:
    import torch_mish.onnx

    shapes = ({0: torch.export.Dim("batch", min=1, max=8)},) if dynamic else None
    torch_mish.onnx.export(
        small_model().to(dtype),
        (torch.rand(batch, 3, SIZE, SIZE, dtype=dtype),),
        path,
        plugin=plugin,
        external_data=False,
        dynamic_shapes=shapes,
        input_names=["x"],
    )
    return path


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tmp_path_factory.mktemp("onnx") / "dynamic.onnx")


def test_an_onnx_network_is_described_and_built(trt, dynamic_onnx: Path) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.network import build_onnx_network

    built = build_onnx_network(dynamic_onnx, batch=(1, 3, 6))
    ((softplus, _tanh, _prod),) = mish_chains(trt, built.network)  # ONNX Mish as SOFTPLUS -> TANH -> PROD
    assert (softplus.alpha, softplus.beta) == (1.0, 1.0)
    assert built.inputs() == [{"name": "x", "shape": [-1, 3, SIZE, SIZE], "dtype": "FLOAT"}]
    (output,) = built.outputs()
    assert output["shape"] == [-1, 4, SIZE, SIZE] and output["dtype"] == "FLOAT"
    assert built.profiles() == [{"x": ((1, 3, SIZE, SIZE), (3, 3, SIZE, SIZE), (6, 3, SIZE, SIZE))}]
    table = built.layer_table()
    assert [row["index"] for row in table] == list(range(built.network.num_layers))
    assert [row["type"] for row in table] == [str(layer.type).rsplit(".", 1)[-1] for layer in built.layers()]
    types = built.layer_types()
    assert sum(types.values()) == built.network.num_layers and types["CONVOLUTION"] == 2
    assert built.precisions() == ["FLOAT"]
    engine = built.build_serialized_engine(timing_cache=b"")
    assert len(engine) > 1000 and built.timing_cache
    # the cache it wrote is one TensorRT reads back
    assert len(build_onnx_network(dynamic_onnx).build_serialized_engine(timing_cache=built.timing_cache)) > 1000


def test_a_model_network_is_the_same_class(trt) -> None:  # noqa: ANN001
    """The description of a torch-tensorrt network comes from the same methods: its input, by the name
    of the model's forward argument, and its profile."""
    import torch_tensorrt

    from torch_mish.tensorrt.inspect import build_network
    from torch_mish.tensorrt.network import BuiltNetwork

    shapes = ((1, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), (4, 3, SIZE, SIZE))
    built = build_network(
        small_model(), torch_tensorrt.Input(min_shape=shapes[0], opt_shape=shapes[1], max_shape=shapes[2])
    )
    assert isinstance(built, BuiltNetwork)
    assert built.inputs() == [{"name": "input", "shape": [-1, 3, SIZE, SIZE], "dtype": "FLOAT"}]
    assert built.profiles() == [{"input": shapes}]
    assert build_network(small_model(), torch.rand(2, 3, SIZE, SIZE)).profiles() == []  # static: none
    assert built.precisions() == ["FLOAT"] and built.layer_types()["CONVOLUTION"] == 2


def test_a_float16_file_gives_a_float16_network(trt, tmp_path: Path) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.network import OnnxNetworkError, build_onnx_network

    half = export(tmp_path / "half.onnx", dtype=torch.float16)
    built = build_onnx_network(half, dtype=torch.float16)
    assert built.precisions() == ["HALF"] and built.inputs()[0]["dtype"] == "HALF"
    with pytest.raises(OnnxNetworkError, match="input x is HALF; .* a float32 engine needs") as info:
        build_onnx_network(half, dtype=torch.float32)
    assert info.value.problem == "dtype"


def test_shapes_the_file_cannot_take(trt, tmp_path: Path, dynamic_onnx: Path) -> None:  # noqa: ANN001
    from torch_mish.tensorrt.network import OnnxNetworkError, build_onnx_network

    static = export(tmp_path / "static.onnx", batch=2, dynamic=False)
    assert build_onnx_network(static).profiles() == []  # static: no profile, as torch-tensorrt builds
    assert build_onnx_network(static, batch=(2, 2, 2)).inputs()[0]["shape"] == [2, 3, SIZE, SIZE]
    for kwargs, problem, message in [
        ({"batch": (1, 2, 4)}, "batch", "static batch of 2; export the file with the batch range 1:2:4"),
        ({"batch": (4, 4, 4)}, "batch", "static batch of 2"),
        ({"image_size": (32, 32)}, "shape", f"is {SIZE}x{SIZE} \\(HxW\\), not 32x32"),
    ]:
        with pytest.raises(OnnxNetworkError, match=message) as info:
            build_onnx_network(static, **kwargs)
        assert info.value.problem == problem
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(OnnxNetworkError, match="ONNX parser refused the file") as info:
        build_onnx_network(garbage)
    assert info.value.problem == "parse"


def test_dynamic_image_dimensions_need_the_image_size(trt, tmp_path: Path) -> None:  # noqa: ANN001
    import torch_mish.onnx
    from torch_mish.tensorrt.network import OnnxNetworkError, build_onnx_network

    path = tmp_path / "hw.onnx"
    hw = {2: torch.export.Dim("h", min=8, max=64), 3: torch.export.Dim("w", min=8, max=64)}
    torch_mish.onnx.export(
        small_model(), (torch.rand(1, 3, SIZE, SIZE),), path, external_data=False, dynamic_shapes=(hw,)
    )
    with pytest.raises(OnnxNetworkError, match="dynamic dimensions") as info:
        build_onnx_network(path)
    assert info.value.problem == "shape"
    built = build_onnx_network(path, image_size=(24, 40))
    ((shapes,),) = [list(p.values()) for p in built.profiles()]
    assert shapes == ((1, 3, 24, 40),) * 3


def test_torchmish_nodes_need_a_tensorrt_with_plugins(trt, tmp_path: Path) -> None:  # noqa: ANN001
    from torch_mish.tensorrt import PluginUnavailableError
    from torch_mish.tensorrt.network import OnnxNetworkError, build_onnx_network
    from torch_mish.tensorrt.support import can_add_plugin_layers

    path = export(tmp_path / "plugin.onnx", plugin=True)
    if can_add_plugin_layers() and torch_mish.tensorrt.plugin_available():
        built = build_onnx_network(path)
        assert built.layer_types().get("PLUGIN_V3") == 1
        return
    with pytest.raises((OnnxNetworkError, PluginUnavailableError)) as info:
        build_onnx_network(path)
    if isinstance(info.value, OnnxNetworkError):  # the library loaded, this TensorRT cannot hold plugin layers
        assert info.value.problem == "plugin_nodes" and "TorchMish" in str(info.value)
