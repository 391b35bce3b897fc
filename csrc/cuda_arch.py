"""One CUDA architecture list for every CUDA source of the build (the torch op and the TensorRT plugin).

setup.py resolves the list once with ``resolve_arch_list``, exports it as TORCH_CUDA_ARCH_LIST so that
torch's extension builder compiles the op for exactly it, hands the same string to the plugin build
(``gencode_flags``), and records it in ``torch_mish.build_info()["arch_list"]``. Plain Python: no torch
import here (setup.py passes in what torch reports about the visible GPUs).
"""

from __future__ import annotations

import re

# Without TORCH_CUDA_ARCH_LIST and without a visible GPU: the data-centre and RTX GPUs of the last
# generations, plus PTX for the newest so that later GPUs JIT-compile it.
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0;10.0;12.0+PTX"

_ARCH = re.compile(r"^(\d+)\.(\d+)(a?)(\+PTX)?$")


def _canonical(entries: list[str]) -> str:
    bad = [e for e in entries if not _ARCH.match(e)]
    if bad:
        raise ValueError(
            f"TORCH_CUDA_ARCH_LIST: cannot read {bad}; use compute capabilities such as '8.6' or '9.0+PTX' "
            "(';' or space separated; named architectures like 'Ampere' are not accepted here)"
        )
    seen: list[str] = []
    for entry in entries:
        if entry not in seen:
            seen.append(entry)
    return ";".join(seen)


def resolve_arch_list(
    env_value: str | None,
    visible_capabilities: list[tuple[int, int]],
    max_supported: tuple[int, int] | None = None,
) -> str:
    """The architectures to compile for, as an explicit TORCH_CUDA_ARCH_LIST string.

    env_value: TORCH_CUDA_ARCH_LIST as set by the user (None or "" when unset). "native" or unset
    means the visible GPUs, the way torch's extension builder chooses them: each GPU's capability
    (clamped to ``max_supported``, the newest architecture this torch was built for), sorted, with PTX
    for the newest. Without a visible GPU: DEFAULT_ARCH_LIST.
    """
    value = (env_value or "").strip()
    if value and value != "native":
        return _canonical([e for e in re.split(r"[;\s]+", value) if e])
    if not visible_capabilities:
        return DEFAULT_ARCH_LIST
    caps = sorted({min(cap, max_supported) if max_supported else cap for cap in visible_capabilities})
    entries = [f"{major}.{minor}" for major, minor in caps]
    entries[-1] += "+PTX"
    return ";".join(entries)


def gencode_flags(arch_list: str) -> list[str]:
    """nvcc -gencode flags for a resolved list: SASS for each architecture, plus PTX where '+PTX'."""
    flags = []
    for entry in _canonical([e for e in re.split(r"[;\s]+", arch_list) if e]).split(";"):
        major, minor, suffix, ptx = _ARCH.match(entry).groups()
        num = f"{major}{minor}{suffix}"
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags
