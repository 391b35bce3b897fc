"""The TensorRT plugin's identity: creator name, version, namespace and serialized-field format version.

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

# The C++ macro each value is compiled in as (csrc/trt/plugin_identity.h).
MACROS = {
    "TORCH_MISH_PLUGIN_NAME": PLUGIN_NAME,
    "TORCH_MISH_PLUGIN_VERSION": PLUGIN_VERSION,
    "TORCH_MISH_PLUGIN_NAMESPACE": PLUGIN_NAMESPACE,
    "TORCH_MISH_PLUGIN_FORMAT_VERSION": FORMAT_VERSION,
}
