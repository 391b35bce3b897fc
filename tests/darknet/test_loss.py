"""YoloLoss against a float64 transcription of darknet's forward_yolo_layer (yolo_loss_ref.py):
the gradient reaching each head is minus darknet's delta, entry for entry, the value is the sum of
squared deltas and darknet_cost is darknet's cost, for every option the YOLOv4 family uses, on
hand-made truths (two truths in one cell, extra anchors through iou_thresh, predictions above
ignore_thresh and truth_thresh) and on random heads and truths."""

from __future__ import annotations

import math

import pytest
import torch
from yolo_loss_ref import reference_deltas

from torch_mish.darknet import PACKAGED_CFGS, Darknet, packaged_cfg
from torch_mish.darknet.loss import LossOptionError, YoloLoss

ANCHORS = "4,6, 8,8, 10,16, 16,12, 20,28, 30,22, 28,40, 44,36, 56,60"


def tiny_cfg(yolo: str = "", classes: int = 3, mask2: str = "3,4,5", net: str = "", yolo2: str | None = None) -> str:
    """Two [yolo] heads (stride 8 and 16) on a 64x64 input, with the options in ``yolo`` (the
    second head with ``yolo2`` when given)."""
    filters = 3 * (5 + classes)
    head = f"classes={classes}\nnum=9\nanchors={ANCHORS}\n{yolo}\n"
    head2 = head if yolo2 is None else f"classes={classes}\nnum=9\nanchors={ANCHORS}\n{yolo2}\n"
    return f"""[net]
width=64
height=64
channels=3
{net}
[maxpool]
size=8
stride=8
[convolutional]
filters={filters}
size=1
activation=linear
[yolo]
mask=0,1,2
{head}
[route]
layers=-3
[maxpool]
size=2
stride=2
[convolutional]
filters={filters}
size=1
activation=linear
[yolo]
mask={mask2}
{head2}
"""


def _heads(model: Darknet, n: int, size: int, gen: torch.Generator, dtype: torch.dtype = torch.float64):
    heads = []
    for y in model.yolo_layers:
        _, h, w = model.shapes[y.index]
        h, w = h * size // model.height, w * size // model.width
        t = torch.randn(n, len(y.mask), h, w, 5 + y.classes, generator=gen, dtype=torch.float64) * 1.5
        if y.new_coords:  # the head convolution is logistic: outputs in (0, 1)
            t = torch.sigmoid(t)
        heads.append(t.to(dtype).requires_grad_())
    return heads


def _random_targets(n: int, classes: int, gen: torch.Generator, per_image: int = 6) -> torch.Tensor:
    rows = []
    for b in range(n):
        k = int(torch.randint(0, per_image + 1, (1,), generator=gen))
        for _ in range(k):
            w, h = (0.03 + 0.6 * torch.rand(2, generator=gen, dtype=torch.float64)).tolist()
            x, y = torch.rand(2, generator=gen, dtype=torch.float64).clamp(0.001, 0.999).tolist()
            c = int(torch.randint(0, classes, (1,), generator=gen))
            rows.append([b, c, x, y, w, h])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 6)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def plant(model: Darknet, heads: list[torch.Tensor], head: int, b: int, anchor: int, truth: list[float], size: int,
          jitter: float = 0.0, class_id: int | None = None) -> None:  # fmt: skip
    """Set the prediction of (image b, the mask's ``anchor``-th anchor) at the truth's cell to the
    truth's box, nudged by ``jitter`` (relative), and its classes so that one is above 0.25."""
    y = model.yolo_layers[head]
    t = heads[head]
    _, _, gh, gw, _ = t.shape
    cx, cy, w, h = truth
    i, j = int(cx * gw), int(cy * gh)
    s = y.scale_x_y
    aw, ah = y.all_anchors[y.mask[anchor]]
    ox = (cx * gw - i + 0.5 * (s - 1)) / s + jitter
    oy = (cy * gh - j + 0.5 * (s - 1)) / s - jitter
    w2, h2 = w * size / aw * (1 + jitter), h * size / ah * (1 - jitter)
    with torch.no_grad():
        if y.new_coords:
            vals = [ox, oy, math.sqrt(w2 / 4), math.sqrt(h2 / 4)]
        else:
            vals = [_logit(ox), _logit(oy), math.log(w2), math.log(h2)]
        for e, v in enumerate(vals):
            t[b, anchor, j, i, e] = v
        if class_id is not None:
            for c in range(y.classes):
                p = 0.8 if c == class_id else 0.1
                t[b, anchor, j, i, 5 + c] = p if y.new_coords else _logit(p)


