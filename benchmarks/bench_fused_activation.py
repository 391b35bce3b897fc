"""The activation kernels Inductor generates for a detector's layers, one activation at a time.

    python benchmarks/bench_fused_activation.py [--dtypes fp16,bf16,fp32] [--shape 16,32,640,640]

Each activation is compiled (torch.compile, no gradient) as the epilogue of a folded convolution:
act(x + bias), x channels_last, as in YOLOv4-CSP's first layer (16 x 32 x 640 x 640). Reports the
kernel's time (CUDA events around CUDA-graph replays, median of trials), the bandwidth it reaches
against a device copy's, and the SASS instruction count of the Triton kernel Inductor generated
(cuobjdump of the largest cubin it compiled: Inductor compiles the same candidate configurations for
every activation of a shape, so the counts compare like with like, though that one need not be the
configuration its autotuner picked and this timed).
The detector tables in results/inference.md differ by the sum of such kernels; this shows why.

Writes benchmarks/results/fused_activation.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def exp_division_mish(x: torch.Tensor) -> torch.Tensor:
    """torch_mish's decomposition written with torch.exp and / (libdevice expf, checked division)."""
    from torch_mish._inductor import _EXP_CLAMP, _ZERO_BELOW

    xf = x.float()
    n = torch.exp(torch.clamp(xf, max=_EXP_CLAMP))
    big_n = n * (n + 2.0)
    return (torch.clamp(xf, min=_ZERO_BELOW) * (big_n / (big_n + 2.0))).to(x.dtype)


def activations() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    import torch_mish

    return {
        "torch_mish.Mish": torch_mish.Mish(),  # the decomposition (the default without gradients)
        "same formula, torch.exp and /": exp_division_mish,
        "nn.Mish": nn.Mish(),  # Inductor's own aten.mish code
        "composed": lambda x: x * torch.tanh(F.softplus(x)),
        "LeakyReLU(0.1)": nn.LeakyReLU(0.1),
        "SiLU": nn.SiLU(),
        "ReLU": nn.ReLU(),
    }


def sass_instructions(cache_dir: Path) -> tuple[int, str]:
    """SASS instruction count of the largest cubin Triton wrote under cache_dir, and its name."""
    cubins = sorted(cache_dir.rglob("*.cubin"), key=lambda p: p.stat().st_size)
    tool = shutil.which("cuobjdump") or str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin/cuobjdump")
    if not cubins or not Path(tool).exists():
        return 0, ""
    sass = subprocess.run([tool, "--dump-sass", str(cubins[-1])], capture_output=True, text=True).stdout
    return sum(1 for line in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", line)), cubins[-1].stem


def graph_time(fn: Callable[[], object], reps: int = 20, trials: int = 21) -> float:
    """Median ms per call of fn, replayed from a CUDA graph of `reps` calls: no host time in it, so
    compile processes sharing the host cannot stretch it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for i in range(trials + 2):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        if i >= 2:  # two warm-up replays
            samples.append(start.elapsed_time(end) / reps)
    return statistics.median(samples)


def measure(dname: str, shape: list[int], copy_gbs: float) -> list[dict[str, object]]:
    from torch._inductor.utils import run_and_get_code

    dtype = DTYPES[dname]
    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(shape[1], device="cuda", dtype=dtype).view(1, -1, 1, 1)
    moved = 2 * x.numel() * x.element_size()  # read x, write the result (the bias stays in cache)
    rows: list[dict[str, object]] = []
    for name, act in activations().items():
        torch._dynamo.reset()
        with tempfile.TemporaryDirectory() as cache:
            # fresh caches per activation: its kernel is compiled here, and its cubin lands in them
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{cache}/inductor"
            os.environ["TRITON_CACHE_DIR"] = f"{cache}/triton"
            with torch.no_grad():
                fn = torch.compile(lambda t, b, act=act: act(t + b), fullgraph=True)
                _, code = run_and_get_code(fn, x, bias)
                ms = graph_time(lambda fn=fn: fn(x, bias))
            sass, kernel = sass_instructions(Path(cache))
        source = "\n".join(code)
        rows.append(
            {
                "dtype": dname,
                "activation": name,
                "ms": round(ms, 4),
                "gb_s": round(moved / ms / 1e6, 1),
                "of_copy": round(moved / ms / 1e6 / copy_gbs, 3),
                "sass_instructions": sass,
                "extern_call": "torch.ops.mish" in source,
                "kernel": kernel,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    from common import RESULTS, copy_bandwidth_gbs, environment, write_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="fp16,bf16,fp32")
    p.add_argument("--shape", default="16,32,640,640")
    p.add_argument("--out-name", default="fused_activation")
    args = p.parse_args()
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # compile in this process: its Triton cache dir is ours

    shape = [int(v) for v in args.shape.split(",")]
    copy_gbs = copy_bandwidth_gbs()
    rows = [row for dname in args.dtypes.split(",") for row in measure(dname, shape, copy_gbs)]
    env = environment()
    env["copy_gb_s"] = f"{copy_gbs:.0f}"
    env["shape"] = args.shape
    lines = [
        "act(x + bias) compiled by Inductor (no gradient), x channels_last; time: median of CUDA-graph replays;",
        "bandwidth counts reading x and writing the result; SASS: the generated Triton kernel's instructions",
        "(whole kernel).",
        "",
        "| dtype | activation | ms | GB/s | of copy | SASS instructions | extern call |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['activation']} | {r['ms']:.4f} | {r['gb_s']:.0f} | {r['of_copy']:.2f} "
            f"| {r['sass_instructions'] or '-'} | {'yes' if r['extern_call'] else 'no'} |"
        )
    write_table(args.out_name, rows, env, "\n".join(lines))
    print(f"wrote {RESULTS / args.out_name}.md")


if __name__ == "__main__":
    main()
