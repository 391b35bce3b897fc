"""Mish kernels against the peers: time and achieved bandwidth, forward / backward / both.

    python benchmarks/bench_kernels.py [--quick] [--sizes N,N] [--impls relu,F.mish,torch_mish]

Writes benchmarks/results/kernels.{csv,md,env.json}; benchmarks/plot.py draws plots/kernels.png.
Method: CUDA events, warm-up, median of 21 batches, inputs rotated through enough
buffers that no size runs from L2, the copy bandwidth measured in the same run as the ceiling.
Bandwidth counts the bytes the op must move: forward 2 n s (read x, write y), backward 3 n s
(read dy, x; write dx), forward+backward 5 n s.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import copy_bandwidth_gbs, environment, time_cuda, write_table

import torch_mish

L2_FLUSH_BYTES = 256 << 20  # rotate through at least this much input (H100/H200 L2: 50-60 MB)


def composed(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))  # what YOLO code bases write


def impls() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    compiled = torch.compile(F.mish, dynamic=True)
    return {
        "relu": torch.relu,
        "F.mish": F.mish,
        "torch.compile(F.mish)": compiled,
        "composed": composed,
        "torch_mish": torch.ops.mish.mish.default,
        "torch_mish.mish": torch_mish.mish,  # the Python API: adds its checks to the host cost
        "torch_mish_inplace": lambda x: torch_mish.mish(x, inplace=True),
    }


def measure(name: str, fn: Callable, direction: str, n: int, dtype: torch.dtype) -> float | None:
    elem = torch.finfo(dtype).bits // 8
    nbuf = max(2, min(64, math.ceil(L2_FLUSH_BYTES / (n * elem))))
    if direction == "forward":
        xs = [torch.randn(n, device="cuda", dtype=dtype) * 3 for _ in range(nbuf)]
        with torch.no_grad():
            return time_cuda(lambda i: fn(xs[i % nbuf]))
    if name == "torch_mish_inplace":
        return None  # in-place training copies its input (see README): forward only
    nbuf = max(2, nbuf // 3)
    xs = [(torch.randn(n, device="cuda", dtype=dtype) * 3).requires_grad_() for _ in range(nbuf)]
    gs = [torch.randn(n, device="cuda", dtype=dtype) for _ in range(nbuf)]
    if direction == "backward":
        ys = [fn(x) for x in xs]

        def step(i: int) -> None:
            torch.autograd.grad(ys[i % nbuf], xs[i % nbuf], gs[i % nbuf], retain_graph=True)

        return time_cuda(step)

    def both(i: int) -> None:
        torch.autograd.grad(fn(xs[i % nbuf]), xs[i % nbuf], gs[i % nbuf])

    return time_cuda(both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three sizes, for a smoke run")
    parser.add_argument("--max-size", type=int, default=256 << 20, help="largest size in elements")
    parser.add_argument("--out-name", default="kernels", help="results/<name>.{csv,md,env.json}")
    parser.add_argument("--sizes", help="comma-separated sizes in elements (default 4 Ki .. 256 Mi by 4x)")
    parser.add_argument("--impls", help="comma-separated subset of impls()' names (relu,F.mish,torch_mish)")
    args = parser.parse_args()
    env = environment()
    copy_gbs = copy_bandwidth_gbs()
    env["copy_bandwidth_GBps"] = f"{copy_gbs:.0f}"
    print(f"{env['device']}: copy bandwidth {copy_gbs:.0f} GB/s", flush=True)
    sizes = [4 << 10, 1 << 20, 64 << 20] if args.quick else [(4 << 10) * 4**k for k in range(9)]  # 4 Ki .. 256 Mi
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else [n for n in sizes if n <= args.max_size]
    bytes_per_elem_moved = {"forward": 2, "backward": 3, "forward+backward": 5}
    rows = []
    fns = impls()
    if args.impls:
        fns = {name: fns[name] for name in args.impls.split(",")}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for n in sizes:
            for direction, per_elem in bytes_per_elem_moved.items():
                for name, fn in fns.items():
                    ms = measure(name, fn, direction, n, dtype)
                    if ms is None:
                        continue
                    moved = per_elem * n * (torch.finfo(dtype).bits // 8)
                    gbs = moved / ms / 1e6
                    rows.append(
                        {
                            "dtype": str(dtype).removeprefix("torch."),
                            "n": n,
                            "direction": direction,
                            "impl": name,
                            "ms": f"{ms:.5f}",
                            "GBps": f"{gbs:.1f}",
                            "pct_of_copy": f"{100 * gbs / copy_gbs:.1f}",
                        }
                    )
                torch.cuda.empty_cache()
            print(f"{dtype} n={n} done", flush=True)
    md = headline(rows)
    write_table(args.out_name, rows, env, md)
    print(md)


def headline(rows: list[dict]) -> str:
    """Ratios the issue's targets are stated in: torch_mish time over F.mish's and over ReLU's."""
    index = {(r["dtype"], r["n"], r["direction"], r["impl"]): float(r["ms"]) for r in rows}
    pct = {(r["dtype"], r["n"], r["direction"], r["impl"]): r["pct_of_copy"] for r in rows}
    lines = [
        "| dtype | elements | direction | torch_mish ms | % of copy BW | / F.mish | / ReLU | / compile(F.mish) "
        "| / composed | torch_mish.mish / F.mish |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (dtype, n, direction, impl), ms in index.items():
        if impl != "torch_mish":
            continue
        ratios = []
        for other in ("F.mish", "relu", "torch.compile(F.mish)", "composed"):
            o = index.get((dtype, n, direction, other))
            ratios.append(f"{ms / o:.2f}" if o else "-")
        api, f_mish = index.get((dtype, n, direction, "torch_mish.mish")), index.get((dtype, n, direction, "F.mish"))
        ratios.append(f"{api / f_mish:.2f}" if api and f_mish else "-")
        lines.append(
            f"| {dtype} | {n} | {direction} | {ms:.4f} | {pct[(dtype, n, direction, impl)]} | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
