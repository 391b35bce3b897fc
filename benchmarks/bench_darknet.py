"""Darknet("yolov4-csp.cfg") against the hand-written YOLOv4CSP of the same shape: does the importer's
generic graph (routes, group slices, shortcuts, decode) cost anything over the hand-written model?

    python benchmarks/bench_darknet.py [--batches 1,16] [--size 640] [--rounds 15]

Eval forward (decode included for Darknet; the hand-written model returns raw heads) and a training
step (forward, backward, SGD), fp32 and bf16 autocast. The models are timed in interleaved rounds
(CUDA events around 10 back-to-back calls) and the median per model is reported.
Writes benchmarks/results/darknet.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from common import environment, write_table
from torch import nn
from yolov4_csp import YOLOv4CSP

from torch_mish._timing import time_calls
from torch_mish.darknet import Darknet, packaged_cfg


def step_fn(model: nn.Module, mode: str, dtype: torch.dtype, x: torch.Tensor) -> Callable[[], None]:
    autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32)
    if mode == "eval":
        model.eval()

        def forward() -> None:
            with torch.no_grad(), autocast:
                model(x)

        return forward
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def train() -> None:
        with autocast:
            loss = sum(t.float().square().mean() for t in model(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return train


def time_ms(fn: Callable[[], None], calls: int = 10) -> float:
    (ms,) = time_calls(fn, "cuda", iters=1, reps=calls)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    models = {"YOLOv4CSP": YOLOv4CSP(num_classes=80).cuda(), "Darknet": Darknet(packaged_cfg("yolov4-csp")).cuda()}
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.rand(batch, 3, args.size, args.size, device="cuda")
        for dtype in (torch.float32, torch.bfloat16):
            for mode in ("eval", "train"):
                fns = {name: step_fn(m, mode, dtype, x) for name, m in models.items()}
                for fn in fns.values():
                    for _ in range(5):
                        fn()
                samples: dict[str, list[float]] = {name: [] for name in fns}
                for _ in range(args.rounds):
                    for name, fn in fns.items():
                        samples[name].append(time_ms(fn))
                median = {name: statistics.median(v) for name, v in samples.items()}
                row = {
                    "mode": mode,
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": batch,
                    "size": args.size,
                    "yolov4csp_ms": round(median["YOLOv4CSP"], 3),
                    "darknet_ms": round(median["Darknet"], 3),
                    "ratio": round(median["Darknet"] / median["YOLOv4CSP"], 3),
                }
                rows.append(row)
                print(row, flush=True)
    table = [
        "| mode | dtype | batch | size | YOLOv4CSP ms | Darknet ms | Darknet / YOLOv4CSP |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['mode']} | {r['dtype']} | {r['batch']} | {r['size']} | {r['yolov4csp_ms']} | {r['darknet_ms']} "
        f"| {r['ratio']} |"
        for r in rows
    ]
    write_table("darknet", rows, environment(), "\n".join(table))


if __name__ == "__main__":
    main()
