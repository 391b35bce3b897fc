"""torch-tensorrt on a machine without an NVIDIA driver: convert models, inspect TensorRT networks and
build engines on the CPU (TensorRT-RTX's CPU-only mode), for example on a CI host that cross-builds
engines. Nothing can *run* an engine without a GPU."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch


class _Patch:
    """How many contexts are open, and torch.cuda's own functions while they are."""

    lock = threading.RLock()
    depth = 0
    saved: tuple[object, object] | None = None


@contextlib.contextmanager
def allow_tensorrt_without_gpu() -> Iterator[bool]:
    """A context in which torch-tensorrt works on a machine with no GPU; yields True if it patched.

    torch-tensorrt asks for the current device and its compute capability (at import and in its
    compile and conversion paths), which raises torch's "Found no NVIDIA driver" on a CPU-only host.
    Inside the ``with`` block, when no GPU is visible, ``torch.cuda.get_device_capability`` answers
    (0, 0) and ``torch.cuda.current_device`` answers 0; both are restored on exit. With a GPU it
    changes nothing. Nesting is fine. ``import torch_mish.tensorrt`` and ``torch_mish.tensorrt.inspect``
    use it themselves; wrap your own torch-tensorrt calls in it on a GPU-less host::

        with torch_mish.allow_tensorrt_without_gpu():
            import torch_tensorrt
            torch_tensorrt.dynamo.compile(program, arg_inputs=inputs, dryrun=True)
    """
    if torch.cuda.is_available():
        yield False
        return
    with _Patch.lock:
        if _Patch.depth == 0:
            _Patch.saved = (torch.cuda.get_device_capability, torch.cuda.current_device)
            torch.cuda.get_device_capability = _no_capability  # type: ignore[assignment]
            torch.cuda.current_device = _device_zero  # type: ignore[assignment]
        _Patch.depth += 1
    try:
        yield True
    finally:
        with _Patch.lock:
            _Patch.depth -= 1
            if _Patch.depth == 0 and _Patch.saved is not None:
                torch.cuda.get_device_capability, torch.cuda.current_device = _Patch.saved  # type: ignore[assignment]
                _Patch.saved = None


def _no_capability(device: object = None) -> tuple[int, int]:
    return (0, 0)


def _device_zero() -> int:
    return 0