def check(model: Darknet, heads: list[torch.Tensor], targets: torch.Tensor, size: int, rtol: float = 1e-9,
          atol: float = 1e-12, compile: bool | None = None) -> list[torch.Tensor]:  # fmt: skip
    """Run YoloLoss and the reference; compare gradients, value and darknet's cost."""
    for h in heads:
        h.grad = None
    loss_fn = YoloLoss(model, compile=compile)
    loss = loss_fn(heads, targets.to(heads[0].dtype))
    loss.backward()
    ref, costs = reference_deltas(loss_fn.options, heads, targets, size, size)
    total = 0.0
    for k, (h, d) in enumerate(zip(heads, ref, strict=True)):
        dn = loss_fn.options[k].delta_normalizer
        torch.testing.assert_close(h.grad.double(), -dn * d, rtol=rtol, atol=atol, msg=lambda m, k=k: f"head {k}: {m}")
        total += float((d * d).sum())
    torch.testing.assert_close(
        loss.double(), torch.tensor(total, dtype=torch.float64), rtol=max(rtol, 1e-12), atol=atol
    )
    parts = loss_fn.parts
    torch.testing.assert_close(parts.total.double(), loss.detach().double(), rtol=1e-6, atol=1e-9)
    for k, cost in enumerate(costs):
        torch.testing.assert_close(
            parts.darknet_cost[k].double(), torch.tensor(cost, dtype=torch.float64), rtol=max(rtol, 1e-9), atol=atol
        )
    return ref


