"""Host time per call on a tiny CUDA tensor (the GPU work is negligible, so this is what a launch-bound
call costs on the CPU): torch_mish's entry points against F.mish and ReLU.

    python benchmarks/host_overhead.py
"""

from __future__ import annotations

import timeit

import torch
import torch.nn.functional as F

import torch_mish


def main() -> None:
    x = torch.randn(16, device="cuda")
    xg = torch.randn(16, device="cuda", requires_grad=True)
    cases = {
        "relu": lambda: torch.relu(x),
        "F.mish": lambda: F.mish(x),
        "torch.ops.mish.mish.default": lambda: torch.ops.mish.mish.default(x),
        "torch_mish.mish": lambda: torch_mish.mish(x),
        "torch.empty_like": lambda: torch.empty_like(x),
        "F.mish (input requires grad)": lambda: F.mish(xg),
        "torch_mish.mish (input requires grad)": lambda: torch_mish.mish(xg),
    }
    for name, fn in cases.items():
        for _ in range(2000):
            fn()
        torch.cuda.synchronize()
        best = min(timeit.repeat(fn, number=20000, repeat=7)) / 20000
        torch.cuda.synchronize()
        print(f"{name}: {best * 1e6:.2f} us per call", flush=True)


if __name__ == "__main__":
    main()
