"""Is the backward through torch.autograd.grad bound by the host or by the kernel, per size?

bench_kernels.py times backward as torch.autograd.grad calls, which is what training pays, but at
small sizes a call's host time (Python, the autograd engine and its hand-off to the device thread)
can exceed its kernel's, and the GPU then idles between kernels. This probe takes each backward
(torch_mish, F.mish, ReLU) apart at a few sizes:

- autograd: ms per torch.autograd.grad call, CUDA events over batches (bench_kernels.py's method);
- host: ms of host time per autograd call, 200 calls back to back without a synchronization;
- kernel: ms per call of the backward op alone (mish._mish_backward, aten.mish_backward,
  aten.threshold_backward), whose host cost is a few us, so the GPU never waits: the kernel's time;
- profiled: torch.profiler's mean duration of the kernels each autograd call ran, and the share of
  the GPU's elapsed time they filled (below 1: the GPU waited for the host).

    python benchmarks/backward_host_probe.py [--sizes 4194304,16777216] [--dtypes float32,bfloat16]

Writes benchmarks/results/<--out-name>.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import environment, time_cuda, write_table
from torch.profiler import ProfilerActivity, profile

import torch_mish  # noqa: F401 - registers torch.ops.mish

L2_FLUSH_BYTES = 256 << 20  # as bench_kernels.py: rotate through at least this much input


def forward_fns() -> dict[str, tuple[Callable, Callable]]:
    """name -> (forward, the backward op autograd calls for it, as f(grad, x, y))."""
    return {
        "torch_mish": (torch.ops.mish.mish.default, lambda g, x, y: torch.ops.mish._mish_backward(g, x)),
        "F.mish": (F.mish, lambda g, x, y: torch.ops.aten.mish_backward(g, x)),
        "relu": (torch.relu, lambda g, x, y: torch.ops.aten.threshold_backward(g, y, 0)),
    }


def probe(name: str, n: int, dtype: torch.dtype) -> dict[str, object]:
    fwd, bwd_op = forward_fns()[name]
    nbuf = max(2, min(64, math.ceil(L2_FLUSH_BYTES / (3 * n * (torch.finfo(dtype).bits // 8)))))
    xs = [(torch.randn(n, device="cuda", dtype=dtype) * 3).requires_grad_() for _ in range(nbuf)]
    gs = [torch.randn(n, device="cuda", dtype=dtype) for _ in range(nbuf)]
    ys = [fwd(x) for x in xs]

    def step(i: int) -> None:
        torch.autograd.grad(ys[i % nbuf], xs[i % nbuf], gs[i % nbuf], retain_graph=True)

    autograd_ms = time_cuda(step)

    host = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(200):
            step(i)
        host.append((time.perf_counter() - t0) / 200 * 1e3)
    torch.cuda.synchronize()

    with torch.no_grad():
        detached = [(x.detach(), y.detach()) for x, y in zip(xs, ys, strict=True)]
        kernel_ms = time_cuda(lambda i: bwd_op(gs[i % nbuf], *detached[i % nbuf]))

    calls = 50
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start.record()
        for i in range(calls):
            step(i)
        end.record()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.self_device_time_total for e in kernels) / 1e3
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "n": n,
        "impl": name,
        "autograd_ms": f"{autograd_ms:.5f}",
        "host_ms_per_call": f"{statistics.median(host):.5f}",
        "kernel_ms": f"{kernel_ms:.5f}",
        "profiled_kernel_ms": f"{busy_ms / calls:.5f}",
        "gpu_busy": f"{busy_ms / start.elapsed_time(end):.2f}",
        "kernels": "; ".join(sorted({e.key[:60] for e in kernels})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4194304,16777216,67108864", help="comma-separated element counts")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32,float16,bfloat16")
    parser.add_argument("--out-name", default="backward_host_probe")
    args = parser.parse_args()
    env = environment()
    rows = []
    for dtype in (getattr(torch, d) for d in args.dtypes.split(",")):
        for n in (int(s) for s in args.sizes.split(",")):
            for name in forward_fns():
                rows.append(probe(name, n, dtype))
                torch.cuda.empty_cache()
                print(rows[-1], flush=True)
    lines = [
        "| dtype | elements | impl | autograd ms | host ms per call | kernel ms | profiled kernel ms | GPU busy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = ("autograd_ms", "host_ms_per_call", "kernel_ms", "profiled_kernel_ms", "gpu_busy")
    lines += [f"| {r['dtype']} | {r['n']} | {r['impl']} | " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    write_table(args.out_name, rows, env, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
