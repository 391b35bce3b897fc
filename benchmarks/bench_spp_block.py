"""A detector's SPP block compiled by Inductor: is the activation stored once, or evaluated again in
every max-pool window?

    python benchmarks/bench_spp_block.py [--dtypes fp16,bf16] [--shape 16,640,20,20]
        [--modes default,max-autotune] [--thresholds none,16]

The block is yolov4x-mish's (darknet cfg): a folded 1x1 convolution with bias, the activation, max-pools
of 5, 9 and 13 (stride 1) and the concatenation [pool13, pool9, pool5, activation]. Inductor keeps a
pointwise result unstored when its consumers can inline it; a max-pool then evaluates it once per window
element (25, 81, 169 times). Whether it stores the result depends on how many buffers the pointwise code
reads and on ``realize_opcount_threshold`` (ops above which a result with several consumers is stored;
30 by default; torch_mish's decomposition counts 18 ops in float16 and 21 in bfloat16 on torch 2.14, so
the second threshold is 16). Under max-autotune the bias moves into the convolution template, the
activation reads one buffer, and the detector profiles (results/profiles/runs/*/inference_max_autotune_*)
show the max-pool kernels carrying the activation. This measures the block per activation, compile mode and
threshold ("none" = Inductor's default): the time (CUDA events around CUDA-graph replays, median) and
how many places in the generated code evaluate the activation.

Writes benchmarks/results/spp_block.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fused_activation import DTYPES, graph_time  # noqa: E402 - found through the path above

# An op each Mish's generated code calls once per place it is evaluated (torch_mish's decomposition:
# one rsqrt; Inductor's aten.mish: one tanh). 1 in the block's code: stored once, then pooled.
SIGNATURE = {"torch_mish.Mish": "rsqrt", "nn.Mish": "tanh"}


class SPPBlock(nn.Module):
    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)  # conv-BN folded: a convolution with bias
        self.act = act
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (13, 9, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        return torch.cat([*(pool(y) for pool in self.pools), y], 1)


def activations() -> dict[str, Callable[[], nn.Module]]:
    import torch_mish

    return {"torch_mish.Mish": torch_mish.Mish, "nn.Mish": nn.Mish, "LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1)}


def compile_options(mode: str, threshold: int | None) -> dict[str, object]:
    """torch.compile options for a mode, without Inductor's own CUDA graphs (the timing captures one)."""
    from torch._inductor import list_mode_options

    options: dict[str, object] = dict(list_mode_options(mode)) if mode != "default" else {}
    options["triton.cudagraphs"] = False
    if threshold is not None:
        options["realize_opcount_threshold"] = threshold
    return options


def evaluations(activation: str, source: str) -> int | None:
    """How many places in the generated code evaluate the activation (None: no signature op)."""
    op = SIGNATURE.get(activation)
    return None if op is None else len(re.findall(rf"\b{op}\b", source))


def time_ms(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        return graph_time(fn)
    from torch_mish._timing import median, time_calls

    return median(time_calls(fn, device, iters=11, warmup=3))


def measure(device: str, dname: str, shape: list[int], mode: str, threshold: int | None) -> list[dict[str, object]]:
    from torch._inductor.utils import run_and_get_code

    dtype = DTYPES[dname]
    x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    rows = []
    for name, make in activations().items():
        torch.manual_seed(0)
        block = SPPBlock(shape[1], make()).to(device, dtype).to(memory_format=torch.channels_last).eval()
        torch._dynamo.reset()
        t0 = time.perf_counter()
        with torch.no_grad():
            fn = torch.compile(block, options=compile_options(mode, threshold))
            out, code = run_and_get_code(fn, x)
            compile_s = time.perf_counter() - t0
            ref = block(x).double()
            err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
            ms = time_ms(lambda fn=fn: fn(x), device)
        source = "\n".join(code)
        rows.append(
            {
                "dtype": dname,
                "mode": mode,
                "realize_opcount_threshold": "default" if threshold is None else threshold,
                "activation": name,
                "ms": round(ms, 4),
                "evaluations": evaluations(name, source),
                "kernels": len(set(re.findall(r"\b(?:triton|cpp)_\w+_\d+\b", source))),
                "compile_s": round(compile_s, 1),
                "rel_err_vs_eager": f"{err:.1e}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    from common import RESULTS, environment, write_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="fp16,bf16")
    p.add_argument("--shape", default="16,640,20,20", help="N,C,H,W of the block's input (yolov4x-mish's SPP)")
    p.add_argument("--modes", default="default,max-autotune")
    p.add_argument("--thresholds", default="none,16", help="realize_opcount_threshold values; none = Inductor's")
    p.add_argument("--out-name", default="spp_block")
    args = p.parse_args()

    shape = [int(v) for v in args.shape.split(",")]
    thresholds = [None if t == "none" else int(t) for t in args.thresholds.split(",")]
    rows = [
        row
        for dname in args.dtypes.split(",")
        for mode in args.modes.split(",")
        for threshold in thresholds
        for row in measure(args.device, dname, shape, mode, threshold)
    ]
    if args.device == "cuda":
        env = environment()
    else:
        env = {"device": "cpu", "torch": torch.__version__}
    env.update(shape=args.shape, command=" ".join(sys.argv[1:]))
    lines = [
        "SPP block (1x1 conv with bias, activation, max-pools 13/9/5, concatenation) compiled without",
        "Inductor's CUDA graphs; time: median of CUDA-graph replays (GPU) or of calls (CPU). 'evaluated':",
        "places in the generated code that compute the activation (1: stored once, then pooled; 4: in each",
        "pool and the concatenation); kernels: generated kernels.",
        "",
        "| dtype | mode | realize_opcount_threshold | activation | ms | evaluated | kernels | rel err |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        evaluated = "-" if r["evaluations"] is None else r["evaluations"]
        lines.append(
            f"| {r['dtype']} | {r['mode']} | {r['realize_opcount_threshold']} | {r['activation']} | {r['ms']:.4f} "
            f"| {evaluated} | {r['kernels']} | {r['rel_err_vs_eager']} |"
        )
    write_table(args.out_name, rows, env, "\n".join(lines))
    print(f"wrote {RESULTS / args.out_name}.md")


if __name__ == "__main__":
    main()
