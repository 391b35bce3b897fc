"""The TensorRT plugins' identities (TorchMish, DarknetNMS): creator name, version, namespace and
serialized-field format version.

Defined once, in csrc/trt/plugin_identity.h. setup.py copies the values into torch_mish/_build_info.py,
so an installed package has them whether or not a plugin library was built (torch_mish.onnx writes
them into plugin nodes on any machine); a checkout whose last build predates those entries reads the
header itself. The names resolve on first use (PEP 562), so setup.py can load this file for
``parse_header`` without importing torch_mish.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "trt" / "plugin_identity.h"

# C++ constant in the header -> key in _build_info.py -> public Python name.
_FIELDS = {
    "kPluginName": ("plugin_name", "PLUGIN_NAME"),
    "kPluginVersion": ("plugin_version", "PLUGIN_VERSION"),
    "kPluginNamespace": ("plugin_namespace", "PLUGIN_NAMESPACE"),
    "kFormatVersion": ("plugin_format_version", "FORMAT_VERSION"),
    "kNmsPluginName": ("nms_plugin_name", "NMS_PLUGIN_NAME"),
    "kNmsPluginVersion": ("nms_plugin_version", "NMS_PLUGIN_VERSION"),
    "kNmsFormatVersion": ("nms_plugin_format_version", "NMS_FORMAT_VERSION"),
}
_CONSTANT = re.compile(r"constexpr\s+[\w\s*]+?\b(k\w+)\s*=\s*(\"[^\"]*\"|-?\d+)\s*;")


def parse_header(text: str) -> dict[str, str | int]:
    """The identity constants of plugin_identity.h, keyed as in _build_info.py."""
    values: dict[str, str | int] = {}
    for name, literal in _CONSTANT.findall(text):
        if name in _FIELDS:
            values[_FIELDS[name][0]] = literal[1:-1] if literal.startswith('"') else int(literal)
    missing = [cpp for cpp, (key, _) in _FIELDS.items() if key not in values]
    if missing:
        raise ValueError(f"plugin_identity.h: no literal definition of {', '.join(missing)}")
    return values


def identity() -> dict[str, str | int]:
    """The values the installed build recorded, else those of the header in this checkout."""
    try:
        info = importlib.import_module("torch_mish._build_info")
        return {key: getattr(info, key) for key, _ in _FIELDS.values()}
    except (ImportError, AttributeError):
        pass
    if HEADER.exists():
        return parse_header(HEADER.read_text())
    raise ImportError(
        "torch_mish: the TensorRT plugin identity is missing from torch_mish/_build_info.py and "
        f"{HEADER} does not exist; rebuild torch_mish (pip install --no-build-isolation .)"
    )


_PUBLIC = {public: key for key, public in _FIELDS.values()}


def __getattr__(name: str) -> str | int:
    if name in _PUBLIC:
        value = identity()[_PUBLIC[name]]
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