# Options per family cfg (and the rest of parse_yolo's training options): each set is one [yolo] text.
OPTION_SETS = {
    "mse": "iou_loss=mse\nignore_thresh=.5",
    "mse_new_coords": "iou_loss=mse\nnew_coords=1\nscale_x_y=2.0\niou_thresh=0.2",
    "giou": "iou_loss=giou\niou_normalizer=0.5\nignore_thresh=.6",
    "diou": "iou_loss=diou\niou_normalizer=0.3\nmax_delta=3",
    "ciou_yolov4": "iou_loss=ciou\niou_normalizer=0.07\ncls_normalizer=1.0\nmax_delta=5\nscale_x_y=1.2\n"
    "ignore_thresh=.7\ntruth_thresh=1\niou_thresh=0.213",
    "ciou_csp": "iou_loss=ciou\nnew_coords=1\nscale_x_y=2.0\niou_normalizer=0.05\nobj_normalizer=4.0\n"
    "cls_normalizer=0.5\nobjectness_smooth=1\nmax_delta=2\nignore_thresh=.7\niou_thresh=0.2",
    "ciou_smooth_old_coords": "iou_loss=ciou\nobjectness_smooth=1\niou_thresh=0.3\nscale_x_y=1.05",
    "label_smooth": "iou_loss=ciou\nlabel_smooth_eps=0.1\niou_thresh=0.25",
    "truth_thresh": "iou_loss=giou\ntruth_thresh=0.5\nignore_thresh=.3",
    "truth_thresh_smooth": "iou_loss=mse\ntruth_thresh=0.4\nobjectness_smooth=1\nnew_coords=1",
    "counters_per_class": "iou_loss=ciou\ncounters_per_class=100,20,5\ncls_normalizer=0.5\nmax_delta=4\niou_thresh=0.2",
    "focal": "iou_loss=diou\nfocal_loss=1",
    "iou_kind_giou": "iou_loss=ciou\niou_thresh=0.1\niou_thresh_kind=giou",
    "iou_kind_ciou": "iou_loss=ciou\niou_thresh=0.1\niou_thresh_kind=ciou",
    "iou_loss_iou": "iou_loss=iou\niou_normalizer=0.4",
    "delta_normalizer": "iou_loss=ciou\ndelta_normalizer=0.5",
    "show_details_0": "iou_loss=ciou\nshow_details=0",
    "max_boxes": "iou_loss=mse\nmax=3",
}


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_random_heads_and_truths(name: str, gen: torch.Generator) -> None:
    model = Darknet(tiny_cfg(OPTION_SETS[name]))
    heads = _heads(model, 3, 64, gen)
    targets = _random_targets(3, 3, gen)
    check(model, heads, targets, 64)


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("cpu", marks=pytest.mark.slow),  # Inductor's CPU code: about two minutes on two cores
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    ],
)
def test_compiled_steps(device: str, gen: torch.Generator) -> None:
    """compile=True (a GPU's default): the same deltas as the reference over two batches with
    different numbers of truths (dynamic shapes), for yolov4-csp's options beside truth_thresh's and
    max=3 (head options differing: per-head tables); float64 on the CPU, float32 on a GPU."""
    from torch._dynamo.utils import counters

    model = Darknet(tiny_cfg(OPTION_SETS["truth_thresh"] + "\nmax=3", yolo2=OPTION_SETS["ciou_csp"]))
    torch._dynamo.reset()  # compiled here, not found in what an earlier test compiled
    counters.clear()
    for per_image in (10, 4):
        heads64 = _heads(model, 3, 64, gen)
        targets = _random_targets(3, 3, gen, per_image=per_image)
        plant(model, heads64, 1, 0, 0, targets[0, 2:].tolist(), 64, jitter=0.01, class_id=int(targets[0, 1]))
        if device == "cpu":
            check(model, heads64, targets, 64, rtol=1e-7, atol=1e-10, compile=True)
            continue
        heads = [h.detach().float().cuda().requires_grad_() for h in heads64]
        YoloLoss(model, compile=True)(heads, targets.float()).backward()
        ref, _ = reference_deltas(YoloLoss(model).options, [h.detach().double().cpu() for h in heads], targets, 64, 64)
        for h, d in zip(heads, ref, strict=True):
            torch.testing.assert_close(h.grad.double().cpu(), -d, rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] >= 3, "the steps ran compiled"
    assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"


MIXED = [
    ("ciou_yolov4", "mse_new_coords"),
    ("giou", "truth_thresh_smooth"),
    ("counters_per_class", "label_smooth"),
    ("focal", "iou_kind_giou"),
    ("max_boxes", "delta_normalizer"),
    ("truth_thresh", "ciou_csp"),
    ("iou_kind_ciou", "show_details_0"),
]


@pytest.mark.parametrize(("first", "second"), MIXED)
def test_heads_with_different_options(first: str, second: str, gen: torch.Generator) -> None:
    """The heads are computed together: each keeps its own options."""
    model = Darknet(tiny_cfg(OPTION_SETS[first], yolo2=OPTION_SETS[second]))
    heads = _heads(model, 3, 64, gen)
    targets = _random_targets(3, 3, gen, per_image=10)
    check(model, heads, targets, 64)


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_hand_made_truths(name: str, gen: torch.Generator) -> None:
    """Two truths in one cell (same anchor: box deltas add, classes merge), a truth matched by
    extra anchors, predictions planted on truths (above ignore_thresh / truth_thresh)."""
    model = Darknet(tiny_cfg(OPTION_SETS[name]))
    heads = _heads(model, 2, 64, gen)
    rows = [
        [0, 0, 0.30, 0.30, 0.14, 0.20],  # two truths in the cell (2, 2) of the stride-8 head, one anchor
        [0, 1, 0.31, 0.32, 0.15, 0.21],
        [0, 1, 0.33, 0.29, 0.13, 0.19],  # a third, same class as the second
        [0, 2, 0.70, 0.60, 0.30, 0.35],  # matches several stride-16 anchors through iou_thresh
        [1, 2, 0.52, 0.47, 0.25, 0.28],
        [1, 0, 0.10, 0.85, 0.08, 0.12],
    ]
    targets = torch.tensor(rows, dtype=torch.float64)
    plant(model, heads, 1, 1, 1, rows[4][2:], 64, jitter=0.02, class_id=2)  # IoU ~0.9: above ignore/truth thresh
    plant(model, heads, 0, 1, 0, rows[5][2:], 64, jitter=0.05, class_id=0)
    plant(model, heads, 0, 0, 2, rows[0][2:], 64, jitter=0.01, class_id=1)
    plant(model, heads, 1, 0, 0, [0.72, 0.61, 0.3, 0.33], 64, jitter=0.0)  # no class above 0.25 ...
    with torch.no_grad():
        y = model.yolo_layers[1]
        heads[1][0, 0, :, :, 5:] = 0.05 if y.new_coords else _logit(0.05)  # ... so the ignore rule does not apply
    check(model, heads, targets, 64)


