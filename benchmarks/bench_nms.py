"""darknet's NMS on a GPU: torch_mish's op (each kind) against torchvision's batched_nms (IoU) with the
same pre-filter and a plain PyTorch DIoU loop, and a compiled Detector's share of time in NMS.

    python benchmarks/bench_nms.py                        # ops, then the Detector (GPU)
    python benchmarks/bench_nms.py --sections ops         # results/nms.{csv,md}
    python benchmarks/bench_nms.py --sections detector    # results/nms_detector.{csv,md}
    python benchmarks/bench_nms.py --device cpu --batches 1 --baseline-budget-s 30   # the CPU kernel

Inputs: rows decoded by Darknet(cfg) (yolov4 at 608: 22,743 rows; yolov4-csp at 640: 25,200; 80
classes) from uniform random images, in float32, with two weight distributions:
- "random": default initialisation. Objectness and class scores sit near 0.5, so at conf 0.005
  nearly every (row, class) pair is a candidate, and at 0.25 about half: the worst case.
- "trained-like": the same network with each head convolution's objectness and class channels
  rescaled, channel by channel, so that their logits spread as N(-7, 2^2) and N(-4, 2^2) over the
  image: objectness mostly low with a tail of confident rows, as in a trained detector.
The table states the candidate pairs per image (objectness and score above conf).

ops section, per model, input, batch and conf: the op (max_det 300, iou 0.45) timed eagerly (CUDA
events around back-to-back calls, median) and replayed from a CUDA graph (no host time);
torchvision: the same pre-filter (nonzero), batched_nms (one id per image and class), the best
max_det per image (it synchronizes with the host); the DIoU loop: per image and class, take the best
and drop what its DIoU suppresses, until max_det kept. A baseline's first run is timed alone; one
that takes over a second is reported from that single run, one that passes --baseline-budget-s
is stopped and reported as such, and at batch 16 a baseline whose batch-1 time times 16 passes the
budget is not run.

detector section: Detector(model) and the model alone, both torch.compile(mode="reduce-overhead",
fullgraph=True), float16, batch 1, conf 0.25: the NMS share is 1 - model / detector.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, commit, time_cuda  # noqa: E402 - found through the path above

import torch_mish  # noqa: E402
from torch_mish.darknet import Darknet, Detector, darknet_nms, packaged_cfg  # noqa: E402
from torch_mish.darknet.layers import Convolutional  # noqa: E402

MODELS = {"yolov4": ("yolov4", 608), "yolov4-csp": ("yolov4-csp", 640)}
KINDS = ("default", "greedynms", "diounms")
IOU = 0.45
BETA = 0.6
# trained-like: (mean, spread) of the objectness and class logits (see trained_like)
OBJECTNESS_LOGIT = (-7.0, 2.0)
CLASS_LOGIT = (-4.0, 2.0)


class OverBudget(Exception):
    pass


def provenance(device: str) -> dict[str, str]:
    """Device, versions, date, command and commit: written into the result files."""
    env = {
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "torch_mish": torch_mish.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": commit(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = "not installed"
    if device == "cpu":
        env["cpu_threads"] = str(torch.get_num_threads())
    return env


def write(name: str, rows: list[dict[str, object]], env: dict[str, str], markdown: str) -> None:
    import csv

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        f.write("".join(f"# {k}: {v}\n" for k, v in env.items()))
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    header = "\n".join(f"- {k}: {v}" for k, v in env.items())
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{header}\n\n{markdown}\n")
    print(f"wrote {RESULTS / name}.{{csv,md}}")


def trained_like(model: Darknet, size: int) -> None:
    """Rescale each [yolo] head convolution's objectness and class channels, channel by channel, so
    that over the image their logits (what the sigmoid, or the head's logistic activation, turns
    into the rows' scores) spread as N(OBJECTNESS_LOGIT) and N(CLASS_LOGIT), instead of random
    weights' narrow spread around 0."""
    param = next(model.parameters())
    convs = []
    for head in model.yolo_layers:
        conv = model.layers[head.index - 1]
        if not isinstance(conv, Convolutional) or conv.conv.bias is None:
            raise ValueError(f"layer {head.index - 1} is not a head convolution with a bias")
        convs.append((head, conv.conv))
    outputs: dict[int, Tensor] = {}
    hooks = [c.register_forward_hook(lambda m, i, o, k=k: outputs.__setitem__(k, o)) for k, (_, c) in enumerate(convs)]
    with torch.no_grad():
        model(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)).to(param.device, param.dtype))
        for hook in hooks:
            hook.remove()
        for k, (head, conv) in enumerate(convs):
            z = outputs[k].float().transpose(0, 1).flatten(1)  # (channels, positions)
            mean, std = z.mean(1), z.std(1)
            target_mean = torch.full_like(mean, CLASS_LOGIT[0]).view(head.num_anchors, -1)
            target_std = torch.full_like(std, CLASS_LOGIT[1]).view(head.num_anchors, -1)
            target_mean[:, 4], target_std[:, 4] = OBJECTNESS_LOGIT
            scores = torch.zeros_like(target_mean, dtype=torch.bool)
            scores[:, 4:] = True
            gain = torch.where(scores.flatten(), target_std.flatten() / std, 1.0)
            shift = torch.where(scores.flatten(), target_mean.flatten() - mean * gain, 0.0)
            conv.weight.mul_(gain.view(-1, 1, 1, 1).to(conv.weight.dtype))
            conv.bias.copy_(conv.bias * gain.to(conv.bias.dtype) + shift.to(conv.bias.dtype))


