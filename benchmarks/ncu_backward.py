"""Backward kernels side by side for Nsight Compute: torch_mish's and ATen's (F.mish's) on the same
float32 inputs, once at a size that stays in L2 (as in training, where the incoming gradient was
just written) and once at a size that streams from DRAM.

    ncu --section SpeedOfLight --metrics smsp__inst_executed.sum --kernel-name-base demangled -k regex:mish \
        python benchmarks/ncu_backward.py
"""

from __future__ import annotations

import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish


def main() -> None:
    for n in (2 << 20, 64 << 20):  # 24 MB of traffic (fits the 50 MB L2), 768 MB
        x = torch.randn(n, device="cuda")
        g = torch.randn(n, device="cuda")
        for _ in range(2):  # the second call of each runs with warm L2 for the small size
            torch.ops.mish._mish_backward(g, x)
            torch.ops.aten.mish_backward(g, x)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
