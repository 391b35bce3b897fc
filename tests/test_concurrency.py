"""Ops issued from several host threads, each on its own CUDA stream, give exactly the results of a
sequential run (the kernels are deterministic elementwise maps: bitwise equality is the contract).
CUDA-graph capture and replay: tests/test_compile_export.py."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import requires_cuda

import torch_mish

THREADS = 6
ITERATIONS = 40


def _work(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.detach().requires_grad_()
    y = torch_mish.mish(xr)
    (dx,) = torch.autograd.grad(y, xr, g)
    return y.detach(), dx


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_threads_on_separate_streams_match_sequential(dtype: torch.dtype, gen: torch.Generator) -> None:
    # Sizes differ per thread (odd sizes take the scalar tail; one view is misaligned) so that
    # kernels of different shapes overlap on the device.
    sizes = [(1 << 20) + 7 * t for t in range(THREADS)]
    xs = [(torch.randn(n + 1, generator=gen) * 4).to("cuda", dtype)[t % 2 :][:n] for t, n in enumerate(sizes)]
    gs = [torch.randn(n, generator=gen).to("cuda", dtype) for n in sizes]
    expected = [_work(x, g) for x, g in zip(xs, gs, strict=True)]
    torch.cuda.synchronize()

    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS, timeout=60)

    def run(t: int) -> None:
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.default_stream())  # inputs were written on the default stream
            start.wait()
            with torch.cuda.stream(stream):
                for _ in range(ITERATIONS):
                    results[t].append(_work(xs[t], gs[t]))
            stream.synchronize()
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
            start.abort()  # release the others if this thread failed before the barrier

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a worker thread hung"
    assert not errors, errors
    for t in range(THREADS):
        assert len(results[t]) == ITERATIONS
        for y, dx in results[t]:
            assert torch.equal(y, expected[t][0]) and torch.equal(dx, expected[t][1]), f"thread {t} differs"


@requires_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_second_device_while_current_is_first(dtype: torch.dtype, gen: torch.Generator) -> None:
    """The ops put their kernels on the tensor's device (device guard), not the current one."""
    from helpers import assert_mish_close, mish_grad_reference, mish_reference, random_inputs

    x = random_inputs(100_003, gen).to(dtype)
    g = torch.randn(x.shape, generator=gen).to(dtype)
    with torch.cuda.device(0):
        y, dx = _work(x.to("cuda:1"), g.to("cuda:1"))
        torch.cuda.synchronize(1)
    assert y.device == dx.device == torch.device("cuda:1")
    assert_mish_close(y, mish_reference(x), "cuda:1 forward")
    assert_mish_close(dx, mish_grad_reference(g, x), "cuda:1 backward", gradient=True)
