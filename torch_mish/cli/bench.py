"""``torch-mish bench``: latency and throughput.

Latency (median, p90, p99) and throughput of PyTorch eager, torch.compile and, where a TensorRT runtime can
run engines, TensorRT. On a GPU: CUDA events after warm-up; on the CPU: time.perf_counter (few iterations by
default).

example: yolov4-csp.cfg --image-size 512 --batch 8 --dtype float16 --iters 200
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from torch_mish import _timing
from torch_mish.cli import sources
from torch_mish.cli.console import Console, first_line, import_tensorrt
from torch_mish.cli.flags import add_command, add_lowering_arg, add_model_args, int_at_least
from torch_mish.cli.networks import resolve_lowering
from torch_mish.cli.options import DTYPES, ENGINE_SUFFIXES, ModelOptions, UsageError

BACKENDS = ("eager", "compile", "tensorrt")


def backend_list(text: str) -> list[str]:
    """An argparse type: comma-separated names from BACKENDS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in BACKENDS for name in names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of {','.join(BACKENDS)}")
    return names


@dataclass(frozen=True)
class BenchOptions:
    model: ModelOptions
    device: str
    iters: int | None
    warmup: int | None
    backends: list[str]
    lowering: str | None


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run)
    add_model_args(p, "N")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--iters", type=int_at_least(1), help="measured iterations (default 100 on a GPU, 5 on the CPU)")
    p.add_argument("--warmup", type=int_at_least(0), help="warm-up iterations (default 10 on a GPU, 1 on the CPU)")
    p.add_argument(
        "--backends",
        type=backend_list,
        default=",".join(BACKENDS),
        help="comma-separated: eager (always), compile, tensorrt",
    )
    add_lowering_arg(p, "Mish lowering for the TensorRT row (default: $TORCH_MISH_TRT_LOWERING, else native)")
    return p


def run(options: BenchOptions, console: Console) -> dict[str, Any]:
    import torch

    src = options.model.source
    if src.endswith(ENGINE_SUFFIXES):
        sources.check_exists(src)
        mt, _ = import_tensorrt(console)
        reason = mt.engine_runtime_unavailable_reason()
        raise RuntimeError(
            f"cannot run the engine {src} here: {reason or 'engine files are benchmarked by trtexec'}; "
            "bench its source (.cfg/.pt2/module:factory) for the PyTorch and TensorRT rows"
        )
    if src.endswith(".onnx"):
        raise UsageError(f"{src}: bench takes a model source (.cfg, .pt2, module:factory)")
    requested = options.model.batch
    if requested and requested[0] != requested[2]:
        raise UsageError("bench runs one batch size: --batch N")
    device = sources.resolve_device(options.device)
    iters = options.iters or (100 if device == "cuda" else 5)
    warmup = options.warmup if options.warmup is not None else (10 if device == "cuda" else 1)
    source = sources.load(options.model, console)
    batch = sources.resolve_batch(source, requested, console)[1]  # a program's range: bench its example batch
    dtype = sources.torch_dtype(options.model.dtype)
    model = source.model.to(device=device, dtype=dtype)
    x = sources.example_input(source, (batch,) * 3, dtype).to(device)
    timer = "CUDA events" if device == "cuda" else "time.perf_counter (CPU)"
    console.info(
        f"{source.name} on {device}, batch {batch}, {options.model.dtype}, {iters} iterations after {warmup} "
        f"warm-up; timed with {timer}"
    )

    def row(backend: str, fn: Any, desc: str, warm: int = warmup) -> dict[str, Any]:
        with torch.inference_mode():
            times = _timing.time_calls(
                fn, device, iters=iters, warmup=warm, progress=lambda items: console.progress(items, desc)
            )
        median = _timing.median(times)
        return {
            "backend": backend,
            "median_ms": median,
            "p90_ms": _timing.percentile(times, 90),
            "p99_ms": _timing.percentile(times, 99),
            "throughput_per_s": batch * 1e3 / median,
        }

    rows = [row("PyTorch eager", lambda: model(x), "eager")]
    skipped: list[dict[str, str]] = []
    if "compile" in options.backends:
        compiled = torch.compile(model)
        rows.append(row("torch.compile", lambda: compiled(x), "torch.compile", max(warmup, 1)))  # 1st call compiles
    if "tensorrt" in options.backends:
        try:
            mt, trt = import_tensorrt(console)
            reason = mt.engine_runtime_unavailable_reason()
        except (ImportError, RuntimeError) as exc:
            reason = first_line(exc)
        if reason is None:
            lowering = resolve_lowering(options.lowering)
            trt_model = mt.compile(model, [x], lowering=lowering)
            rows.append(row(f"TensorRT ({lowering}, {trt.__version__})", lambda: trt_model(x), "TensorRT"))
        else:
            skipped.append({"backend": "TensorRT", "reason": reason})
    console.info(f"{'backend':<28}{'median ms':>11}{'p90 ms':>10}{'p99 ms':>10}{'img/s':>10}")
    for r in rows:
        console.info(
            f"{r['backend']:<28}{r['median_ms']:>11.2f}{r['p90_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['throughput_per_s']:>10.1f}"
        )
    for s in skipped:
        console.info(f"{s['backend']}: not run: {s['reason']}")
    return {
        "source": source.name,
        "device": device,
        "timer": timer,
        "batch": batch,
        "dtype": options.model.dtype,
        "iters": iters,
        "warmup": warmup,
        "rows": rows,
        "skipped": skipped,
    }