def make_model(name: str, inputs: str, device: str) -> Darknet:
    torch.manual_seed(0)
    model = Darknet(packaged_cfg(MODELS[name][0])).eval().to(device)
    if inputs == "trained-like":
        trained_like(model, MODELS[name][1])
    return model


def op_rows(model: Darknet, size: int, batch: int, device: str) -> Tensor:
    """The rows the ops section times: the model on uniform random images, seeded by the batch size."""
    gen = torch.Generator().manual_seed(batch)
    with torch.no_grad():
        return model(torch.rand(batch, 3, size, size, generator=gen).to(device))


def candidates_per_image(rows: Tensor, conf: float) -> float:
    obj = rows[..., 4:5]
    return float(((obj > conf) & (obj * rows[..., 5:] > conf)).sum()) / rows.shape[0]


def run_timed(fn: Callable[[float], object], device: str, budget_s: float) -> tuple[float | None, str]:
    """(ms per call, how it was measured) of fn(deadline); None and a note when the first call passes
    the budget (fn raises OverBudget once time.perf_counter() passes its deadline)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    try:
        fn(start + budget_s)
    except OverBudget:
        return None, f"stopped after {budget_s:g} s"
    sync()
    first = (time.perf_counter() - start) * 1e3
    if first > 1000:
        return first, "single run"
    never = float("inf")
    if device == "cuda":
        return time_cuda(lambda i: fn(never), trials=7, max_reps=20), "median"
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn(never)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), "median of 5"


def prefilter(rows: Tensor, conf: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The (image, row, class) candidates: objectness and score above conf. Returns image, class,
    score, and the corner boxes."""
    obj = rows[..., 4:5]
    score = obj * rows[..., 5:]
    image, row, cls = ((obj > conf) & (score > conf)).nonzero(as_tuple=True)
    b = rows[image, row, :4]
    return image, cls, score[image, row, cls], torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)


def torchvision_nms(rows: Tensor, conf: float, max_det: int) -> list[Tensor]:
    from torchvision.ops import batched_nms

    image, cls, score, boxes = prefilter(rows, conf)
    keep = batched_nms(boxes, score, image * (rows.shape[2] - 5) + cls, IOU)  # by score, descending
    return [keep[image[keep] == i][:max_det] for i in range(rows.shape[0])]


