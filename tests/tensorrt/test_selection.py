"""torch_mish.tensorrt.selection: which lowering the converter emits, from code or the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tensorrt_helpers import YOLO_MISH_LAYERS, inputs, mish_chains, plugin_layer_count, yolo


def test_lowering_selection(trt) -> None:  # noqa: ANN001
    import torch_mish.tensorrt as mt

    assert mt.get_lowering() == "native"
    with mt.lowering("plugin"):
        assert mt.get_lowering() == "plugin"
        with mt.lowering("native"):
            assert mt.get_lowering() == "native"
        assert mt.get_lowering() == "plugin"
    assert mt.get_lowering() == "native"
    with pytest.raises(ValueError, match="unknown Mish lowering 'fast'"):
        mt.set_lowering("fast")  # type: ignore[arg-type]


def test_the_default_emits_the_native_layers(trt) -> None:  # noqa: ANN001
    """No lowering chosen: the native chain (what TensorRT can fuse), not the plugin."""
    from torch_mish.tensorrt.inspect import build_network

    built = build_network(yolo(), inputs(False))
    assert len(mish_chains(trt, built.network)) == YOLO_MISH_LAYERS
    assert plugin_layer_count(trt, built.network) == 0


def test_auto_is_gone_with_a_message(trt) -> None:  # noqa: ANN001
    """'auto' only ever meant 'native': it is refused, saying so, wherever a lowering is named."""
    import torch_mish.tensorrt as mt
    from torch_mish.tensorrt.inspect import build_network

    assert "auto" not in mt.LOWERINGS
    gone = "'auto' is gone: it always emitted 'native'"
    with pytest.raises(ValueError, match=gone):
        mt.set_lowering("Auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=gone), mt.lowering("auto"):  # type: ignore[arg-type]
        pass
    with pytest.raises(ValueError, match=gone):
        build_network(yolo(), inputs(False), lowering="auto")
    result = _lowering_from_env(" AUTO ")
    assert result.returncode != 0 and "TORCH_MISH_TRT_LOWERING is gone" in result.stderr, result.stderr[-2000:]


def _lowering_from_env(value: str) -> subprocess.CompletedProcess:
    code = (
        "import torch_mish\n"
        "with torch_mish.allow_tensorrt_without_gpu():\n"
        "    import torch_mish.tensorrt as mt\n"
        "print(mt.get_lowering())\n"
    )
    env = {**__import__("os").environ, "TORCH_MISH_TRT_LOWERING": value}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("value,expected", [("native", "native"), ("Plugin", "plugin"), (" NATIVE ", "native")])
def test_environment_variable_sets_the_default(trt, value: str, expected: str) -> None:  # noqa: ANN001
    result = _lowering_from_env(value)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == expected


def test_bad_environment_value_names_the_variable(trt) -> None:  # noqa: ANN001
    result = _lowering_from_env("fastest")
    assert result.returncode != 0
    assert "TORCH_MISH_TRT_LOWERING" in result.stderr and "'fastest'" in result.stderr, result.stderr[-2000:]
