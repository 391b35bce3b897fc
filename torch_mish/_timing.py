"""How torch_mish times calls, for the ``torch-mish bench`` command, the demo and the benchmarks: one
timer and one percentile definition, so their numbers mean the same thing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch


def time_calls(
    fn: Callable[[], Any],
    device: str | torch.device,
    *,
    iters: int,
    warmup: int = 0,
    reps: int = 1,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[float]:
    """Milliseconds per call: ``iters`` samples after ``warmup`` untimed calls, each sample ``reps``
    calls back to back divided by ``reps``.

    On a CUDA device, a pair of CUDA events around each sample, all recorded without waiting and read
    after one synchronize, so the timer adds no host gap between calls; elsewhere time.perf_counter.
    ``progress`` wraps the sample loop (a tqdm bar, say)."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    samples = progress(range(iters)) if progress is not None else range(iters)
    if not cuda:
        times = []
        for _ in samples:
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - start) * 1e3 / reps)
        return times
    events = []
    for _ in samples:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / reps for start, end in events]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 to 100), interpolated linearly between the two nearest ranks (numpy's
    default); ``percentile(values, 50)`` is the median."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q={q}: expected a percentile between 0 and 100")
    ordered = sorted(values)
    position = q / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
