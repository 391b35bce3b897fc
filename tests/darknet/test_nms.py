"""torch.ops.mish.darknet_nms (torch_mish.darknet.darknet_nms) against a float64 reference written from
darknet's semantics (nms_ref.py): hand-made cases for each rule, random cases for every kind and
dtype, CPU against CUDA, argument errors, and the op's registration (fake kernel, no autograd,
opcheck)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import HAS_CUDA, requires_cuda
from nms_ref import assert_matches, assert_same, decisive_case, make_rows, random_rows, reference_nms

from torch_mish.darknet import darknet_nms

KINDS = ("default", "greedynms", "diounms")
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def detections(out: tuple[torch.Tensor, ...], image: int = 0) -> list[tuple[float, int, tuple[float, ...]]]:
    """(score, class, box) of one image's detections, in output order."""
    num, boxes, scores, classes = (t.cpu() for t in out)
    k = int(num[image, 0])
    return [(float(scores[image, i]), int(classes[image, i]), tuple(boxes[image, i].tolist())) for i in range(k)]


# --- hand-made cases ---------------------------------------------------------------------------


def test_greedy_per_class_in_score_order() -> None:
    # Three boxes in class 0: the best suppresses the second (IoU 0.67), not the third (IoU 0.25);
    # the second, suppressed, suppresses nothing, though its IoU with the third is 0.67.
    rows = make_rows([(50, 50, 20, 20), (54, 50, 20, 20), (58, 50, 20, 20)], [0.9, 0.9, 0.9], [[0.9], [0.8], [0.7]])
    got = detections(darknet_nms(rows, 0.25, 0.45, 10))
    assert [(round(s, 6), c) for s, c, _ in got] == [(0.81, 0), (0.63, 0)]
    assert got[1][2] == (48.0, 40.0, 68.0, 60.0)


def test_equal_scores_lower_row_first() -> None:
    # Identical boxes and scores: the lower row is kept and the other suppressed; across classes,
    # equal scores come out by row, then class.
    rows = make_rows(
        [(50, 50, 20, 20), (51, 50, 20, 20), (200, 200, 20, 20)], [1.0, 1.0, 1.0], [[0.5, 0.0]] * 2 + [[0.5, 0.5]]
    )
    num, boxes, scores, classes = darknet_nms(rows, 0.25, 0.45, 10)
    assert int(num) == 3
    assert classes[0, :3].tolist() == [0, 0, 1]
    assert boxes[0, 0].tolist() == [40.0, 40.0, 60.0, 60.0]  # row 0 kept, row 1 suppressed
    assert boxes[0, 1].tolist() == boxes[0, 2].tolist() == [190.0, 190.0, 210.0, 210.0]


def test_one_box_several_classes() -> None:
    rows = make_rows([(50, 50, 20, 20)], [0.8], [[0.9, 0.1, 0.6]])
    got = detections(darknet_nms(rows, 0.25, 0.45, 10))
    assert [c for _, c, _ in got] == [0, 2]
    assert got[0][2] == got[1][2]


def test_classes_do_not_suppress_each_other() -> None:
    rows = make_rows([(50, 50, 20, 20), (51, 50, 20, 20)], [0.9, 0.9], [[0.9, 0.0], [0.0, 0.9]])
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10))) == 2


def test_box_below_threshold_for_a_class_suppresses_nothing_there() -> None:
    # Row 0 scores 0.9*0.2 = 0.18 < conf for class 0: it does not take part there, so row 1 stays.
    rows = make_rows([(50, 50, 20, 20), (51, 50, 20, 20)], [0.9, 0.5], [[0.2, 0.9], [0.9, 0.0]])
    got = detections(darknet_nms(rows, 0.25, 0.45, 10))
    assert sorted(c for _, c, _ in got) == [0, 1]


def test_thresholds_are_strict() -> None:
    # objectness == conf: the row is dropped (even with a class score of 2, whose product passes);
    # objectness * prob == conf exactly: the class is dropped.
    rows = make_rows([(50, 50, 20, 20), (150, 50, 20, 20), (250, 50, 20, 20)], [0.25, 0.5, 0.5], [[2.0], [0.5], [0.75]])
    got = detections(darknet_nms(rows, 0.25, 0.45, 10))
    assert [round(s, 6) for s, _, _ in got] == [0.375]
    # IoU == iou_thresh exactly does not suppress: two 2x1 boxes overlapping by one third -> IoU 0.2
    rows = make_rows([(1.0, 0.5, 2, 1), (2.0, 0.5, 2, 1)], [1.0, 1.0], [[0.9], [0.8]])
    assert len(detections(darknet_nms(rows, 0.25, 1 / 3, 10))) == 2
    assert len(detections(darknet_nms(rows, 0.25, 0.33, 10))) == 1


