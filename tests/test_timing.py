"""torch_mish._timing: the one timer and percentile that the bench command, the demo and the benchmarks use."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

from torch_mish._timing import median, percentile, time_calls


@pytest.mark.parametrize("n", [1, 2, 5, 10, 101])
def test_percentile_is_numpys_linear_interpolation(n: int, gen: torch.Generator) -> None:
    values = torch.rand(n, generator=gen, dtype=torch.float64).tolist()
    for q in (0, 10, 25, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert median(values) == pytest.approx(statistics.median(values), rel=1e-12)


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 0.9 * 1000)


@pytest.mark.parametrize(("iters", "warmup", "reps"), [(3, 0, 1), (4, 2, 3)])
def test_time_calls_counts_and_times_every_call_on_the_cpu(iters: int, warmup: int, reps: int) -> None:
    spans: list[tuple[float, float]] = []

    def fn() -> None:
        start = time.perf_counter()
        time.sleep(0.002)
        spans.append((start, time.perf_counter()))

    times = time_calls(fn, "cpu", iters=iters, warmup=warmup, reps=reps)
    assert len(spans) == warmup + iters * reps and len(times) == iters
    # milliseconds per call: the timed calls' own durations, plus the loop around them and nothing more
    measured = spans[warmup:]
    busy_ms = sum(end - start for start, end in measured) * 1e3
    elapsed_ms = (measured[-1][1] - measured[0][0]) * 1e3
    assert busy_ms <= sum(times) * reps <= elapsed_ms + 1.0, (times, busy_ms, elapsed_ms)


def test_time_calls_wraps_the_samples_in_a_progress_bar() -> None:
    seen = []

    def progress(items):  # noqa: ANN001, ANN202
        for item in items:
            seen.append(item)
            yield item

    assert len(time_calls(lambda: None, torch.device("cpu"), iters=5, progress=progress)) == 5
    assert seen == list(range(5))


def test_time_calls_with_cuda_events() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.randn(1 << 22, device="cuda")
    times = time_calls(lambda: torch.mul(x, 2), "cuda", iters=5, warmup=2, reps=4)
    assert len(times) == 5 and all(t > 0 for t in times)
    # reps calls in one sample, reported per call: near a single call's time, not four of them
    (single,) = time_calls(lambda: torch.mul(x, 2), "cuda", iters=1, warmup=2)
    assert median(times) < 2.5 * single
