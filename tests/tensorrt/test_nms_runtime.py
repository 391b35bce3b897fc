"""darknet_nms in engines that run: compiled with torch_mish.tensorrt.compile, run on the GPU, compared
with the op on the same rows; a DIoU engine saved and reloaded in a fresh process. These need a GPU
that the installed TensorRT can run engines on (skipped here: TensorRT-RTX refuses compute capability
9.0, no full TensorRT is installable), and the DIoU kinds a TensorRT that can add plugin layers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from tensorrt_helpers import random_rows
from torch import nn

from torch_mish.darknet import Darknet, Detector, packaged_cfg

NET = (608.0, 416.0)
OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


class Nms(nn.Module):
    def __init__(self, kind: str, max_det: int = 100) -> None:
        super().__init__()
        self.args = (0.25, 0.45, max_det, kind, 0.75, *NET)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.mish.darknet_nms(rows, *self.args)


def dynamic_rows(num_rows: int, classes: int, dtype: torch.dtype):  # noqa: ANN201
    import torch_tensorrt

    shape = (num_rows, 5 + classes)
    return torch_tensorrt.Input(min_shape=(1, *shape), opt_shape=(2, *shape), max_shape=(8, *shape), dtype=dtype)


def assert_same(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...], what: str) -> None:
    for name, g, e in zip(OUTPUTS, got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape, f"{what}: {name}"
        assert torch.equal(g, e), f"{what}: {name} differs from the op"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_default_engine_matches_the_op(trt_runtime, dtype: torch.dtype, gen) -> None:  # noqa: ANN001
    """kind 'default' through INMSLayer: on random rows (no IoU within rounding of the threshold,
    fewer candidates than the TopK box limit, no equal scores) TensorRT's NMS and darknet's agree,
    so the engine gives the op's outputs. A difference here is one of those listed in
    torch_mish/tensorrt/nms.py."""
    import torch_mish.tensorrt as mt

    model = Nms("default")
    compiled = mt.compile(model, [dynamic_rows(500, 6, dtype)])
    for batch in (1, 2, 8):
        rows = random_rows(batch, 500, 6, gen, NET).to(device="cuda", dtype=dtype)
        assert_same(compiled(rows), model(rows), f"default engine, batch {batch}")


@pytest.mark.parametrize("kind", ["greedynms", "diounms"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_diou_engine_is_the_op_bit_for_bit(
    trt_runtime,
    plugin_layers,
    plugin_library,
    kind: str,
    dtype: torch.dtype,
    gen,  # noqa: ANN001
) -> None:
    import torch_mish.tensorrt as mt

    model = Nms(kind)
    compiled = mt.compile(model, [dynamic_rows(2535, 80, dtype)])
    for batch in (1, 2, 8):
        rows = random_rows(batch, 2535, 80, gen, NET).to(device="cuda", dtype=dtype)
        assert_same(compiled(rows), model(rows), f"{kind} engine, batch {batch}")


def test_diou_engine_reloads_in_a_fresh_process(trt_runtime, plugin_layers, plugin_library, tmp_path, gen) -> None:  # noqa: ANN001
    """The plugin's fields survive serialization: a saved engine, loaded where only
    ``import torch_mish.tensorrt`` registered the plugin, gives the same outputs."""
    import torch_mish.tensorrt as mt

    model = Nms("diounms")
    rows = random_rows(2, 2535, 80, gen, NET).cuda()
    compiled = mt.compile(model, [rows])
    mt.save(compiled, tmp_path / "nms.ep", [rows])
    torch.save(rows.cpu(), tmp_path / "rows.pt")
    script = textwrap.dedent(f"""
        import json, torch
        import torch_mish.tensorrt as mt  # registers the plugin before the engine is deserialized
        program = mt.load({str(tmp_path / "nms.ep")!r})
        out = program.module()(torch.load({str(tmp_path / "rows.pt")!r}).cuda())
        torch.save([t.cpu() for t in out], {str(tmp_path / "out.pt")!r})
        print(json.dumps({{"ok": True}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["ok"]
    assert_same(tuple(t.cuda() for t in torch.load(tmp_path / "out.pt")), model(rows), "reloaded engine")


def test_detector_default_engine_runs(trt_runtime, gen) -> None:  # noqa: ANN001
    """yolov4-tiny and its NMS in one engine: image in, detections out, shaped as the Detector's."""
    import torch_mish.tensorrt as mt

    torch.manual_seed(0)
    det = Detector(Darknet(packaged_cfg("yolov4-tiny")).eval().cuda(), conf_thresh=0.05, nms_kind="default")
    x = torch.rand(2, 3, 416, 416, generator=gen).cuda()
    compiled = mt.compile(det, [x])
    got, expected = compiled(x), det(x)
    for name, g, e in zip(OUTPUTS, got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape, name
    n = got[0].flatten().tolist()
    for i, k in enumerate(n):  # rows past num_dets are zero; scores sorted, above the threshold
        assert not got[2][i, k:].any() and not got[1][i, k:].any() and not got[3][i, k:].any()
        assert bool((got[2][i, :k] > 0.05).all()) and bool((got[2][i, :k].diff() <= 0).all())
