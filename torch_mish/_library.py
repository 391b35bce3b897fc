"""Loads the compiled operator library, with an error that says what went wrong."""

from __future__ import annotations

import importlib

import torch


def build_info() -> dict[str, object]:
    try:
        info = importlib.import_module("torch_mish._build_info")
    except ImportError:
        return {}
    return {k: v for k, v in vars(info).items() if not k.startswith("_")}


def _load() -> None:
    try:
        importlib.import_module("torch_mish._C")
    except ImportError as exc:
        info = build_info()
        built_for = (
            f"built for torch {info.get('torch_version')} (CUDA {info.get('torch_cuda')})"
            if info
            else "no build information found: the extension was probably never compiled"
        )
        raise ImportError(
            f"torch_mish could not load its compiled operators ({exc}). This installation was {built_for}; "
            f"the running torch is {torch.__version__} (CUDA {torch.version.cuda}). Rebuild against the "
            "running torch: pip install --no-build-isolation -e ."
        ) from exc


def has_cuda_kernels() -> bool:
    # What the loaded library was compiled with: setup.py records it beside the library it built.
    return bool(build_info().get("cuda_kernels"))


_load()
