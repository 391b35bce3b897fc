"""Fixtures shared by every test module (helpers live in helpers.py)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish for every test

HAS_TORCH_TRT = importlib.util.find_spec("torch_tensorrt") is not None
# The YOLOv4-CSP workload several tests share with the benchmarks: benchmarks/yolov4_csp.py (appended,
# so that no benchmark module shadows a test helper).
sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))


@pytest.fixture
def gen() -> torch.Generator:
    """A generator with a fresh seed each run; the seed is in the test's report on failure."""
    seed = int.from_bytes(os.urandom(4), "little")
    g = torch.Generator().manual_seed(seed)
    print(f"random seed: {seed}")
    return g


@pytest.fixture(scope="session")
def trt() -> ModuleType:
    """tensorrt (or tensorrt_rtx, which torch_tensorrt aliases to it) with torch_mish's converters
    registered; skips when torch-tensorrt is not installed."""
    if not HAS_TORCH_TRT:
        pytest.skip("torch-tensorrt is not installed (pip install torch-tensorrt or torch-tensorrt-rtx)")
    importlib.import_module("torch_mish.tensorrt")  # registers the converters, loads the plugin library
    return importlib.import_module("tensorrt")
