"""The torch_mish TensorRT plugin library (the TorchMish and DarknetNMS plugins): where it is and how
to register it."""

from __future__ import annotations

import logging
from pathlib import Path

import tensorrt as trt

from torch_mish import _plugin_identity
from torch_mish.tensorrt.support import is_tensorrt_rtx

logger = logging.getLogger("torch_mish.tensorrt")

# Defined once, in torch_mish/_plugin_identity.py (compiled into the plugin library by setup.py).
PLUGIN_NAME = _plugin_identity.PLUGIN_NAME
PLUGIN_VERSION = _plugin_identity.PLUGIN_VERSION
PLUGIN_NAMESPACE = _plugin_identity.PLUGIN_NAMESPACE
FORMAT_VERSION = _plugin_identity.FORMAT_VERSION  # the plugin's serialized-field version
NMS_PLUGIN_NAME = _plugin_identity.NMS_PLUGIN_NAME  # DarknetNMS, in the same library and namespace
NMS_PLUGIN_VERSION = _plugin_identity.NMS_PLUGIN_VERSION

_LIB_DIR = Path(__file__).resolve().parent.parent / "lib"
_loaded: dict[str, object] = {}


class PluginUnavailableError(RuntimeError):
    """The plugin library was not built for this TensorRT, or could not be registered. ``reason`` is the
    message without the advice, for callers (the CLI, the demo) that give their own."""

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(f"{reason} {advice}".strip())
        self.reason = reason


def tensorrt_abi_major() -> int:
    """The TensorRT major version whose plugin ABI the running TensorRT uses. TensorRT-RTX 1.x
    shares TensorRT 11's plugin, logger and registry layout."""
    if is_tensorrt_rtx():
        return 11
    return int(trt.__version__.split(".")[0])


def plugin_library_path() -> Path:
    """Path of the plugin library built for the running TensorRT (for trtexec --dynamicPlugins,
    IPluginRegistry::loadLibrary or a C++ runtime). Raises PluginUnavailableError if none was built."""
    major = tensorrt_abi_major()
    path = _LIB_DIR / f"libtorch_mish_trt{major}.so"
    if not path.exists():
        built = sorted(p.name for p in _LIB_DIR.glob("libtorch_mish_trt*.so")) if _LIB_DIR.exists() else []
        raise PluginUnavailableError(
            f"no torch_mish TensorRT plugin for TensorRT {trt.__version__} (ABI {major}): expected {path}; "
            f"built: {built or 'none'}. Rebuild torch_mish with TENSORRT_INCLUDE_DIR pointing at the TensorRT "
            f"{major}.x headers (and CUDA kernels enabled)."
        )
    return path


def _creator(name: str = PLUGIN_NAME, version: str = PLUGIN_VERSION) -> object | None:
    return trt.get_plugin_registry().get_creator(name, version, PLUGIN_NAMESPACE)


def plugin_available() -> bool:
    """True when the TorchMish creator is in TensorRT's plugin registry."""
    return _creator() is not None


def load_plugin(missing_ok: bool = False) -> Path | None:
    """Register the plugin library with TensorRT's plugin registry (idempotent). Must happen before
    an engine containing the plugin is deserialized; ``import torch_mish.tensorrt`` does it."""
    try:
        path = plugin_library_path()
    except PluginUnavailableError as exc:
        if missing_ok:
            logger.info("%s", exc)
            return None
        raise
    if str(path) in _loaded or plugin_available():
        return path
    handle = trt.get_plugin_registry().load_library(str(path))
    if handle is None or not plugin_available():
        raise PluginUnavailableError(f"TensorRT could not register the plugin library {path}")
    _loaded[str(path)] = handle
    logger.info("registered TensorRT plugin %s::%s from %s", PLUGIN_NAMESPACE, PLUGIN_NAME, path)
    return path


def create_plugin(name: str) -> trt.IPluginV3:
    """A TorchMish plugin instance for a network being built."""
    load_plugin()
    creator = _creator()
    if creator is None:
        raise PluginUnavailableError("the TorchMish plugin creator is not registered")
    fields = trt.PluginFieldCollection([])
    plugin = creator.create_plugin(name, fields, trt.TensorRTPhase.BUILD)
    if plugin is None:
        raise PluginUnavailableError(f"TorchMish createPlugin({name!r}) failed (see the TensorRT log)")
    return plugin


def nms_plugin_available() -> bool:
    """True when the DarknetNMS creator is in TensorRT's plugin registry."""
    return _creator(NMS_PLUGIN_NAME, NMS_PLUGIN_VERSION) is not None


def create_nms_plugin(name: str, fields: list[trt.PluginField]) -> trt.IPluginV3:
    """A DarknetNMS plugin instance for a network being built, from its fields (the op's arguments)."""
    load_plugin()
    creator = _creator(NMS_PLUGIN_NAME, NMS_PLUGIN_VERSION)
    if creator is None:
        raise PluginUnavailableError(
            f"the {NMS_PLUGIN_NAME} plugin creator is not registered "
            "(the plugin library predates it: rebuild torch_mish)"
        )
    plugin = creator.create_plugin(name, trt.PluginFieldCollection(fields), trt.TensorRTPhase.BUILD)
    if plugin is None:
        raise PluginUnavailableError(f"{NMS_PLUGIN_NAME} createPlugin({name!r}) failed (see the TensorRT log)")
    return plugin
