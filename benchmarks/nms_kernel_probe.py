"""Where darknet_nms's time goes, kernel by kernel, per NMS kind (a diagnostic, not a results table).

    python benchmarks/nms_kernel_probe.py [--models yolov4-csp,yolov4] [--inputs random] [--batch 1]
        [--conf 0.25] [--calls 50]

For each model and kind: the op called --calls times under torch.profiler after a warm-up, and the
mean GPU time of each of its kernels (scores, class, merge). Prints one line per (model, kind,
kernel); the inputs are bench_nms.py's (same seeds), so the lines explain its op columns.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_nms import BETA, IOU, KINDS, MODELS, make_model, op_rows  # noqa: E402 - found through the path above

from torch_mish.darknet import darknet_nms  # noqa: E402


def kernel_means_us(call: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            call()
        torch.cuda.synchronize()
    total: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            # "mish::nms::(anonymous namespace)::class_kernel(long, ...)" -> "class_kernel"
            name = event.name.replace("(anonymous namespace)::", "").split("(")[0].split("<")[0].split("::")[-1]
            total[name] += event.device_time
    return {name: us / calls for name, us in sorted(total.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="yolov4-csp,yolov4")
    p.add_argument("--inputs", default="random")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--calls", type=int, default=50)
    args = p.parse_args()
    for name in args.models.split(","):
        model = make_model(name, args.inputs, "cuda")
        size = MODELS[name][1]
        rows = op_rows(model, size, args.batch, "cuda")
        for kind in KINDS:

            def call(kind: str = kind, rows: torch.Tensor = rows, net: float = float(size)) -> object:
                return darknet_nms(rows, args.conf, IOU, args.max_det, kind, BETA, net, net)

            means = kernel_means_us(call, args.calls)
            label = f"{name} {args.inputs} b{args.batch} conf {args.conf} {kind:9s}"
            for kernel, us in (means | {"all": sum(means.values())}).items():
                print(f"{label} {kernel:16s} {us:9.1f} us")


if __name__ == "__main__":
    main()
