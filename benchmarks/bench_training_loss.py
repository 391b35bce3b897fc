"""Training yolov4-csp (the darknet cfg, 80 classes) with darknet's loss (torch_mish.darknet.YoloLoss):
images/s, peak memory and the share of a step spent in the loss, for torch_mish.Mish with fused
BatchNorm, nn.Mish and LeakyReLU(0.1) models, eager or compiled.

    python benchmarks/bench_training_loss.py [--batch 16] [--size 512] [--modes eager,compile]
        [--precisions bf16-autocast,fp32] [--activations "torch_mish.Mish+BN,nn.Mish,LeakyReLU(0.1)"]

Writes benchmarks/results/{--out-name, default training_loss}.{csv,md,env.json}.

A step is Trainer.step's work: forward (under autocast for bf16), YoloLoss on the heads (targets
on the CPU, as a DataLoader gives them), backward of the loss divided by the batch, SGD with
darknet's momentum and decay. The batch is random
images with random boxes (8-24 per image, COCO-like sizes), the same for every model. Method: per
model, warm-up steps (compilation included), then timed steps, median; peak memory is one step's
peak allocation. The loss's share: YoloLoss alone (value and the gradient it hands each head,
including its host synchronizations) on the heads of that model, against the step; and the step
against the same step with a trivial loss (the sum of the heads' squares): what the loss adds.
The target is a share of at most 10 %.

Compiling yolov4-csp takes minutes per model, so gpu_run.sh's training_loss_compile_all stage runs
one process per activation at once with --take-turns DIR: each compiles (its first step) in
parallel with the others, then waits until all have, and does the rest of its warm-up and all its
timing holding a lock on DIR, so no two processes time (or run) steps at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from common import environment, markdown_table, write_table
from torch import nn

import torch_mish
from torch_mish.darknet import Darknet, YoloLoss, packaged_cfg

ROOT = Path(__file__).resolve().parent.parent
FUSED = "torch_mish.Mish+BN"


def build(activation: str, size: int) -> Darknet:
    torch.manual_seed(0)
    model = Darknet(packaged_cfg("yolov4-csp"))
    if activation == "nn.Mish":
        torch_mish.revert_mish(model)
    elif activation.startswith("LeakyReLU"):
        for name, module in list(model.named_modules()):
            if isinstance(module, torch_mish.Mish):
                model.set_submodule(name, nn.LeakyReLU(0.1, inplace=True))
    elif activation != FUSED:
        raise ValueError(f"unknown activation {activation!r}")
    model = model.cuda().train()
    if activation == FUSED:
        torch_mish.fuse_batchnorm_mish(model)
    model.check_input_size(size, size)
    return model


def random_batch(n: int, size: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    rows = []
    for b in range(n):
        k = int(torch.randint(8, 25, (1,), generator=g))
        wh = torch.rand(k, 2, generator=g) ** 2 * 0.6 + 0.01
        xy = torch.rand(k, 2, generator=g) * 0.98 + 0.01
        cls = torch.randint(0, classes, (k, 1), generator=g).float()
        rows.append(torch.cat([torch.full((k, 1), float(b)), cls, xy, wh], 1))
    # the targets stay on the CPU, as a DataLoader yields them: YoloLoss plans there
    return x.cuda().to(memory_format=torch.channels_last), torch.cat(rows)


class Step:
    """One darknet training step (Trainer.step's work without its bookkeeping)."""

    def __init__(
        self, model: Darknet, precision: str, compiled: bool, trivial: bool = False, loss_compile: bool | None = None
    ) -> None:
        self.model = model
        self.forward = torch.compile(model) if compiled else model
        self.loss = YoloLoss(model, compile=loss_compile)
        self.trivial = trivial
        net = model.net_options
        decay = float(net.get("decay", "0.0005"))
        groups = [
            {"params": [p for n, p in model.named_parameters() if n.endswith("conv.weight")], "weight_decay": decay},
            {"params": [p for n, p in model.named_parameters() if not n.endswith("conv.weight")], "weight_decay": 0.0},
        ]
        self.opt = torch.optim.SGD(groups, lr=1e-4, momentum=float(net.get("momentum", "0.9")))
        self.bf16 = precision == "bf16-autocast"

    def heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self.forward(x)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        heads = self.heads(x)
        if self.trivial:
            loss = sum(h.float().square().sum() for h in heads)
        else:
            loss = self.loss(heads, targets)
        (loss / x.shape[0]).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def median_ms(fn: Callable[[], object], steps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times


@contextlib.contextmanager
def my_turn(folder: Path | None, processes: int) -> Iterator[None]:
    """With --take-turns: mark this process compiled, wait for the other processes to be, then hold
    the folder's lock (one process at a time) until the block ends. Without it: nothing."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.compiled").touch()
    while len(list(folder.glob("*.compiled"))) < processes:
        time.sleep(0.5)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def measure(activation: str, precision: str, compiled: bool, args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    model = build(activation, args.size)
    x, targets = random_batch(args.batch, args.size, model.yolo_layers[0].classes)
    step = Step(model, precision, compiled, loss_compile=False if args.eager_loss else None)
    step(x, targets)  # compiles
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - started
    with my_turn(args.take_turns, args.processes):
        turn_started = time.perf_counter()
        for _ in range(args.warmup - 1):
            step(x, targets)
        torch.cuda.synchronize()
        warm_s = compile_s + time.perf_counter() - turn_started  # not the wait for the turn
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(x, targets)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        step_ms, _ = median_ms(lambda: step(x, targets), args.steps)

        heads = [h.detach().requires_grad_() for h in step.heads(x)]

        def loss_only() -> None:
            step.loss(heads, targets).backward()

        for _ in range(3):
            loss_only()
        loss_ms, _ = median_ms(loss_only, args.steps)
        if args.profile:
            name = re.sub(r"[^A-Za-z0-9._-]", "_", f"training_loss_{activation}_{precision}")
            profile_loss(loss_only, args.profile / f"{name}.txt")
        trivial = Step(model, precision, False, trivial=True) if not compiled else None
        if trivial is not None:  # eager only: a compiled trivial step would compile the model again
            trivial.forward = step.forward
            for _ in range(2):
                trivial(x, targets)
            trivial_ms, _ = median_ms(lambda: trivial(x, targets), args.steps)
        row = {
            "activation": activation,
            "precision": precision,
            "mode": "compile" if compiled else "eager",
            "loss_steps": "eager" if args.eager_loss else "compiled",
            "images_per_s": f"{args.batch / step_ms * 1e3:.1f}",
            "step_ms": f"{step_ms:.1f}",
            "loss_ms": f"{loss_ms:.2f}",
            "loss_share": f"{100 * loss_ms / step_ms:.1f}%",
            "trivial_loss_step_ms": f"{trivial_ms:.1f}" if trivial is not None else "-",
            "peak_GiB": f"{peak:.2f}",
            "warmup_s": f"{warm_s:.0f}",
        }
        print(row, flush=True)
        return row


def profile_loss(loss_only: Callable[[], None], path: Path) -> None:
    """torch.profiler over a few loss calls: the operators by GPU time and by host time, and the
    wall time against the GPU time they add up to (what bounds the loss: launches or kernels)."""
    from torch.profiler import ProfilerActivity, profile

    calls = 5
    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            loss_only()
        torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - started) * 1e3 / calls
    events = prof.key_averages()
    gpu_ms = sum(e.self_device_time_total for e in events) / 1e3 / calls
    kernels = sum(e.count for e in events if e.self_device_time_total > 0 and e.device_type.name == "CUDA") / calls
    path.parent.mkdir(parents=True, exist_ok=True)
    env = environment()
    path.write_text(
        f"# YoloLoss alone under torch.profiler\n# {env['device']}, torch {env['torch']}, {env['date']}, "
        f"commit {env['commit']}\n# {env['command']}\n\n"
        f"{calls} calls of YoloLoss (value and backward), profiled: {wall_ms:.2f} ms a call on the host clock, "
        f"{gpu_ms:.2f} ms of GPU work, {kernels:.0f} kernels a call\n\n"
        + events.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=60)
        + "\n\n"
        + events.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60)
    )
    print(f"profile: {path}", flush=True)


COLUMNS = {
    "activation": "activation",
    "precision": "precision",
    "mode": "mode",
    "YoloLoss steps": "loss_steps",
    "images/s": "images_per_s",
    "step ms": "step_ms",
    "YoloLoss ms": "loss_ms",
    "loss share": "loss_share",
    "step ms, trivial loss": "trivial_loss_step_ms",
    "peak GiB": "peak_GiB",
}


def table(rows: list[dict[str, object]]) -> str:
    return markdown_table(rows, COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--precisions", default="bf16-autocast,fp32")
    parser.add_argument("--activations", default=f"{FUSED},nn.Mish,LeakyReLU(0.1)")
    parser.add_argument("--out-name", default="training_loss")
    parser.add_argument(
        "--eager-loss", action="store_true", help="YoloLoss(compile=False): its steps eagerly (default: compiled)"
    )
    parser.add_argument("--profile", type=Path, help="also write a torch.profiler table of the loss per model here")
    parser.add_argument(
        "--take-turns", type=Path, help="a folder shared with other processes of this script: time one at a time"
    )
    parser.add_argument("--processes", type=int, default=1, help="with --take-turns: how many processes share it")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    env = environment()
    env["command"] = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    env["workload"] = (
        f"yolov4-csp.cfg (80 classes), batch {args.batch}, {args.size}x{args.size}, channels_last, "
        "random images and boxes, YoloLoss, SGD"
    )
    env["method"] = f"{args.warmup} warm-up steps, then {args.steps} timed steps per model; median"
    if args.take_turns:
        env["method"] += f"; compiled beside {args.processes - 1} other processes, timed alone"
    rows: list[dict[str, object]] = []
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            for activation in args.activations.split(","):
                rows.append(measure(activation, precision, mode == "compile", args))
                torch.cuda.empty_cache()
                torch._dynamo.reset()
                write_table(args.out_name, rows, env, table(rows))  # a run cut short keeps what it measured
    print(table(rows))


if __name__ == "__main__":
    main()
