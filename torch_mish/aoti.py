"""Loading AOTInductor packages that call torch.ops.mish, in Python.

A package built by ``torch._inductor.aoti_compile_and_package`` finds ``torch.ops.mish.mish`` in the
dispatcher by name, so importing torch_mish before loading is all it needs. ``load_package`` does that
and one more thing: on Linux it makes the process's libstdc++ global (``RTLD_GLOBAL``) first.

Why: where g++ links libstdc++ into the package's model library (seen on the H200 image, torch 2.11
and g++ 13.3 on Ubuntu 24.04: the library defines libstdc++'s locale classes itself and does not
need libstdc++.so.6), and the process loaded libstdc++.so.6 only for torch (a local scope), the model's
code binds to both copies. Their locale facet tables disagree and the model's ``std::regex`` (the
device-string parser run in its constructor) segfaults in ``torch._inductor.aoti_load_package``. With
the process's libstdc++ global, every reference binds to that one copy. A C++ program linked against
libstdc++.so.6 has it global already.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

import torch

import torch_mish  # noqa: F401 - registers torch.ops.mish before a package can look it up

__all__ = ["load_package"]


def _make_libstdcxx_global() -> bool:
    """Promote the already loaded libstdc++.so.6 to the global scope; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libstdc++.so.6", mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    except OSError:  # not loaded (a torch built with another C++ runtime): nothing to promote
        return False
    return True


def load_package(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
    """``torch._inductor.aoti_load_package(path, ...)`` with torch_mish's op registered and the
    process's libstdc++ global (see the module docstring). Returns the loaded callable."""
    _make_libstdcxx_global()
    return torch._inductor.aoti_load_package(str(Path(path)), *args, **kwargs)
