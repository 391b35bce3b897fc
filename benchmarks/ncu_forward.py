"""Forward kernels side by side for Nsight Compute: torch_mish's Mish and ATen's ReLU on the same
64 Mi-element inputs (512 MiB of traffic in float32, streamed from DRAM), in float32, bfloat16 and
float16: where Mish's forward is slower than ReLU's, the counters say whether it issues more
instructions or moves more bytes.

    ncu --section SpeedOfLight \\
        --metrics smsp__inst_executed.sum,dram__bytes.sum,smsp__issue_active.avg.pct_of_peak_sustained_elapsed \\
        --kernel-name-base demangled -k regex:"mish|clamp|relu|threshold" python benchmarks/ncu_forward.py
"""

from __future__ import annotations

import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish


def main() -> None:
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(64 << 20, device="cuda", dtype=dtype)
        for _ in range(2):
            torch.ops.mish.mish(x)
            torch.relu(x)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