def test_touching_and_zero_area_boxes_never_suppress() -> None:
    # Touching boxes: intersection 0, IoU 0 (not above 0); a zero-width box: intersection 0.
    rows = make_rows([(10, 10, 20, 20), (30, 10, 20, 20), (10, 10, 0, 20)], [0.9] * 3, [[0.9], [0.8], [0.7]])
    for kind in KINDS:
        assert len(detections(darknet_nms(rows, 0.25, 0.0, 10, kind))) == 3, kind


def test_diou_keeps_where_iou_suppresses() -> None:
    # IoU 0.5 (> 0.45), d = 100, c = 40^2 + 10^2: IoU - (d/c)^0.6 = 0.5 - 0.183 = 0.317 (<= 0.45).
    rows = make_rows([(0, 0, 30, 10), (10, 0, 30, 10)], [1.0, 1.0], [[0.9], [0.8]])
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "default"))) == 1
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "greedynms"))) == 2
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "diounms", 0.6))) == 2


def test_diou_suppresses_where_iou_keeps() -> None:
    # A (best) over B: IoU 0.5 > 0.45 but DIoU 0.317: IoU drops B, DIoU keeps it. B over C: IoU 0.76,
    # DIoU 0.69, so under DIoU the kept B drops C, which IoU keeps (IoU(A, C) = 0.36, and B is gone).
    a, b, c = (0, 0, 30, 10), (10, 0, 30, 10), (14, 0, 30, 10)
    rows = make_rows([a, b, c], [1.0] * 3, [[0.9], [0.8], [0.7]])
    kept_iou = [box for _, _, box in detections(darknet_nms(rows, 0.25, 0.45, 10, "default"))]
    kept_diou = [box for _, _, box in detections(darknet_nms(rows, 0.25, 0.45, 10, "diounms", 0.6))]
    assert kept_iou == [(-15.0, -5.0, 15.0, 5.0), (-1.0, -5.0, 29.0, 5.0)]  # A and C
    assert kept_diou == [(-15.0, -5.0, 15.0, 5.0), (-5.0, -5.0, 25.0, 5.0)]  # A and B


def test_beta_changes_the_diou_term() -> None:
    # IoU 0.5, d/c = 100/1700: ^0.6 = 0.183 -> 0.317; ^3 = 0.0002 -> 0.4998 (> 0.45: suppressed)
    rows = make_rows([(0, 0, 30, 10), (10, 0, 30, 10)], [1.0, 1.0], [[0.9], [0.8]])
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "diounms", 3.0))) == 1
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "diounms", 0.6))) == 2
    assert len(detections(darknet_nms(rows, 0.25, 0.45, 10, "greedynms", 3.0))) == 2  # greedynms: 0.6 always


def test_net_size_scales_the_diou_term() -> None:
    # Darknet divides x by the network width and y by its height. The same two boxes (IoU 0.389) on a
    # square network: DIoU 0.241; on a 2:1 one (x halved): 0.226. A threshold of 0.23 tells them apart.
    rows = make_rows([(0, 0, 20, 20), (4, 6, 20, 20)], [1.0, 1.0], [[0.9], [0.8]])
    ref_square = reference_nms(rows, 0.25, 0.23, 10, "diounms", 0.6, 1.0, 1.0)
    ref_wide = reference_nms(rows, 0.25, 0.23, 10, "diounms", 0.6, 2.0, 1.0)
    assert (ref_square.num_dets, ref_wide.num_dets) == ([1], [2])  # the case exercises the scaling
    assert_matches(darknet_nms(rows, 0.25, 0.23, 10, "diounms", 0.6, 1.0, 1.0), ref_square)
    assert_matches(darknet_nms(rows, 0.25, 0.23, 10, "diounms", 0.6, 2.0, 1.0), ref_wide)
    assert_matches(darknet_nms(rows, 0.25, 0.23, 10, "diounms", 0.6, 608.0, 304.0), ref_wide)


def test_more_candidates_than_max_det() -> None:
    # 30 disjoint boxes in two classes: the max_det best by score, over classes.
    boxes = [(30.0 * i, 0.0, 10.0, 10.0) for i in range(30)]
    probs = [[(i % 7) / 10 + 0.3, (i % 5) / 10 + 0.35] for i in range(30)]
    rows = make_rows(boxes, [1.0] * 30, probs)
    for max_det in (1, 7, 59, 60, 100):
        out = darknet_nms(rows, 0.25, 0.45, max_det)
        assert_matches(out, reference_nms(rows, 0.25, 0.45, max_det), f"max_det={max_det}")
        assert int(out[0]) == min(max_det, 60)


