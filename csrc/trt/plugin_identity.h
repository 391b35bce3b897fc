// The plugins' identities (TorchMish and DarknetNMS). Defined once, in torch_mish/_plugin_identity.py:
// the build (build_helpers/tensorrt_plugin.py) passes each value as a -D definition, turned into
// constants here.
#pragma once

#include <cstdint>

#if !defined(TORCH_MISH_PLUGIN_NAME) || !defined(TORCH_MISH_PLUGIN_VERSION) || \
    !defined(TORCH_MISH_PLUGIN_NAMESPACE) || !defined(TORCH_MISH_PLUGIN_FORMAT_VERSION) ||              \
    !defined(TORCH_MISH_NMS_PLUGIN_NAME) || !defined(TORCH_MISH_NMS_PLUGIN_VERSION) ||                 \
    !defined(TORCH_MISH_NMS_FORMAT_VERSION)
#error "the plugin identity comes from torch_mish/_plugin_identity.py: build the plugin through setup.py"
#endif

#define TORCH_MISH_STRINGIFY_(x) #x
#define TORCH_MISH_STRINGIFY(x) TORCH_MISH_STRINGIFY_(x)

namespace mish::trt {

constexpr char const* kPluginName = TORCH_MISH_STRINGIFY(TORCH_MISH_PLUGIN_NAME);
constexpr char const* kPluginVersion = TORCH_MISH_STRINGIFY(TORCH_MISH_PLUGIN_VERSION);
constexpr char const* kPluginNamespace = TORCH_MISH_STRINGIFY(TORCH_MISH_PLUGIN_NAMESPACE);
// Serialized-field schema version: createPlugin refuses other versions.
constexpr int32_t kFormatVersion = TORCH_MISH_PLUGIN_FORMAT_VERSION;
constexpr char const* kFormatVersionField = "format_version";

// DarknetNMS (darknet_nms_plugin.h): same namespace, same format_version field, its own schema version.
constexpr char const* kNmsPluginName = TORCH_MISH_STRINGIFY(TORCH_MISH_NMS_PLUGIN_NAME);
constexpr char const* kNmsPluginVersion = TORCH_MISH_STRINGIFY(TORCH_MISH_NMS_PLUGIN_VERSION);
constexpr int32_t kNmsFormatVersion = TORCH_MISH_NMS_FORMAT_VERSION;

}  // namespace mish::trt
