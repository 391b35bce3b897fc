// The TorchMish plugin's identity: its one definition. The plugin (mish_plugin.h) compiles it in;
// setup.py reads it into torch_mish/_build_info.py, where torch_mish.tensorrt and torch_mish.onnx
// (torch_mish/_plugin_identity.py) take the names from. Keep each value a literal on one line: Python
// parses this file.
#pragma once

#include <cstdint>

namespace mish::trt {

constexpr char const* kPluginName = "TorchMish";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "torch_mish";
// Serialized-field schema version: bump when fields change; createPlugin refuses other versions.
constexpr int32_t kFormatVersion = 1;
constexpr char const* kFormatVersionField = "format_version";

}  // namespace mish::trt