def test_nothing_above_threshold() -> None:
    rows = make_rows([(50, 50, 20, 20)], [0.2], [[0.9]])
    num, boxes, scores, classes = darknet_nms(rows, 0.25, 0.45, 5)
    assert int(num) == 0 and not boxes.any() and not scores.any() and not classes.any()


def test_nan_rows_are_not_detections() -> None:
    rows = make_rows([(50, 50, 20, 20), (50, 50, 20, 20)], [float("nan"), 0.9], [[0.9], [float("nan")]])
    assert int(darknet_nms(rows, 0.25, 0.45, 5)[0]) == 0


def test_empty_inputs() -> None:
    for shape in ((0, 10, 7), (2, 0, 7)):
        num, boxes, scores, classes = darknet_nms(torch.rand(shape), 0.25, 0.45, 3)
        assert num.shape == (shape[0], 1) and boxes.shape == (shape[0], 3, 4) and not num.any()


# --- random cases against the reference ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_random_against_reference(kind: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    configs = [(0.005, 0.45, 300), (0.25, 0.45, 20), (0.5, 0.3, 5), (0.25, 0.7, 300), (0.1, 0.0, 50)]
    for conf, iou, max_det in configs:
        beta = float(torch.empty(()).uniform_(0.3, 2.0, generator=gen))
        net = (608.0, 608.0) if conf != 0.1 else (640.0, 384.0)
        rows, ref = decisive_case(
            gen, lambda g: random_rows(g, 2, 150, 4).to(dtype), conf, iou, max_det, kind, beta, net
        )
        assert_matches(darknet_nms(rows, conf, iou, max_det, kind, beta, *net), ref, f"{conf=} {iou=} {max_det=}")


def test_survivors_beyond_max_det_per_class(gen: torch.Generator) -> None:
    # One class, many disjoint survivors, max_det below their number: the walk may stop at max_det.
    rows, ref = decisive_case(gen, lambda g: random_rows(g, 1, 400, 1, size=4000.0), 0.25, 0.45, 10, "default")
    assert ref.survivors_per_class > 10
    assert_matches(darknet_nms(rows, 0.25, 0.45, 10), ref)


def test_decoded_darknet_rows(gen: torch.Generator) -> None:
    # Rows as a Darknet decodes them (yolov4-tiny, random weights, objectness spread by the logit
    # scale): every kind against the reference.
    from torch_mish.darknet import Darknet, packaged_cfg

    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    model = Darknet(packaged_cfg("yolov4-tiny")).eval()
    with torch.no_grad():
        rows = model(torch.rand(2, 3, 96, 128, generator=gen))
    for kind, conf in itertools.product(KINDS, (0.005, 0.25)):
        ref = reference_nms(rows, conf, 0.45, 100, kind, 0.6, 128.0, 96.0)
        if ref.margin > 1e-5:
            assert_matches(darknet_nms(rows, conf, 0.45, 100, kind, 0.6, 128.0, 96.0), ref, f"{kind} {conf}")


