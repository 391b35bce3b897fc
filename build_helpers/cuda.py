"""The CUDA toolkit to compile with, and one architecture list for every CUDA source of the build (the
torch op and the TensorRT plugin).

setup.py finds the toolkit (``find_cuda_home``), resolves the list once (``resolve_arch_list``), turns
it into nvcc flags once (``gencode_flags``) for the op's and the plugin's CUDA sources alike, and
records it in ``torch_mish.build_info()["arch_list"]``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

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


def is_cuda_toolkit(home: Path) -> bool:
    """A folder the op can be compiled against: nvcc and the CUDA runtime headers."""
    return (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists()


def toolkit_of(nvcc: Path) -> Path | None:
    """The CUDA toolkit an nvcc on PATH belongs to. The parent of its folder is not it when nvcc is a
    symlink (resolved here) or a wrapper script that runs the real one (nvcc names its own folder,
    _HERE_, in a dry run): torch's guess, bin/.. of the PATH entry, is /usr/local for /usr/local/bin/nvcc."""
    candidates = [nvcc.parent.parent, nvcc.resolve().parent.parent]
    dry = subprocess.run(
        [str(nvcc), "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
        capture_output=True,
        text=True,
        check=False,
    )
    here = re.search(r"^#\$ _HERE_=(.+)$", dry.stdout + dry.stderr, re.MULTILINE)
    if here:
        candidates.append(Path(here.group(1).strip()).resolve().parent)
    return next((home for home in candidates if is_cuda_toolkit(home)), None)


def find_cuda_home(environ: Mapping[str, str] = os.environ) -> tuple[str | None, str | None]:
    """Where the CUDA toolkit is: CUDA_HOME (or CUDA_PATH) when set, else the toolkit of the nvcc on PATH,
    else /usr/local/cuda. Returns (toolkit, None); (None, why) when the toolkit pointed at is unusable;
    (None, None) when there is no nvcc at all."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            home = Path(environ[var])
            if is_cuda_toolkit(home):
                return str(home), None
            return None, f"{var}={home} is not a CUDA toolkit (it needs bin/nvcc and include/cuda_runtime.h)"
    nvcc = shutil.which("nvcc", path=environ.get("PATH", os.defpath))
    if nvcc:
        home = toolkit_of(Path(nvcc))
        if home is None:
            return None, f"nvcc at {nvcc} belongs to no CUDA toolkit with include/cuda_runtime.h"
        return str(home), None
    if is_cuda_toolkit(Path("/usr/local/cuda")):
        return "/usr/local/cuda", None
    return None, None


def nvcc_version(cuda_home: str) -> str | None:
    """The toolkit's CUDA version ("13.0"), from its nvcc."""
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    if not nvcc.exists():
        return None
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None