def test_hand_made_rules_hold(gen: torch.Generator) -> None:
    """The hand-made cases exercise what they claim: the ignore rule zeroes the objectness delta of
    a prediction planted on a truth at an anchor the truth is not assigned to; two truths of
    different classes assigned to one cell and anchor make both classes positive; a truth is
    assigned to several anchors through iou_thresh."""
    model = Darknet(tiny_cfg(OPTION_SETS["ciou_yolov4"].replace("scale_x_y=1.2\n", "")))
    heads = _heads(model, 2, 64, gen)
    targets = torch.tensor(
        [[0, 0, 0.30, 0.30, 0.14, 0.20], [0, 1, 0.31, 0.32, 0.15, 0.21], [1, 2, 0.70, 0.60, 0.30, 0.35]],
        dtype=torch.float64,
    )
    loss_fn = YoloLoss(model)
    loss_fn(heads, targets)
    d0, d1 = (d.clone() for d in loss_fn.deltas)
    both = (d0[0, :, 2, 2, 5] > 0) & (d0[0, :, 2, 2, 6] > 0)
    assert both.any(), "two truths in one cell and anchor: both classes positive"
    assigned = (d1[1, :, 2, 2, :4] != 0).any(1)
    assert int(assigned.sum()) >= 2, "one truth, several anchors through iou_thresh"
    free = [k for k in range(3) if not (d0[0, k, 2, 2, :4] != 0).any()]
    assert free, "an anchor of cell (2, 2) without an assignment"
    plant(model, heads, 0, 0, free[0], targets[0, 2:].tolist(), 64, jitter=0.01, class_id=0)
    loss_fn(heads, targets)
    assert loss_fn.deltas[0][0, free[0], 2, 2, 4] == 0, "the ignore rule"
    check(model, heads, targets, 64)


@pytest.mark.parametrize("cfg", PACKAGED_CFGS)
def test_packaged_cfgs(cfg: str, gen: torch.Generator) -> None:
    model = Darknet(packaged_cfg(cfg))
    size = 128 if cfg != "yolov4-p5.cfg" else 128
    heads = _heads(model, 2, size, gen)
    targets = _random_targets(2, 80, gen, per_image=8)
    rows = targets.tolist()
    if rows:  # one prediction planted on a truth, above ignore_thresh
        r = rows[0]
        y = model.yolo_layers[0]
        plant(model, heads, 0, int(r[0]), 0, r[2:], size, jitter=0.01, class_id=int(r[1]))
        _ = y
    check(model, heads, targets, size)


