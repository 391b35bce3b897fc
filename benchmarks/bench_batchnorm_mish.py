"""The backward of BatchNorm -> Mish at YOLO activation sizes: what BatchNormMish's recompute costs.

    python benchmarks/bench_batchnorm_mish.py

Writes benchmarks/results/batchnorm_mish.{csv,md,env.json}. For each shape and dtype (channels_last,
as the training benchmark runs), the time of:
  - _mish_backward(grad, y): the unfused model's Mish backward, reading the stored BatchNorm output;
  - _mish_backward_affine(grad, x, stats): BatchNormMish's, recomputing y inside the kernel;
  - batch_norm_elemt + _mish_backward: the same recompute as a separate pass (the first version).
Each moves 3 activations (grad, x or y in; grad out), so % of copy bandwidth compares them directly.
Same method as bench_kernels.py: CUDA events, median of 21 batches, buffers rotated past L2.
"""

from __future__ import annotations

import torch
from common import copy_bandwidth_gbs, environment, time_cuda, write_table

import torch_mish  # noqa: F401 - registers torch.ops.mish

SHAPES = [(16, 64, 256, 256), (16, 128, 128, 128), (16, 512, 32, 32)]  # YOLOv4-CSP at 512², batch 16
BUFFERS = 3


def measure(dtype: torch.dtype, shape: tuple[int, ...], copy_gbs: float) -> list[dict[str, str]]:
    def activation() -> torch.Tensor:
        return torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)

    xs, ys, gs = ([activation() for _ in range(BUFFERS)] for _ in range(3))
    mean, invstd, weight, bias = (torch.rand(shape[1], device="cuda") + 0.5 for _ in range(4))
    cases = {
        "_mish_backward (stored y)": lambda i: torch.ops.mish._mish_backward(gs[i % BUFFERS], ys[i % BUFFERS]),
        "_mish_backward_affine (recompute in kernel)": lambda i: torch.ops.mish._mish_backward_affine(
            gs[i % BUFFERS], xs[i % BUFFERS], mean, invstd, weight, bias
        ),
        "batch_norm_elemt + _mish_backward": lambda i: torch.ops.mish._mish_backward(
            gs[i % BUFFERS], torch.batch_norm_elemt(xs[i % BUFFERS], weight, bias, mean, invstd, 1e-5)
        ),
    }
    moved = 3 * xs[0].numel() * xs[0].element_size()
    rows = []
    for name, fn in cases.items():
        ms = time_cuda(fn)
        rows.append(
            {
                "dtype": str(dtype).removeprefix("torch."),
                "shape": "x".join(map(str, shape)),
                "impl": name,
                "ms": f"{ms:.4f}",
                "pct_of_copy": f"{100 * moved / ms / 1e6 / copy_gbs:.1f}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    env = environment()
    copy_gbs = copy_bandwidth_gbs()
    env["copy_bandwidth_GBps"] = f"{copy_gbs:.0f}"
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            rows += measure(dtype, shape, copy_gbs)
            torch.cuda.empty_cache()
    lines = ["| dtype | shape | impl | ms | % of copy BW (3 activations moved) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['dtype']} | {r['shape']} | {r['impl']} | {r['ms']} | {r['pct_of_copy']} |" for r in rows]
    md = "\n".join(lines)
    write_table("batchnorm_mish", rows, env, md)
    print(md)


if __name__ == "__main__":
    main()
