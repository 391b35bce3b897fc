"""torch_mish's environment switches, read once at import."""

from __future__ import annotations

import os
import warnings


def env_flag(name: str) -> bool | None:
    """A 0/1 switch: True for 1, False for 0, None where unset. Another value warns and counts as unset,
    so a typo (``=true``, ``=off``) is seen instead of silently meaning something."""
    value = os.environ.get(name, "").strip()
    if value in ("", "0", "1"):
        return None if value == "" else value == "1"
    warnings.warn(f"{name}={value!r} is not 0 or 1: ignored", RuntimeWarning, stacklevel=2)
    return None
