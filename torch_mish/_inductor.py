"""Inductor lowering for ``torch.ops.mish.mish``: a decomposition into pointwise aten ops.

Without it Inductor treats ``torch.ops.mish.mish`` as an opaque extern kernel: under AOTInductor (and
``torch.compile`` with ``TORCH_MISH_COMPILE_AS_ATEN=0``) every Mish is a call to torch_mish's CUDA
kernel, with its own launch and a round trip of the activation through memory. With the decomposition
registered, Inductor sees ``x * N / (N + 2)`` with ``N = e^x (e^x + 2)`` (computed in float32 for
float16/bfloat16 and rounded once), the same one-exp form the CUDA kernel uses, and fuses it into the
neighbouring pointwise code (a folded convolution's epilogue, a residual add, a concatenation).

Numerics are then Inductor's code for that formula, not the CUDA kernel's: within a few float32 ulps,
``mish(-inf) = 0``, ``mish(+inf) = +inf`` and NaN stays NaN, as the kernel does.

    import torch_mish._inductor as mi
    mi.register()            # Inductor decomposes torch.ops.mish.mish from now on
    with mi.lowered(False):  # ... except inside this block (the extern kernel)
        ...

The registration lives in Inductor's own decomposition table, so it applies to every graph compiled
after it in this process (``torch._inductor.aoti_compile_and_package`` included). It does not change
eager execution, ``torch.export`` graphs (they keep ``torch.ops.mish.mish``), ONNX or TensorRT.

``import torch_mish`` registers it (``register_by_default``): on an H200, a YOLOv4-CSP AOTInductor
package ran 8.7 ms per batch of 16 (fp16, 640x640) with the decomposition and 11.7 ms with the extern
kernel (benchmarks/results/inference_aoti.md). ``TORCH_MISH_INDUCTOR_DECOMPOSE=0`` keeps the kernel.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch

from torch_mish import _compat

_OP = torch.ops.mish.mish.default
_HALF = (torch.float16, torch.bfloat16)
# Above this, N / (N + 2) rounds to 1 in float32 and float64 alike (2e^-2x < eps), so clamping the
# exponent changes nothing and keeps N finite (inf / inf would be NaN).
_EXP_CLAMP = 20.0


def mish_decomposition(x: torch.Tensor) -> torch.Tensor:
    """``torch.ops.mish.mish`` in pointwise aten ops: one exp and one division per element."""
    xf = x.float() if x.dtype in _HALF else x
    n = torch.exp(torch.clamp(xf, max=_EXP_CLAMP))
    big_n = n * (n + 2.0)
    y = xf * (big_n / (big_n + 2.0))
    # e^x underflows to 0 below about -104 (float32): mish is then -0.0 for finite x; for x = -inf
    # the product would be -inf * 0 = NaN, where the kernel returns the limit, 0.
    y = torch.where(n == 0.0, torch.zeros_like(y), y)
    return y.to(x.dtype)


def _table() -> dict[object, object]:
    from torch._inductor import decomposition  # noqa: PLC0415 - Inductor is imported only when asked for

    return decomposition.decompositions


def _clear_cached_tables() -> None:
    from torch._inductor import decomposition  # noqa: PLC0415

    cached = getattr(decomposition, "fast_random_decomps", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()  # select_decomp_table() returns a cached copy of the table


def is_registered() -> bool:
    """True when Inductor decomposes ``torch.ops.mish.mish`` in this process."""
    return _table().get(_OP) is mish_decomposition


def register() -> None:
    """Make Inductor decompose ``torch.ops.mish.mish`` (and so fuse it) in graphs compiled from now on."""
    _table()[_OP] = mish_decomposition
    _clear_cached_tables()


def unregister() -> None:
    """Back to the extern kernel: Inductor calls torch_mish's kernel for every ``torch.ops.mish.mish``."""
    if _table().get(_OP) is mish_decomposition:
        del _table()[_OP]
        _clear_cached_tables()


@contextlib.contextmanager
def lowered(enabled: bool = True) -> Iterator[None]:
    """Within the block, Inductor decomposes ``torch.ops.mish.mish`` (enabled) or keeps the kernel."""
    before = is_registered()
    (register if enabled else unregister)()
    try:
        yield
    finally:
        (register if before else unregister)()


_DECOMPOSITION_MODULE = "torch._inductor.decomposition"


def register_by_default() -> None:
    """Register the decomposition unless ``TORCH_MISH_INDUCTOR_DECOMPOSE=0``: now if Inductor's
    decomposition table is loaded, else as soon as it loads (importing Inductor takes about a second;
    a process that never compiles does not pay for it)."""
    if os.environ.get("TORCH_MISH_INDUCTOR_DECOMPOSE", "1") == "0":
        return
    if _DECOMPOSITION_MODULE in sys.modules:
        register()
    else:
        _compat.after_import(_DECOMPOSITION_MODULE, lambda _module: register())
