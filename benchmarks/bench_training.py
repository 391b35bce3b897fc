"""Training a YOLOv4-CSP-style detector (115 convolutions, 112 activations) with each activation:
step time and peak memory, eager and torch.compile, fp32 and bf16 autocast.

    python benchmarks/bench_training.py [--batch 16] [--size 512] [--rounds 20] [--modes eager,compile] [--profile]

Writes benchmarks/results/training.{csv,md,env.json} (and profiles/training.txt with --profile).

Method: for each precision and mode, every activation's model is built and warmed up first; then
the timed steps are interleaved (one step per model per round, rotating the order) so that clock,
thermal and allocator drift fall on every model alike, and the median per model is reported.
Peak memory is one step's peak allocation above the step's start, plus the model's parameters,
gradients and optimizer state: what the model alone would need.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, environment, write_table
from torch import nn
from yolov4_csp import YOLOv4CSP

import torch_mish
from torch_mish._timing import percentile, time_calls


class ComposedMish(nn.Module):
    """The hand-written module YOLO code bases use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class MishDenseGrads(torch_mish.Mish):
    """torch_mish.Mish whose incoming gradient is first copied into the output's layout: what the op
    did with a slice of a concatenation's gradient before it read such gradients in place. The A/B
    of that change, in one build (eager only: the hook breaks a compiled graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if y.requires_grad:
            stride = y.stride()  # not y itself: holding it would keep the activation alive
            y.register_hook(
                lambda g: (
                    g
                    if g.stride() == stride
                    else torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device).copy_(g)
                )
            )
        return y


FUSED = "torch_mish.BatchNormMish"  # torch_mish.Mish model after torch_mish.fuse_batchnorm_mish
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "torch_mish.Mish": torch_mish.Mish,
    "torch_mish.Mish (gradients copied dense)": MishDenseGrads,
    FUSED: torch_mish.Mish,
    "nn.Mish": nn.Mish,
    "composed x*tanh(softplus(x))": ComposedMish,
    "LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1, inplace=True),
}


class Trainer:
    """One model and its optimizer; step() runs forward, backward and the update."""

    def __init__(self, act: str, precision: str, compiled: bool, x: torch.Tensor) -> None:
        torch.manual_seed(0)
        model = YOLOv4CSP(act=ACTIVATIONS[act])
        if act == FUSED:
            torch_mish.fuse_batchnorm_mish(model)
        self.model = model.cuda().to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.x = x
        self.bf16 = precision == "bf16-autocast"

    def step(self) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(self.x)
            loss = sum(o.float().square().mean() for o in out)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def persistent_bytes(self) -> int:
        """Parameters, their gradients (allocated during backward, counted there) excluded."""
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in self.model.buffers())
        state = sum(
            v.numel() * v.element_size() for s in self.opt.state.values() for v in s.values() if torch.is_tensor(v)
        )
        return params + buffers + state


def step_peak_bytes(trainer: Trainer) -> int:
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    trainer.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - start + trainer.persistent_bytes()


def measure(acts: list[str], precision: str, compiled: bool, args: argparse.Namespace) -> list[dict[str, object]]:
    x = torch.randn(args.batch, 3, args.size, args.size, device="cuda").to(memory_format=torch.channels_last)
    trainers, rows = {}, {}
    for act in acts:
        start = time.perf_counter()
        trainers[act] = Trainer(act, precision, compiled, x)
        for _ in range(args.warmup):
            trainers[act].step()
        torch.cuda.synchronize()
        rows[act] = {
            "activation": act,
            "precision": precision,
            "mode": "compile" if compiled else "eager",
            "warmup_s": f"{time.perf_counter() - start:.1f}",
        }
        print(f"  warmed up {act} ({precision}, {rows[act]['mode']}) in {rows[act]['warmup_s']} s", flush=True)
    for act in acts:
        rows[act]["peak_GiB"] = f"{step_peak_bytes(trainers[act]) / 2**30:.2f}"
    times: dict[str, list[float]] = {act: [] for act in acts}
    for r in range(args.rounds):
        order = acts[r % len(acts) :] + acts[: r % len(acts)]
        for act in order:
            times[act] += time_calls(trainers[act].step, "cuda", iters=1)
    for act in acts:
        t = times[act]
        rows[act]["step_ms"] = f"{percentile(t, 50):.2f}"
        rows[act]["q1_q3_ms"] = f"{percentile(t, 25):.2f}-{percentile(t, 75):.2f}"
    if args.profile and not compiled:
        for act, gpu_ms in profile(trainers, precision, args.profile_out).items():
            rows[act]["gpu_ms"] = f"{gpu_ms:.2f}"
    return [rows[act] for act in acts]


def profile(trainers: dict[str, Trainer], precision: str, path: Path, steps: int = 3) -> dict[str, float]:
    """Writes the CUDA kernels of a few steps per model, heaviest first, and returns each model's GPU
    time per step: the sum of its kernels' times, which host-bound eager steps do not show."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gpu_ms = {}
    with open(path, "a") as f:
        for act, trainer in trainers.items():
            with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(steps):
                    trainer.step()
                torch.cuda.synchronize()
            events = prof.key_averages()
            gpu_ms[act] = sum(e.self_device_time_total for e in events) / 1e3 / steps
            table = events.table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90)
            f.write(f"\n## {act}, {precision}, eager: {steps} steps\n\n{table}\n")
    return gpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--modes", default="eager,compile", help="eager and/or compile")
    parser.add_argument("--precisions", default="fp32,bf16-autocast")
    parser.add_argument("--compile-activations", default="torch_mish.Mish,nn.Mish,LeakyReLU(0.1)")
    parser.add_argument("--eager-activations", default=",".join(ACTIVATIONS))
    parser.add_argument("--profile", action="store_true", help="also write the eager runs' top CUDA kernels")
    parser.add_argument("--out-name", default="training")
    args = parser.parse_args()
    args.profile_out = RESULTS / "profiles" / f"{args.out_name}.txt"
    if args.profile:
        args.profile_out.parent.mkdir(parents=True, exist_ok=True)
        args.profile_out.write_text("# Top CUDA kernels per model (torch.profiler)\n")
    torch.backends.cudnn.benchmark = True  # cached per shape: every model gets the same algorithms
    env = environment()
    env["workload"] = f"YOLOv4CSP(width=1, depth=1), batch {args.batch}, {args.size}x{args.size}, channels_last, SGD"
    env["method"] = f"{args.warmup} warm-up steps, then {args.rounds} interleaved rounds; median step"
    groups = [(p, False) for p in args.precisions.split(",")] if "eager" in args.modes else []
    groups += [(p, True) for p in args.precisions.split(",")] if "compile" in args.modes else []
    rows: list[dict[str, object]] = []
    for precision, compiled in groups:
        acts = (args.compile_activations if compiled else args.eager_activations).split(",")
        rows += measure(acts, precision, compiled, args)
        torch.cuda.empty_cache()
        torch._dynamo.reset()
        md = table(rows)
        write_table(args.out_name, rows, env, md)  # after every group: a run cut short keeps what it measured
        print(md, flush=True)


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| activation | precision | mode | step ms (median) | q1-q3 ms | GPU ms per step | peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['activation']} | {r['precision']} | {r['mode']} | {r['step_ms']} | {r['q1_q3_ms']} "
        f"| {r.get('gpu_ms', '-')} | {r['peak_GiB']} |"
        for r in rows
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
