// The plugins' identities (TorchMish and DarknetNMS): their one definition. The plugins (mish_plugin.h,
// darknet_nms_plugin.h) compile it in; setup.py reads it into torch_mish/_build_info.py, where
// torch_mish.tensorrt and torch_mish.onnx (torch_mish/_plugin_identity.py) take the names from. Keep
// each value a literal on one line: Python parses this file.
#pragma once

#include <cstdint>

namespace mish::trt {

constexpr char const* kPluginName = "TorchMish";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "torch_mish";
// Serialized-field schema version: bump when fields change; createPlugin refuses other versions.
constexpr int32_t kFormatVersion = 1;
constexpr char const* kFormatVersionField = "format_version";

// DarknetNMS (darknet_nms_plugin.h): same namespace, same format_version field, its own schema version.
constexpr char const* kNmsPluginName = "DarknetNMS";
constexpr char const* kNmsPluginVersion = "1";
constexpr int32_t kNmsFormatVersion = 1;

}  // namespace mish::trt
