"""torch_mish.darknet.Detector: a Darknet followed by darknet's thresholds and NMS. Its options from
the cfg, its errors, its detections against the float64 reference, and the deploy paths that keep
the NMS op whole (torch.export, torch.compile, CUDA graphs)."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import requires_cuda
from nms_ref import assert_matches, assert_same, reference_nms

from torch_mish.darknet import Darknet, Detector, darknet_nms, packaged_cfg

# A small detector: two [yolo] heads, 3 classes; the last head names the NMS.
SMALL_CFG = """
[net]
width=64
height=48
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish

[convolutional]
filters=24
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,6, 8,10, 12,16, 20,24, 30,36, 48,40
classes=3
num=6

[route]
layers=-3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish

[convolutional]
filters=24
size=1
stride=1
pad=1
activation=logistic

[yolo]
mask=3,4,5
anchors=4,6, 8,10, 12,16, 20,24, 30,36, 48,40
classes=3
num=6
new_coords=1
scale_x_y=2.0
nms_kind={kind}
beta_nms={beta}
"""


def small_model(kind: str = "diounms", beta: str = "0.8", seed: int = 0) -> Darknet:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Darknet(SMALL_CFG.format(kind=kind, beta=beta))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def nms_nodes(graph: torch.fx.Graph) -> int:
    return sum(n.op == "call_function" and n.target == torch.ops.mish.darknet_nms.default for n in graph.nodes)


def test_nms_options_come_from_the_last_yolo_head() -> None:
    det = Detector(small_model("diounms", "0.8"))
    assert (det.nms_kind, det.beta_nms, det.classes) == ("diounms", pytest.approx(0.8), 3)
    assert Detector(Darknet(packaged_cfg("yolov4-tiny"))).nms_kind == "greedynms"
    csp = Detector(Darknet(packaged_cfg("yolov4-csp")))
    assert (csp.nms_kind, csp.beta_nms) == ("diounms", pytest.approx(0.6))
    over = Detector(small_model(), nms_kind="default", beta_nms=1.5, conf_thresh=0.1, iou_thresh=0.6, max_det=7)
    assert (over.nms_kind, over.beta_nms, over.conf_thresh, over.iou_thresh, over.max_det) == (
        "default",
        1.5,
        pytest.approx(0.1),
        pytest.approx(0.6),
        7,
    )
    assert "nms_kind='default'" in repr(over)


def test_cfg_nms_kind_darknet_does_not_know_falls_back_to_default() -> None:
    with pytest.warns(UserWarning, match="nms_kind=cornersnms"):
        det = Detector(small_model("cornersnms"))
    assert det.nms_kind == "default"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf_thresh": 2.0}, "Detector: conf_thresh must be in [0, 1], got 2.0"),
        ({"iou_thresh": -0.5}, "Detector: iou_thresh must be in [0, 1], got -0.5"),
        ({"max_det": 0}, "Detector: max_det must be an integer of at least 1"),
        ({"max_det": 2.5}, "Detector: max_det must be an integer"),
        ({"nms_kind": "soft"}, "Detector: unknown kind 'soft'"),
        ({"beta_nms": float("inf")}, "Detector: beta must be finite"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        Detector(small_model(), **kwargs)


def test_a_model_without_yolo_heads_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Conv2d has no \[yolo\] heads"):
        Detector(torch.nn.Conv2d(3, 8, 1))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Detector("yolov4.cfg")  # type: ignore[arg-type]


def test_the_detector_stays_in_eval_mode(gen: torch.Generator) -> None:
    det = Detector(small_model().train())
    assert not det.training and not det.model.training
    det.train()
    assert not det.training and not det.model.training
    det.model.train()  # behind the Detector's back: a clear error, not a wrong result
    with pytest.raises(TypeError, match=r"darknet rows .*got list.*\.eval\(\)"):
        det(torch.rand(1, 3, 48, 64, generator=gen))


@pytest.mark.parametrize("kind", ["default", "greedynms", "diounms"])
def test_detections_match_the_reference(kind: str, gen: torch.Generator) -> None:
    # A non-square input: DIoU is computed on coordinates divided by the input's width and height.
    # Redrawn while a criterion lies within float32's rounding of a threshold (either decision is right).
    for _ in range(20):
        model = small_model(seed=int(torch.randint(0, 2**31, (), generator=gen)))
        det = Detector(model, conf_thresh=0.3, iou_thresh=0.4, max_det=40, nms_kind=kind)
        x = torch.rand(2, 3, 48, 64, generator=gen)
        with torch.no_grad():
            rows = model(x)
            out = det(x)
        ref = reference_nms(rows, 0.3, 0.4, 40, kind, 0.8, 64.0, 48.0)
        if ref.margin >= 1e-5:
            break
    else:
        pytest.fail("no case without a near-threshold criterion in 20 draws")
    assert_matches(out, ref)
    assert_same(out, darknet_nms(rows, 0.3, 0.4, 40, kind, 0.8, 64.0, 48.0))


def test_export_keeps_one_nms_node(gen: torch.Generator) -> None:
    det = Detector(small_model(), conf_thresh=0.2, max_det=30)
    x = torch.rand(2, 3, 48, 64, generator=gen)
    ep = torch.export.export(det, (x,))
    assert nms_nodes(ep.graph) == 1
    node = next(n for n in ep.graph.nodes if n.target == torch.ops.mish.darknet_nms.default)
    assert node.args[1:] == (pytest.approx(0.2), pytest.approx(0.45), 30, "diounms", pytest.approx(0.8), 64.0, 48.0)
    assert_same(ep.module()(x), det(x), "exported")
    batch = torch.export.Dim("batch", min=1, max=8)
    dynamic = torch.export.export(det, (x,), dynamic_shapes=({0: batch},))
    x3 = torch.rand(3, 3, 48, 64, generator=gen)
    assert_same(dynamic.module()(x3), det(x3), "dynamic batch")


def test_compile_fullgraph() -> None:
    # A fixed input: Inductor's fused model rounds the rows differently, so its detections are
    # compared with a tolerance, on an input whose decisions are not near a threshold.
    torch._dynamo.reset()
    det = Detector(small_model(), conf_thresh=0.2, max_det=30)
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    graphs = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    with torch.no_grad():
        assert_same(torch.compile(det, fullgraph=True, backend=backend)(x), det(x), "dynamo")
        assert len(graphs) == 1 and nms_nodes(graphs[0].graph) == 1
        compiled, eager = torch.compile(det, fullgraph=True)(x), det(x)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[3], eager[3])
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled[2], eager[2], rtol=1e-4, atol=1e-5)


@requires_cuda
def test_cuda_detector_captures_in_one_graph(gen: torch.Generator) -> None:
    det = Detector(small_model().cuda(), conf_thresh=0.05, max_det=50)
    x = torch.rand(2, 3, 48, 64, generator=gen).cuda()
    with torch.no_grad():
        eager = det(x)
        static = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            det(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = det(static)
        graph.replay()
        assert_same(captured, eager, "captured")
        assert_same(eager, darknet_nms(det.model(x).cpu(), 0.05, 0.45, 50, "diounms", 0.8, 64.0, 48.0), "cuda/cpu")
        # torch.compile's CUDA-graph backend runs the same kernels, so its replays equal eager bit for
        # bit; Inductor's fused box decode rounds differently and test_compile_fullgraph checks it, within
        # a tolerance, on an input whose decisions are not near a threshold.
        compiled = torch.compile(det, fullgraph=True, backend="cudagraphs")
        for _ in range(3):
            out = compiled(x)
        assert_same(out, eager, "torch.compile cudagraphs")