def diou_loop(rows: Tensor, conf: float, max_det: int, net: float, deadline: float) -> list[Tensor]:
    """darknet's diounms written plainly in PyTorch: per image and class, the best remaining box
    suppresses those whose IoU - (d/c)^beta exceeds the threshold."""
    image, cls, score, boxes = prefilter(rows, conf)
    boxes = boxes / net
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    kept_all = []
    for group in torch.unique(image * (rows.shape[2] - 5) + cls).tolist():
        idx = ((image * (rows.shape[2] - 5) + cls) == group).nonzero().squeeze(1)
        idx = idx[score[idx].argsort(descending=True)]
        kept = 0
        while idx.numel() and kept < max_det:
            if time.perf_counter() > deadline:
                raise OverBudget
            top, rest = idx[0], idx[1:]
            kept_all.append(top)
            kept += 1
            lt = torch.maximum(boxes[top, :2], boxes[rest, :2])
            rb = torch.minimum(boxes[top, 2:], boxes[rest, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            iou = inter / (area[top] + area[rest] - inter)
            outer = torch.maximum(boxes[top, 2:], boxes[rest, 2:]) - torch.minimum(boxes[top, :2], boxes[rest, :2])
            c = outer.square().sum(1)
            d = (centre[top] - centre[rest]).square().sum(1)
            idx = rest[iou - (d / c).pow(BETA) <= IOU]
    kept = torch.stack(kept_all) if kept_all else torch.zeros(0, dtype=torch.long, device=rows.device)
    kept = kept[score[kept].argsort(descending=True)]
    return [kept[image[kept] == i][:max_det] for i in range(rows.shape[0])]


def graph_ms(fn: Callable[[], object]) -> float:
    from bench_fused_activation import graph_time

    return graph_time(fn, reps=10, trials=11)


def baseline(
    name: str, fn: Callable[[float], object], device: str, budget_s: float, batch: int, batch1: dict[str, object] | None
) -> tuple[float | None, str]:
    """A baseline timed by run_timed, unless its batch-1 run predicts more than the budget."""
    if batch > 1 and batch1 is not None:
        ms = batch1[f"{name}_ms"]
        if ms is None or ms * batch > budget_s * 1e3:
            took = "was stopped" if ms is None else f"took {ms / 1e3:.1f} s"
            return None, f"not run: batch 1 {took}"
    return run_timed(fn, device, budget_s)


def ops_cell(
    rows: Tensor, conf: float, size: int, args: argparse.Namespace, device: str, batch1: dict[str, object] | None
) -> dict[str, object]:
    """One model, input, batch and conf: the op's kinds and the two baselines (batch1: the same
    cell at batch 1, whose baseline times decide whether a slow baseline is run again)."""
    cell: dict[str, object] = {"candidates_per_image": round(candidates_per_image(rows, conf))}
    for kind in KINDS:

        def op(kind: str = kind) -> object:
            return darknet_nms(rows, conf, IOU, args.max_det, kind, BETA, float(size), float(size))

        if device == "cuda":
            cell[f"op_{kind}_ms"] = time_cuda(lambda i, op=op: op())
            cell[f"op_{kind}_graph_ms"] = graph_ms(op)
        else:
            cell[f"op_{kind}_ms"], _ = run_timed(lambda _, op=op: op(), device, float("inf"))
        cell[f"dets_{kind}"] = float(op()[0].float().mean())
    budget, batch = args.baseline_budget_s, rows.shape[0]
    try:
        import torchvision  # noqa: F401

        tv = baseline("torchvision", lambda _: torchvision_nms(rows, conf, args.max_det), device, budget, batch, batch1)
    except ImportError:
        tv = None, "torchvision not installed"
    cell["torchvision_ms"], cell["torchvision_timing"] = tv
    cell["diou_loop_ms"], cell["diou_loop_timing"] = baseline(
        "diou_loop",
        lambda deadline: diou_loop(rows, conf, args.max_det, float(size), deadline),
        device,
        budget,
        batch,
        batch1,
    )
    return cell


def ops_section(args: argparse.Namespace, device: str) -> tuple[list[dict[str, object]], str]:
    cells: list[dict[str, object]] = []
    for name, inputs in ((m, i) for m in args.models for i in args.inputs):
        model = make_model(name, inputs, device)
        size = MODELS[name][1]
        at_batch1: dict[float, dict[str, object]] = {}
        for batch in sorted(args.batches):
            rows = op_rows(model, size, batch, device)
            for conf in args.confs:
                cell = {"model": name, "inputs": inputs, "batch": batch, "conf": conf}
                cell |= ops_cell(rows, conf, size, args, device, at_batch1.get(conf))
                if batch == 1:
                    at_batch1[conf] = cell
                cells.append(cell)
                print(json.dumps(cell), flush=True)
    return cells, ops_markdown(cells, device)


def fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if v < 1000 else f"{v:.0f}"
    return str(v)


def ops_markdown(rows: list[dict[str, object]], device: str) -> str:
    graph = device == "cuda"
    head = "| model | inputs | batch | conf | candidates / image | op default | op greedynms | op diounms |"
    head += " op default (graph) | op greedynms (graph) | op diounms (graph) |" if graph else ""
    head += " torchvision batched_nms | DIoU loop | default / torchvision | diounms / default | detections / image |"
    lines = [
        "Milliseconds per call (batch), max_det 300, iou 0.45; the op's kinds eager and replayed from a CUDA graph."
        if graph
        else "Milliseconds per call (batch), max_det 300, iou 0.45, on the CPU kernel.",
        "",
        head,
        "|" + " --- |" * (head.count("|") - 1),
    ]
    for r in rows:
        cols = [r["model"], r["inputs"], r["batch"], r["conf"], r["candidates_per_image"]]
        cols += [fmt(r[f"op_{k}_ms"]) for k in KINDS]
        if graph:
            cols += [fmt(r[f"op_{k}_graph_ms"]) for k in KINDS]
        tv = fmt(r["torchvision_ms"]) + (
            "" if r["torchvision_timing"] in ("median", "median of 5") else f" ({r['torchvision_timing']})"
        )
        loop = fmt(r["diou_loop_ms"]) + (
            "" if r["diou_loop_timing"] in ("median", "median of 5") else f" ({r['diou_loop_timing']})"
        )
        key = "_graph_ms" if graph else "_ms"
        vs_tv = r["op_default_ms"] / r["torchvision_ms"] if r["torchvision_ms"] else None
        cols += [tv, loop, fmt(vs_tv, 2), fmt(r[f"op_diounms{key}"] / r[f"op_default{key}"], 3), fmt(r["dets_default"])]
        lines.append("| " + " | ".join(str(c) for c in cols) + " |")
    return "\n".join(lines)


def detector_cell(model: Darknet, det: Detector, x: Tensor, args: argparse.Namespace) -> dict[str, object]:
    """The model and the Detector compiled (CUDA graphs) and timed, and the op alone in a graph."""
    compiled_model = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    compiled_det = torch.compile(det, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        compiled_model(x)
        compiled_det(x)
    model_ms = time_cuda(lambda i: compiled_model(x))
    det_ms = time_cuda(lambda i: compiled_det(x))
    rows = model(x)
    size = float(x.shape[-1])

    def op() -> object:
        return darknet_nms(rows, 0.25, IOU, args.max_det, det.nms_kind, det.beta_nms, size, size)

    op_ms = graph_ms(op)
    return {
        "kind": det.nms_kind,
        "candidates_per_image": round(candidates_per_image(rows.float(), 0.25)),
        "model_ms": model_ms,
        "detector_ms": det_ms,
        "nms_share": 1 - model_ms / det_ms,
        "op_graph_ms": op_ms,
        "op_share": op_ms / det_ms,
    }


def detector_section(args: argparse.Namespace, save: Callable[[list[dict[str, object]], str], None]) -> None:
    """Each cell timed, then the table so far written (a run cut short keeps its finished cells)."""
    cells: list[dict[str, object]] = []
    for name in args.models:
        size = MODELS[name][1]
        model = make_model(name, "random", "cuda").half()
        det = Detector(model, conf_thresh=0.25, iou_thresh=IOU, max_det=args.max_det)
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).cuda().half()
        with torch.no_grad():
            for inputs in args.inputs:
                if inputs == "trained-like":  # parameters are graph inputs: no recompilation
                    trained_like(model, size)
                cell = {"model": name, "inputs": inputs} | detector_cell(model, det, x, args)
                cells.append(cell)
                print(json.dumps(cell), flush=True)
                save(cells, detector_table(cells))


def detector_table(cells: list[dict[str, object]]) -> str:
    head = "| model | inputs | nms_kind | candidates / image | model (ms) | Detector (ms) | NMS share |"
    head += " op alone in a graph (ms) | op / Detector |"
    lines = [
        'Batch 1, float16, conf 0.25, iou 0.45, max_det 300; torch.compile(mode="reduce-overhead", fullgraph=True)',
        "(CUDA graphs). NMS share = 1 - model / Detector.",
        "",
        head,
        "|" + " --- |" * (head.count("|") - 1),
    ]
    for r in cells:
        lines.append(
            f"| {r['model']} | {r['inputs']} | {r['kind']} | {r['candidates_per_image']} | {fmt(r['model_ms'])} | "
            f"{fmt(r['detector_ms'])} | {r['nms_share']:.1%} | {fmt(r['op_graph_ms'])} | {r['op_share']:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--sections", default="ops,detector", help="ops, detector (GPU only)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--inputs", default="random,trained-like")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--confs", default="0.25,0.005")
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--baseline-budget-s", type=float, default=10.0, help="stop a baseline's first run after this")
    p.add_argument("--out-name", default=None, help="results file stem (default nms, nms_detector, nms_cpu)")
    args = p.parse_args()
    args.models = args.models.split(",")
    args.inputs = args.inputs.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.confs = [float(c) for c in args.confs.split(",")]
    sections = args.sections.split(",")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu for the CPU kernel)")
    env = provenance(args.device)
    if "ops" in sections:
        rows, md = ops_section(args, args.device)
        write(args.out_name or ("nms" if args.device == "cuda" else "nms_cpu"), rows, env, md)
    if "detector" in sections and args.device == "cuda":
        detector_section(args, lambda rows, md: write((args.out_name or "nms") + "_detector", rows, env, md))


if __name__ == "__main__":
    main()
