"""Fixtures shared by every test module (helpers live in helpers.py)."""

from __future__ import annotations

import os

import pytest
import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish


@pytest.fixture
def gen() -> torch.Generator:
    """A generator with a fresh seed each run; the seed is in the test's report on failure."""
    seed = int.from_bytes(os.urandom(4), "little")
    g = torch.Generator().manual_seed(seed)
    print(f"random seed: {seed}")
    return g