def test_end_to_end_model_gradients(gen: torch.Generator) -> None:
    """yolov4-tiny's own heads at 64x64: the gradients autograd hands the head outputs are the
    reference's deltas, and the loss backpropagates into the weights."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    model = Darknet(packaged_cfg("yolov4-tiny")).double().train()
    x = torch.rand(2, 3, 64, 64, generator=gen, dtype=torch.float64)
    heads = model(x)
    for h in heads:
        h.retain_grad()
    targets = _random_targets(2, 80, gen)
    loss = YoloLoss(model)(heads, targets)
    loss.backward()
    opts = YoloLoss(model).options
    ref, _ = reference_deltas(opts, heads, targets, 64, 64)
    for h, d in zip(heads, ref, strict=True):
        torch.testing.assert_close(h.grad, -d, rtol=1e-9, atol=1e-12)
    assert model.layers[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["ciou_yolov4", "ciou_csp", "mse"])
def test_float32_and_bfloat16_heads(name: str, gen: torch.Generator) -> None:
    """float32 heads give float32 deltas close to the float64 reference; bfloat16 heads are
    computed in float32 and the gradient comes back in bfloat16."""
    model = Darknet(tiny_cfg(OPTION_SETS[name]))
    heads64 = _heads(model, 2, 64, gen)
    targets = _random_targets(2, 3, gen)
    heads32 = [h.detach().float().requires_grad_() for h in heads64]
    loss = YoloLoss(model)(heads32, targets.float())
    assert loss.dtype == torch.float32
    loss.backward()
    ref, _ = reference_deltas(YoloLoss(model).options, [h.detach().float().double() for h in heads32], targets, 64, 64)
    for h, d in zip(heads32, ref, strict=True):
        torch.testing.assert_close(h.grad.double(), -d, rtol=1e-4, atol=1e-5)
    heads16 = [h.detach().bfloat16().requires_grad_() for h in heads64]
    loss16 = YoloLoss(model)(heads16, targets.float())
    assert loss16.dtype == torch.float32
    loss16.backward()
    assert all(h.grad.dtype == torch.bfloat16 for h in heads16)


def test_truth_list_ends_at_cx_zero(gen: torch.Generator) -> None:
    """A row with cx == 0 ends its image's truths (darknet's loop breaks there): later rows of that
    image change nothing, other images are unaffected."""
    model = Darknet(tiny_cfg(OPTION_SETS["ciou_yolov4"]))
    heads = _heads(model, 2, 64, gen)
    base = torch.tensor([[0, 1, 0.4, 0.4, 0.2, 0.2], [1, 2, 0.6, 0.3, 0.3, 0.2]], dtype=torch.float64)
    extra = torch.tensor([[0, 0, 0.0, 0.5, 0.2, 0.2], [0, 2, 0.8, 0.8, 0.3, 0.3]], dtype=torch.float64)
    loss_fn = YoloLoss(model)
    a = loss_fn(heads, base)
    da = [d.clone() for d in loss_fn.deltas]
    b = loss_fn(heads, torch.cat([base, extra]))
    torch.testing.assert_close(a, b)
    for x, y in zip(da, loss_fn.deltas, strict=True):
        assert torch.equal(x, y)
    check(model, heads, torch.cat([base, extra]), 64)


def test_rows_of_images_interleaved(gen: torch.Generator) -> None:
    """Targets may list images in any order; each image keeps its own rows' order."""
    model = Darknet(tiny_cfg(OPTION_SETS["ciou_csp"]))
    heads = _heads(model, 3, 64, gen)
    targets = _random_targets(3, 3, gen, per_image=8)
    perm = torch.randperm(targets.shape[0], generator=gen)
    shuffled = targets[perm]
    # keep each image's relative order: a stable sort by image of the shuffled rows is the reference order
    order = torch.sort(shuffled[:, 0], stable=True).indices
    check(model, heads, shuffled, 64)
    loss_fn = YoloLoss(model)
    loss_fn(heads, shuffled)
    d1 = [d.clone() for d in loss_fn.deltas]
    loss_fn(heads, shuffled[order])
    for x, y in zip(d1, loss_fn.deltas, strict=True):
        assert torch.equal(x, y)


