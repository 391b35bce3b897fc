"""Training a YOLOv4-CSP-style detector (115 convolutions, 112 activations) with each activation:
step time and peak memory, eager and torch.compile, fp32 and bf16 autocast.

    python benchmarks/bench_training.py [--batch 16] [--size 512] [--no-compile]

Writes benchmarks/results/training.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import environment, write_table
from torch import nn

import torch_mish
from torch_mish.models import YOLOv4CSP


class ComposedMish(nn.Module):
    """The hand-written module YOLO code bases use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


ACTIVATIONS = {
    "torch_mish.Mish": torch_mish.Mish,
    "nn.Mish": nn.Mish,
    "composed x*tanh(softplus(x))": ComposedMish,
    "LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1, inplace=True),
}


def run(act: str, dtype: str, compiled: bool, batch: int, size: int, steps: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = YOLOv4CSP(act=ACTIVATIONS[act]).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    step_model = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16-autocast")

    def step() -> None:
        with autocast:
            out = step_model(x)
            loss = sum(o.float().square().mean() for o in out)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - start
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    peak = torch.cuda.max_memory_allocated() / 2**30
    return {
        "activation": act,
        "precision": dtype,
        "mode": "compile" if compiled else "eager",
        "step_ms": f"{statistics.median(times):.2f}",
        "peak_GiB": f"{peak:.2f}",
        "warmup_s": f"{warmup_s:.1f}",
    }


def release() -> None:
    """Free the last model's memory and compiled graphs before the next measurement."""
    torch.cuda.empty_cache()
    torch._dynamo.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-activations", default="torch_mish.Mish,nn.Mish,LeakyReLU(0.1)")
    parser.add_argument("--out-name", default="training")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True  # the same convolution algorithms for every activation
    env = environment()
    env["workload"] = f"YOLOv4CSP(width=1, depth=1), batch {args.batch}, {args.size}x{args.size}, channels_last, SGD"
    rows = []
    for dtype in ("fp32", "bf16-autocast"):
        for act in ACTIVATIONS:
            rows.append(run(act, dtype, False, args.batch, args.size, args.steps))
            print(rows[-1], flush=True)
            release()
    if not args.no_compile:
        for act in args.compile_activations.split(","):
            rows.append(run(act, "bf16-autocast", True, args.batch, args.size, args.steps))
            print(rows[-1], flush=True)
            release()
    lines = ["| activation | precision | mode | step ms | peak GiB |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r['activation']} | {r['precision']} | {r['mode']} | {r['step_ms']} | {r['peak_GiB']} |" for r in rows
    ]
    md = "\n".join(lines)
    write_table(args.out_name, rows, env, md)
    print(md)


if __name__ == "__main__":
    main()
