"""The TensorRT plugins' identities (TorchMish, DarknetNMS): creator name, version, namespace and
serialized-field format version.

Defined here, once, and flowing one way: setup.py compiles these values into the plugin library (as
-D definitions that csrc/trt/plugin_identity.h turns into its constants) and records them in
torch_mish.build_info(); torch_mish.tensorrt and torch_mish.onnx import them. Plain literals with no
imports: setup.py reads this file without importing torch_mish.
"""

PLUGIN_NAME = "TorchMish"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "torch_mish"
# Serialized-field schema version: bump when the plugin's fields change; createPlugin refuses others.
FORMAT_VERSION = 1

# DarknetNMS: same namespace and format_version field, its own schema version.
NMS_PLUGIN_NAME = "DarknetNMS"
NMS_PLUGIN_VERSION = "1"
NMS_FORMAT_VERSION = 1

# The C++ macro each value is compiled in as (csrc/trt/plugin_identity.h).
MACROS = {
    "TORCH_MISH_PLUGIN_NAME": PLUGIN_NAME,
    "TORCH_MISH_PLUGIN_VERSION": PLUGIN_VERSION,
    "TORCH_MISH_PLUGIN_NAMESPACE": PLUGIN_NAMESPACE,
    "TORCH_MISH_PLUGIN_FORMAT_VERSION": FORMAT_VERSION,
    "TORCH_MISH_NMS_PLUGIN_NAME": NMS_PLUGIN_NAME,
    "TORCH_MISH_NMS_PLUGIN_VERSION": NMS_PLUGIN_VERSION,
    "TORCH_MISH_NMS_FORMAT_VERSION": NMS_FORMAT_VERSION,
}