def test_no_targets(gen: torch.Generator) -> None:
    model = Darknet(tiny_cfg(OPTION_SETS["ciou_csp"]))
    heads = _heads(model, 2, 64, gen)
    check(model, heads, torch.zeros(0, 6, dtype=torch.float64), 64)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ([0, 3, 0.5, 0.5, 0.1, 0.1], "class outside 0..2"),
        ([0, 1.5, 0.5, 0.5, 0.1, 0.1], "class outside 0..2"),
        ([2, 0, 0.5, 0.5, 0.1, 0.1], r"image index outside 0..1 \(batch of 2\)"),
        ([-1, 0, 0.5, 0.5, 0.1, 0.1], "image index outside"),
        ([0, 0, 1.0, 0.5, 0.1, 0.1], r"centre \(cx, cy\) outside \[0, 1\)"),
        ([0, 0, 0.5, -0.1, 0.1, 0.1], "centre"),
        ([0, 0, 0.5, 0.5, 0.0, 0.1], r"size \(w, h\) outside \(0, 1\]"),
        ([0, 0, 0.5, 0.5, 0.1, 1.5], "size"),
        ([0, 0, float("nan"), 0.5, 0.1, 0.1], "is not finite"),
    ],
)
def test_bad_targets(row: list[float], match: str, gen: torch.Generator) -> None:
    model = Darknet(tiny_cfg(OPTION_SETS["mse"]))
    heads = _heads(model, 2, 64, gen)
    good = [0, 0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match=f"targets row 1 .*{match}"):
        YoloLoss(model)(heads, torch.tensor([good, row], dtype=torch.float64))


def test_bad_target_shapes_and_types(gen: torch.Generator) -> None:
    model = Darknet(tiny_cfg(OPTION_SETS["mse"]))
    heads = _heads(model, 2, 64, gen)
    loss = YoloLoss(model)
    with pytest.raises(ValueError, match=r"targets must be \(M, 6\).*got shape \(3, 5\)"):
        loss(heads, torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="targets must be a floating tensor"):
        loss(heads, torch.zeros(3, 6, dtype=torch.int64))
    with pytest.raises(TypeError, match="targets must be a tensor"):
        loss(heads, [[0, 0, 0.5, 0.5, 0.1, 0.1]])
    with pytest.raises(ValueError, match="3 tensors for a model with 2"):
        loss(heads[:1] + heads[:1] + heads[:1], torch.zeros(0, 6))
    with pytest.raises(
        ValueError, match=r"heads\[1\] \(layer 6\) has shape \(2, 3, 4, 4, 7\), expected \(N, 3, H, W, 8\)"
    ):
        loss([heads[0], heads[1][..., :-1]], torch.zeros(0, 6))
    with pytest.raises(ValueError, match="cannot infer the input size"):
        loss([heads[0], heads[0]], torch.zeros(0, 6))
    with pytest.raises(TypeError, match="list of per-head tensors"):
        loss(heads[0], torch.zeros(0, 6))


@pytest.mark.parametrize(
    ("yolo", "net", "match"),
    [
        ("iou_loss=cio", "", "iou_loss=cio: not one of mse, iou, giou, diou, ciou"),
        ("iou_thresh_kind=xiou", "", "iou_thresh_kind=xiou"),
        ("map=labels.map", "", "map=labels.map: a class-id map file"),
        ("counters_per_class=1,2", "", "counters_per_class has 2 values, classes=3"),
        ("ignore_thresh=abc", "", "ignore_thresh=abc: expected a number"),
        ("", "equidistant_point=1000", "equidistant_point=1000: rejecting deltas is not implemented"),
        ("", "badlabels_rejection_percentage=2", "badlabels_rejection_percentage"),
    ],
)
def test_refused_options(yolo: str, net: str, match: str) -> None:
    with pytest.raises(LossOptionError, match=match):
        YoloLoss(Darknet(tiny_cfg(yolo, net=net)))


def test_model_without_yolo() -> None:
    cfg = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=4\nsize=1\n"
    with pytest.raises(ValueError, match="no \\[yolo\\] layers"):
        YoloLoss(Darknet(cfg))


