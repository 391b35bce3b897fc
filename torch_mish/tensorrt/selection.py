"""Which TensorRT lowering the Mish converter emits."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Literal

Lowering = Literal["native", "plugin"]
LOWERINGS: tuple[str, ...] = ("native", "plugin")
DEFAULT = "native"  # TensorRT can fuse its layers; a plugin is opaque to its fusion passes
ENV_VAR = "TORCH_MISH_TRT_LOWERING"

_state = threading.local()


def _validate(name: str, source: str | None = None) -> str:
    where = f" in {source}" if source else ""
    value = name.strip().lower() if isinstance(name, str) else name
    if value == "auto":
        raise ValueError(
            f"Mish lowering 'auto'{where} is gone: it always emitted 'native', which is the default. "
            f"Use 'native' (or leave the lowering unset), or 'plugin'."
        )
    if value not in LOWERINGS:
        raise ValueError(f"unknown Mish lowering {name!r}{where}: expected one of {', '.join(LOWERINGS)}")
    return value


def _default() -> str:
    return _validate(os.environ.get(ENV_VAR, DEFAULT), f"the environment variable {ENV_VAR}")


def get_lowering() -> str:
    """The lowering in effect in this thread ('native' or 'plugin')."""
    return getattr(_state, "value", None) or _default()


def set_lowering(name: Lowering) -> None:
    """Set the lowering for later conversions in this thread. The default comes from the
    environment variable TORCH_MISH_TRT_LOWERING (case-insensitive), else 'native'."""
    _state.value = _validate(name)


@contextlib.contextmanager
def lowering(name: Lowering) -> Iterator[None]:
    """Use a lowering inside a ``with`` block, restoring the previous one after."""
    previous = getattr(_state, "value", None)
    _state.value = _validate(name)
    try:
        yield
    finally:
        _state.value = previous


def resolve(name: str | None = None) -> str:
    """The lowering that will be emitted: ``name`` (validated) when given, else the one in effect."""
    return _validate(name) if name else get_lowering()
