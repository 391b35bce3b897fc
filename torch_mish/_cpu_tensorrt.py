"""Let torch_tensorrt import on a machine without an NVIDIA driver, to build TensorRT networks and
engines on the CPU (TensorRT-RTX's CPU-only mode). Opt-in: see allow_tensorrt_without_gpu."""

from __future__ import annotations

import torch


def allow_tensorrt_without_gpu() -> bool:
    """Make ``import torch_tensorrt`` work on a machine with no GPU; returns True if it patched.

    torch_tensorrt asks for the current device and its compute capability at import time, which
    raises "Found no NVIDIA driver" on a CPU-only machine. When no GPU is visible this replaces
    ``torch.cuda.get_device_capability`` (answering (0, 0)) and ``torch.cuda.current_device``
    (answering 0) for the rest of the process. Call it before importing torch_tensorrt or
    torch_mish.tensorrt. With a GPU it does nothing. Nothing can *run* an engine without a GPU: this
    is for converting models, inspecting networks and building engines with TensorRT-RTX.
    """
    if torch.cuda.is_available():
        return False
    torch.cuda.get_device_capability = lambda device=None: (0, 0)  # type: ignore[assignment]
    torch.cuda.current_device = lambda: 0  # type: ignore[assignment]
    return True