# --- CPU and CUDA --------------------------------------------------------------------------------


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_reference_and_cpu(kind: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    for conf, iou, max_det, n, r, c in [
        (0.005, 0.45, 300, 2, 300, 5),
        (0.25, 0.45, 7, 3, 2000, 2),
        (0.3, 0.6, 1, 1, 50, 3),
    ]:
        rows, ref = decisive_case(
            gen, lambda g, n=n, r=r, c=c: random_rows(g, n, r, c).to(dtype), conf, iou, max_det, kind
        )
        out = darknet_nms(rows.cuda(), conf, iou, max_det, kind, 0.6, 608.0, 608.0)
        assert out[0].device.type == "cuda"
        assert_matches(out, ref, f"cuda {conf=} {max_det=}")
        assert_same(out, darknet_nms(rows, conf, iou, max_det, kind, 0.6, 608.0, 608.0), "cpu/cuda")


@requires_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_equals_cpu_at_yolov4_scale(kind: str, gen: torch.Generator) -> None:
    # yolov4 at 608: 22,743 rows x 80 classes. conf 0.005 with uniform scores makes almost every
    # (row, class) a candidate: several chunks per class, the walk ends at max_det survivors; a large
    # max_det takes the classes to their last candidates.
    rows = random_rows(gen, 2, 22743, 80)
    for conf, max_det in [(0.005, 300), (0.25, 100), (0.6, 5000)]:
        cpu = darknet_nms(rows, conf, 0.45, max_det, kind, 0.6, 608.0, 608.0)
        assert_same(darknet_nms(rows.cuda(), conf, 0.45, max_det, kind, 0.6, 608.0, 608.0), cpu, f"{conf=}")


@requires_cuda
def test_cuda_heavy_suppression_and_ties(gen: torch.Generator) -> None:
    # Every box the same: one survivor per class after walking every chunk; equal scores in runs
    # longer than a chunk (ties broken by row on both devices).
    n, r = 2, 5000
    rows = torch.zeros(n, r, 8)
    rows[..., :4] = torch.tensor([100.0, 100.0, 50.0, 50.0])
    rows[..., 4] = 1.0
    rows[..., 5:] = torch.randint(1, 4, (n, r, 3), generator=gen).float() / 4
    for kind in KINDS:
        cpu = darknet_nms(rows, 0.1, 0.45, 50, kind)
        assert int(cpu[0][0]) == 3
        assert_same(darknet_nms(rows.cuda(), 0.1, 0.45, 50, kind), cpu, kind)
    disjoint = random_rows(gen, n, r, 3, size=20000.0)
    disjoint[..., 5:] = torch.randint(1, 4, (n, r, 3), generator=gen).float() / 4
    assert_same(darknet_nms(disjoint.cuda(), 0.1, 0.45, 3000), darknet_nms(disjoint, 0.1, 0.45, 3000), "ties")


def near_threshold_pairs(kind: str, beta: float, thresh: float) -> tuple[torch.Tensor, int]:
    """One image whose class k holds two boxes, the second one moved sideways by a float32 step
    from where its DIoU criterion against the first equals ``thresh`` and widened by a few ulps:
    steps of a few ulps (within rounding of the threshold, densely) out to thousands (decided by
    far). Returns the rows and the number of classes."""
    exponent = 0.6 if kind == "greedynms" else beta

    def criterion(dx: float) -> float:  # both boxes 0.2 x 0.2, centres dx apart on x
        iou = (0.2 - dx) / (0.2 + dx)
        return iou - (dx * dx / ((0.2 + dx) ** 2 + 0.04)) ** exponent

    lo, hi = 0.0, 0.2
    for _ in range(80):  # the criterion falls with dx
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if criterion(mid) > thresh else (lo, mid)
    x, w = np.float32(0.5 + lo), np.float32(0.2)
    near = [(s, t) for s in range(-24, 25) for t in range(8)]
    far = [(s * 2**j, 0) for j in range(5, 13) for s in (-1, 1)]
    boxes = [(x + np.float32(s) * np.spacing(x), w + np.float32(t) * np.spacing(w)) for s, t in near + far]
    classes = len(boxes)
    rows = torch.zeros(1, 2 * classes, 5 + classes)
    for k, (xb, wb) in enumerate(boxes):
        rows[0, 2 * k, :5] = torch.tensor([0.5, 0.5, 0.2, 0.2, 1.0])
        rows[0, 2 * k + 1, :5] = torch.tensor([float(xb), 0.5, float(wb), 0.2, 1.0])
        rows[0, 2 * k, 5 + k], rows[0, 2 * k + 1, 5 + k] = 0.9, 0.8
    return rows, classes


@requires_cuda
@pytest.mark.parametrize("kind,beta", [("greedynms", 0.6), ("diounms", 0.6), ("diounms", 0.8)])
def test_cuda_decides_as_the_cpu_at_the_threshold(kind: str, beta: float) -> None:
    # The kernels decide a DIoU pair with a single-precision pow unless it is near the threshold:
    # pairs a few ulps either side of it must still be decided as the CPU (double pow) decides.
    rows, classes = near_threshold_pairs(kind, beta, 0.45)
    cpu = darknet_nms(rows, 0.1, 0.45, 2 * classes, kind, beta, 1.0, 1.0)
    kept = int(cpu[0][0])
    assert classes < kept < 2 * classes, "the pairs must straddle the threshold"
    assert_same(darknet_nms(rows.cuda(), 0.1, 0.45, 2 * classes, kind, beta, 1.0, 1.0), cpu, kind)


@requires_cuda
def test_cuda_never_synchronizes_and_captures(gen: torch.Generator) -> None:
    rows = random_rows(gen, 2, 3000, 6).cuda()
    darknet_nms(rows, 0.1, 0.45, 100, "diounms")  # warm-up (allocations)
    torch.cuda.set_sync_debug_mode("error")
    try:
        darknet_nms(rows, 0.1, 0.45, 100, "diounms")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    static = rows.clone()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        darknet_nms(static, 0.1, 0.45, 100, "diounms")
        with torch.cuda.graph(graph, stream=stream):
            captured = darknet_nms(static, 0.1, 0.45, 100, "diounms")
    torch.cuda.current_stream().wait_stream(stream)
    fresh = random_rows(gen, 2, 3000, 6)
    static.copy_(fresh)
    graph.replay()
    assert_same(captured, darknet_nms(fresh, 0.1, 0.45, 100, "diounms"), "graph replay")


# --- arguments and registration ------------------------------------------------------------------

BAD_ARGS = [
    ({"rows": torch.rand(2, 10, 7).int()}, TypeError, "float32, float16, bfloat16 or float64, got torch.int32"),
    ({"rows": torch.rand(10, 7)}, ValueError, "shape (N, R, 5 + classes)"),
    ({"rows": torch.rand(2, 10, 5)}, ValueError, "at least one class"),
    ({"conf_thresh": 2.0}, ValueError, "conf_thresh must be in [0, 1], got 2"),
    ({"conf_thresh": -0.1}, ValueError, "conf_thresh must be in [0, 1]"),
    ({"conf_thresh": float("nan")}, ValueError, "conf_thresh must be in [0, 1], got nan"),
    ({"iou_thresh": 1.5}, ValueError, "iou_thresh must be in [0, 1], got 1.5"),
    ({"max_det": 0}, ValueError, "max_det must be an integer of at least 1"),
    ({"kind": "soft"}, ValueError, "unknown kind 'soft'"),
    ({"beta": -1.0}, ValueError, "beta must be finite and >= 0, got -1"),
    ({"net_width": 0.0}, ValueError, "net_width and net_height must be finite and > 0"),
]


@pytest.mark.parametrize("device", ["cpu", "meta", pytest.param("cuda", marks=requires_cuda)])
@pytest.mark.parametrize(("change", "error", "message"), BAD_ARGS, ids=[str(list(c)[0]) for c, _, _ in BAD_ARGS])
def test_bad_arguments(change: dict, error: type, message: str, device: str) -> None:
    args = {"rows": torch.rand(2, 10, 7), "conf_thresh": 0.25, "iou_thresh": 0.45, "max_det": 10, "kind": "default"}
    args.update({"beta": 0.6, "net_width": 1.0, "net_height": 1.0}, **change)
    args["rows"] = args["rows"].to(device)
    with pytest.raises(error, match=__import__("re").escape(message)):
        darknet_nms(**args)


def test_outputs_never_require_grad() -> None:
    rows = torch.rand(1, 20, 7, requires_grad=True)
    out = darknet_nms(rows, 0.25, 0.45, 5, "diounms")
    assert not any(t.requires_grad for t in out)


def test_opcheck(gen: torch.Generator) -> None:
    rows = random_rows(gen, 2, 60, 3)
    samples = [
        (rows, 0.25, 0.45, 10, "default", 0.6, 1.0, 1.0),
        (rows.half(), 0.005, 0.3, 50, "diounms", 0.8, 64.0, 32.0),
    ]
    if HAS_CUDA:
        samples.append((rows.cuda(), 0.25, 0.45, 10, "greedynms", 0.6, 608.0, 608.0))
    for args in samples:
        torch.library.opcheck(torch.ops.mish.darknet_nms.default, args, test_utils=("test_schema", "test_faketensor"))


def test_reference_is_darknets_walk() -> None:
    # The reference itself on a case computed by hand: IoU of (0,0,2,2) and (1,0,2,2) = 2/6.
    rows = make_rows([(0, 0, 2, 2), (1, 0, 2, 2)], [1.0, 1.0], [[0.9], [0.8]])
    assert reference_nms(rows, 0.25, 0.3, 5).num_dets == [1]
    assert reference_nms(rows, 0.25, 0.34, 5).num_dets == [2]
    # DIoU: d = 1, c = 3^2 + 2^2 = 13: 1/3 - (1/13)^0.6 = 0.118
    assert reference_nms(rows, 0.25, 0.11, 5, "greedynms").num_dets == [1]
    assert reference_nms(rows, 0.25, 0.12, 5, "greedynms").num_dets == [2]
    assert np.isfinite(reference_nms(rows, 0.25, 0.12, 5, "greedynms").margin)
