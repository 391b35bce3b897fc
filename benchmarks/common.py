"""Timing and reporting shared by the benchmarks (run on a GPU; see benchmarks/README.md)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict[str, str]:
    props = torch.cuda.get_device_properties(0)
    import torch_mish

    return {
        "device": torch.cuda.get_device_name(0),
        "sms": str(props.multi_processor_count),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "torch_mish": torch_mish.__version__,
        "build": json.dumps({k: v for k, v in torch_mish.build_info().items() if k in ("arch_list", "nvcc")}),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "command": shlex.join(["python", *sys.argv]),
    }


def commit() -> str:
    """The checkout's commit (with -dirty for uncommitted changes), so a result names what it measured.
    A copied checkout can carry older git metadata than its files: TORCH_MISH_BENCH_COMMIT overrides."""
    git = subprocess.run(
        ["git", "-C", str(RESULTS.parent), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return os.environ.get("TORCH_MISH_BENCH_COMMIT") or git.stdout.strip() or "unknown"


def time_cuda(fn: Callable[[int], object], trials: int = 21, min_ms: float = 2.0, max_reps: int = 200) -> float:
    """Median per-call time in ms of fn(i) (i rotates through buffers), timed with CUDA events over
    batches of back-to-back calls after a warm-up."""
    for i in range(5):
        fn(i)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn(0)
    end.record()
    end.synchronize()
    reps = int(min(max_reps, max(1, min_ms / max(start.elapsed_time(end), 1e-3))))
    samples = []
    for _ in range(trials):
        start.record()
        for i in range(reps):
            fn(i)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / reps)
    return statistics.median(samples)


def copy_bandwidth_gbs(nbytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second): the roofline."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = time_cuda(lambda i: dst.copy_(src))
    return 2 * nbytes / ms / 1e6


def markdown_table(rows: Sequence[dict[str, object]], columns: dict[str, str]) -> str:
    """A markdown table of ``rows``: ``columns`` maps each header to its row key (a missing value: empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(key, "")) for key in columns.values()) + " |" for r in rows]
    return "\n".join(lines)


def write_table(name: str, rows: Sequence[dict[str, object]], env: dict[str, str], markdown: str) -> Path:
    stem = RESULTS / name  # a name may be a path under results/, e.g. runs/2026-12-01/NAME
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # union, in order
        writer.writeheader()
        writer.writerows(rows)
    header = "\n".join(f"- {k}: {v}" for k, v in env.items())
    stem.with_suffix(".md").write_text(f"# {name}\n\n{header}\n\n{markdown}\n")
    (RESULTS / f"{name}.env.json").write_text(json.dumps(env, indent=1))
    return stem