def test_input_size_argument(gen: torch.Generator) -> None:
    """A non-default input size: inferred from the heads, or given; a wrong one changes the deltas."""
    model = Darknet(tiny_cfg(OPTION_SETS["ciou_yolov4"]))
    heads = _heads(model, 2, 96, gen)
    targets = _random_targets(2, 3, gen)
    check(model, heads, targets, 96)
    loss_fn = YoloLoss(model)
    a = loss_fn(heads, targets)
    b = loss_fn(heads, targets, input_size=(96, 96))
    torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["ciou_csp", "ciou_yolov4", "mse_new_coords", "truth_thresh", "counters_per_class"])
def test_cuda_heads_with_cpu_or_cuda_targets(name: str, gen: torch.Generator) -> None:
    """On a GPU: targets on the CPU (the assignments planned there and copied) or on the device
    give the same deltas, those of the reference (the eager steps; test_compiled_steps has the
    compiled ones)."""
    model = Darknet(tiny_cfg(OPTION_SETS[name]))
    heads64 = _heads(model, 3, 64, gen)
    targets = _random_targets(3, 3, gen, per_image=10)
    plant(model, heads64, 0, 0, 0, [0.3, 0.3, 0.14, 0.2], 64, jitter=0.01, class_id=1)
    targets = torch.cat([torch.tensor([[0, 1, 0.3, 0.3, 0.14, 0.2]], dtype=torch.float64), targets])
    ref, _ = reference_deltas(YoloLoss(model).options, [h.detach().float().double() for h in heads64], targets, 64, 64)
    grads = {}
    for where in ("cpu", "cuda"):
        heads = [h.detach().float().cuda().requires_grad_() for h in heads64]
        loss = YoloLoss(model, compile=False)(heads, targets.float().to(where))
        loss.backward()
        grads[where] = [h.grad.cpu() for h in heads]
        for g, d in zip(grads[where], ref, strict=True):
            torch.testing.assert_close(g.double(), -d, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads["cpu"], grads["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(("name", "compiled"), [("ciou_csp", False), ("ciou_yolov4", False), ("ciou_csp", True)])
def test_cuda_loss_never_waits_for_the_gpu(name: str, compiled: bool, gen: torch.Generator) -> None:
    """With the targets on the CPU, as a DataLoader gives them, the loss and its backward never
    synchronize with the GPU (the family's options: truth_thresh = 1, one iou_loss), so the host
    queues the loss and the backward while the forward still runs."""
    model = Darknet(tiny_cfg(OPTION_SETS[name]))
    loss_fn = YoloLoss(model, compile=compiled)
    targets = _random_targets(3, 3, gen, per_image=6).float()
    # the first call builds the per-device setup (copies that wait) and compiles, for these shapes:
    # the second, on other heads, runs what a training step runs
    for step in range(2):
        heads = [h.detach().float().cuda().requires_grad_() for h in _heads(model, 3, 64, gen)]
        torch.cuda.set_sync_debug_mode("error" if step else "default")
        try:
            loss_fn(heads, targets).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert all(h.grad.abs().sum() > 0 for h in heads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_yolov4_csp_bf16_autocast(gen: torch.Generator) -> None:
    """yolov4-csp's own heads under bf16 autocast on a GPU: float32 deltas close to the reference
    on the same (bfloat16) head values, gradients back in bfloat16 into the weights."""
    model = Darknet(packaged_cfg("yolov4-csp")).cuda().train()
    x = torch.rand(2, 3, 128, 128, generator=gen).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        heads = model(x)
    for h in heads:
        h.retain_grad()
    targets = _random_targets(2, 80, gen, per_image=8)
    loss = YoloLoss(model)(heads, targets.float())
    loss.backward()
    ref, _ = reference_deltas(YoloLoss(model).options, [h.detach().double().cpu() for h in heads], targets, 128, 128)
    for h, d in zip(heads, ref, strict=True):
        assert h.grad.dtype == torch.bfloat16
        torch.testing.assert_close(h.grad.double().cpu(), -d, rtol=1e-2, atol=1e-2)
    assert model.layers[0].conv.weight.grad.abs().sum() > 0
