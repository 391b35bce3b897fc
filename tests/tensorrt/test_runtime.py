"""End to end with a TensorRT runtime: compile, run, compare with PyTorch; save, reload in a fresh
process, run; inspect the engine. These need a GPU that the installed TensorRT can run engines on
(skipped here: TensorRT-RTX refuses compute capability 9.0 and no full TensorRT is installable)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_mish_close
from yolov4_csp import YOLOv4CSP

YOLO_KW = {"width": 0.25, "depth": 1.0, "num_classes": 80}


def model_and_input(dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = YOLOv4CSP(**YOLO_KW).eval().cuda().to(dtype)
    return model, torch.randn(2, 3, 128, 128, device="cuda", dtype=dtype)


TOLERANCE = {torch.float32: (1e-3, 1e-3), torch.float16: (3e-2, 3e-2), torch.bfloat16: (1e-1, 1e-1)}


@pytest.mark.parametrize("lowering", ["native", "plugin"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compile_run_matches_pytorch(trt_runtime, lowering: str, dtype: torch.dtype) -> None:  # noqa: ANN001
    import torch_mish.tensorrt as mt

    model, x = model_and_input(dtype)
    compiled = mt.compile(model, [x], lowering=lowering)
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    rtol, atol = TOLERANCE[dtype]  # convolutions differ between cuDNN and TensorRT tactics
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_single_mish_engine_is_accurate(trt_runtime, dtype: torch.dtype, gen) -> None:  # noqa: ANN001
    """The plugin engine runs the torch op's kernel: the operator's accuracy contract holds."""
    import torch_mish
    import torch_mish.tensorrt as mt

    model = torch.nn.Sequential(torch.nn.Identity(), torch_mish.Mish()).cuda()
    x = (torch.randn(4, 1000, generator=gen) * 8).to(device="cuda", dtype=dtype)
    compiled = mt.compile(model, [x], lowering="plugin")
    with torch.no_grad():
        from helpers import mish_reference

        assert_mish_close(compiled(x), mish_reference(x), f"plugin engine {dtype}")


@pytest.mark.parametrize("lowering", ["native", "plugin"])
def test_save_and_load_in_fresh_process(trt_runtime, tmp_path, lowering: str) -> None:  # noqa: ANN001
    import torch_mish.tensorrt as mt

    model, x = model_and_input(torch.float16)
    compiled = mt.compile(model, [x], lowering=lowering)
    path = tmp_path / "yolo_trt.ep"
    mt.save(compiled, path, [x])
    torch.save(x.cpu(), tmp_path / "x.pt")
    with torch.no_grad():
        expected = [t.float().cpu() for t in compiled(x)]
    script = textwrap.dedent(f"""
        import json, torch
        import torch_mish.tensorrt as mt  # registers the plugin before the engine is deserialized
        program = mt.load({str(path)!r})
        x = torch.load({str(tmp_path / "x.pt")!r}).cuda()
        out = program.module()(x)
        torch.save([t.float().cpu() for t in out], {str(tmp_path / "out.pt")!r})
        print(json.dumps({{"ok": True}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["ok"]
    for e, g in zip(expected, torch.load(tmp_path / "out.pt"), strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_engine_inspector_shows_fused_mish(trt_runtime, tmp_path) -> None:  # noqa: ANN001
    """TensorRT fuses SOFTPLUS -> TANH -> PROD (native lowering) into one kernel: no engine layer
    is a lone softplus activation."""
    trt = trt_runtime
    import torch_tensorrt

    from torch_mish.tensorrt.inspect import build_network

    model, _ = model_and_input(torch.float16)
    built = build_network(model, [torch_tensorrt.Input(shape=(2, 3, 128, 128), dtype=torch.float16)], lowering="native")
    engine_bytes = built.build_serialized_engine()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    names = [layer if isinstance(layer, str) else layer.get("Name", "") for layer in info["Layers"]]
    fused = [n for n in names if "softplus" in n and "tanh" in n]
    lone = [n for n in names if "softplus" in n and "tanh" not in n]
    (tmp_path / "layers.json").write_text(json.dumps(names, indent=1))
    assert fused, names[:20]
    assert not lone, lone[:5]


def test_min_one_profile_runs_batch_one(trt_runtime) -> None:  # noqa: ANN001
    """Input(min_shape=(1, ...)): the engine's profile has min 1 (whatever torch-tensorrt's warning
    says about 2) and it runs batch 1 and the max batch."""
    import torch_tensorrt

    import torch_mish.tensorrt as mt
    from torch_mish.tensorrt.inspect import build_network

    model, _ = model_and_input(torch.float16)
    spec = torch_tensorrt.Input(
        min_shape=(1, 3, 128, 128), opt_shape=(2, 3, 128, 128), max_shape=(4, 3, 128, 128), dtype=torch.float16
    )
    engine_bytes = build_network(model, spec, lowering="native").build_serialized_engine()
    engine = trt_runtime.Runtime(trt_runtime.Logger(trt_runtime.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    name = engine.get_tensor_name(0)
    assert tuple(engine.get_tensor_profile_shape(name, 0)[0]) == (1, 3, 128, 128)
    compiled = mt.compile(model, [spec], lowering="native")
    for batch in (1, 4):
        x = torch.randn(batch, 3, 128, 128, device="cuda", dtype=torch.float16)
        with torch.no_grad():
            for e, g in zip(model(x), compiled(x), strict=True):
                torch.testing.assert_close(g, e, rtol=3e-2, atol=3e-2)
