#include "mish_plugin.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <type_traits>

#include "darknet_nms_plugin.h"
#include "kernels/mish_launch.h"

namespace mish::trt {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

namespace {

using nvinfer1::DataType;
using nvinfer1::TensorFormat;

bool supported_type(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16; }

bool to_kernel_dtype(DataType t, mish::DType& out) {
  switch (t) {
    case DataType::kFLOAT: out = mish::DType::kFloat32; return true;
    case DataType::kHALF: out = mish::DType::kFloat16; return true;
    case DataType::kBF16: out = mish::DType::kBFloat16; return true;
    default: return false;
  }
}

// Element count of a runtime shape; -1 if a dimension is negative (unresolved).
int64_t volume(nvinfer1::Dims const& d) {
  int64_t n = 1;
  for (int32_t i = 0; i < d.nbDims; ++i) {
    if (d.d[i] < 0) return -1;
    n *= d.d[i];
  }
  return n;
}

char const* describe(DataType t) {
  switch (t) {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kINT64: return "kINT64";
    case DataType::kBOOL: return "kBOOL";
    default: return "another DataType";
  }
}

bool check_io(int32_t nbInputs, int32_t nbOutputs, char const* where) {
  if (nbInputs == 1 && nbOutputs == 1) return true;
  log_error("%s: expected 1 input and 1 output, got %d and %d", where, nbInputs, nbOutputs);
  return false;
}

}  // namespace

void vlog_error(char const* plugin, char const* format, std::va_list args) noexcept {
  // Formatted into a fixed buffer, never a std::string: logging cannot throw, so the methods that
  // only validate and log need no try/catch.
  char message[1024];
  int const prefix = std::snprintf(message, sizeof(message), "%s::%s: ", kPluginNamespace, plugin);
  std::vsnprintf(message + prefix, sizeof(message) - prefix, format, args);
  nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
  nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
  if (logger != nullptr) {
    logger->log(nvinfer1::ILogger::Severity::kERROR, message);
  } else {
    std::fprintf(stderr, "[E] %s\n", message);
  }
}

void log_error(char const* format, ...) noexcept {
  std::va_list args;
  va_start(args, format);
  vlog_error(kPluginName, format, args);
  va_end(args);
}

// ---------------------------------------------------------------------------------------------
// MishPlugin
//
// try/catch only where something can throw: the two methods that allocate a plugin (clone and the
// creator's createPlugin; new throws std::bad_alloc). The rest validate, log through log_error
// (which cannot throw) and return constants or error codes directly.

static_assert(!std::is_copy_constructible_v<MishPlugin> && !std::is_copy_assignable_v<MishPlugin>,
              "a member-wise copy would share the PluginField pointers: clone() builds from parameters");

MishPlugin::MishPlugin() : mSerialField(kFormatVersionField, nullptr, nvinfer1::PluginFieldType::kINT32, 1) {}

nvinfer1::IPluginCapability* MishPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  log_error("getCapabilityInterface: unknown capability %d", static_cast<int32_t>(type));
  return nullptr;
}

nvinfer1::IPluginV3* MishPlugin::clone() noexcept {
  try {
    // A new plugin from the parameters, never a member-wise copy: mSerialField / mSerialFields hold
    // pointers into the object that filled them.
    return new MishPlugin();
  } catch (std::exception const& e) {
    log_error("clone: %s", e.what());
  }
  return nullptr;
}

char const* MishPlugin::getPluginName() const noexcept { return kPluginName; }

char const* MishPlugin::getPluginVersion() const noexcept { return kPluginVersion; }

char const* MishPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t MishPlugin::getNbOutputs() const noexcept { return 1; }

int32_t MishPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (!check_io(nbInputs, nbOutputs, "configurePlugin") || in == nullptr || out == nullptr) return -1;
  if (!supported_type(in[0].desc.type) || out[0].desc.type != in[0].desc.type) {
    log_error("configurePlugin: unsupported input/output types %s/%s (supported: kFLOAT, kHALF, kBF16, output = input)",
              describe(in[0].desc.type), describe(out[0].desc.type));
    return -1;
  }
  return 0;
}

int32_t MishPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                       int32_t nbInputs) const noexcept {
  if (!check_io(nbInputs, nbOutputs, "getOutputDataTypes") || outputTypes == nullptr || inputTypes == nullptr) {
    return -1;
  }
  if (!supported_type(inputTypes[0])) {
    log_error("input type %s is not supported (kFLOAT, kHALF, kBF16)", describe(inputTypes[0]));
    return -1;
  }
  outputTypes[0] = inputTypes[0];
  return 0;
}

int32_t MishPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                    nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                    nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
  if (!check_io(nbInputs, nbOutputs, "getOutputShapes") || inputs == nullptr || outputs == nullptr) return -1;
  outputs[0] = inputs[0];  // elementwise: any rank, dynamic dimensions pass through
  return 0;
}

bool MishPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                           int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (inOut == nullptr || nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1) return false;
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  if (desc.format != TensorFormat::kLINEAR) return false;
  return pos == 0 ? supported_type(desc.type) : desc.type == inOut[0].desc.type;
}

int32_t MishPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                  nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (!check_io(nbInputs, nbOutputs, "onShapeChange") || in == nullptr || out == nullptr) return -1;
  if (!supported_type(in[0].type) || out[0].type != in[0].type || in[0].format != TensorFormat::kLINEAR) {
    log_error("onShapeChange: unsupported type/format %s", describe(in[0].type));
    return -1;
  }
  if (volume(in[0].dims) != volume(out[0].dims)) {
    log_error("onShapeChange: input and output element counts differ");
    return -1;
  }
  return 0;
}

int32_t MishPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                            void const* const* inputs, void* const* outputs, void* /*workspace*/,
                            cudaStream_t stream) noexcept {
  if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) return -1;
  mish::DType dtype{};
  if (!to_kernel_dtype(inputDesc[0].type, dtype) || outputDesc[0].type != inputDesc[0].type) {
    log_error("enqueue: unsupported type %s", describe(inputDesc[0].type));
    return -1;
  }
  int64_t const n = volume(inputDesc[0].dims);
  if (n < 0) {
    log_error("enqueue: unresolved input dimensions");
    return -1;
  }
  // The launcher is framework-free C++ that reports through cudaError_t; it does not throw.
  cudaError_t const err = mish::launch_forward(dtype, inputs[0], outputs[0], n, stream);
  if (err != cudaSuccess) {
    log_error("enqueue: kernel launch failed: %s", cudaGetErrorString(err));
    return -1;
  }
  return 0;
}

nvinfer1::IPluginV3* MishPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  return clone();  // no per-context resources
}

nvinfer1::PluginFieldCollection const* MishPlugin::getFieldsToSerialize() noexcept {
  mSerialField.data = &mFormatVersion;
  mSerialFields.nbFields = 1;
  mSerialFields.fields = &mSerialField;
  return &mSerialFields;
}

// ---------------------------------------------------------------------------------------------
// MishPluginCreator

MishPluginCreator::MishPluginCreator() : mField(kFormatVersionField, nullptr, nvinfer1::PluginFieldType::kINT32, 1) {
  mFieldNames.nbFields = 1;
  mFieldNames.fields = &mField;
}

nvinfer1::PluginFieldCollection const* MishPluginCreator::getFieldNames() noexcept { return &mFieldNames; }

char const* MishPluginCreator::getPluginName() const noexcept { return kPluginName; }

char const* MishPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }

char const* MishPluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }

nvinfer1::IPluginV3* MishPluginCreator::createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                                     nvinfer1::TensorRTPhase phase) noexcept {
  char const* const who = name != nullptr ? name : "<unnamed>";
  bool has_version = false;
  if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr) {
    log_error("createPlugin(%s): field collection has %d fields but no field array", who, fc->nbFields);
    return nullptr;
  }
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    char const* const field = f.name != nullptr ? f.name : "<null>";
    if (std::strcmp(field, kFormatVersionField) != 0) {
      log_error("createPlugin(%s): unknown field '%s' (accepted: %s)", who, field, kFormatVersionField);
      return nullptr;
    }
    if (f.type != nvinfer1::PluginFieldType::kINT32 || f.length != 1 || f.data == nullptr) {
      log_error("createPlugin(%s): field '%s' must be one kINT32 value", who, field);
      return nullptr;
    }
    int32_t const version = *static_cast<int32_t const*>(f.data);
    if (version != kFormatVersion) {
      log_error(
          "createPlugin(%s): serialized by format version %d, this library reads version %d: rebuild the engine "
          "with this torch_mish",
          who, version, kFormatVersion);
      return nullptr;
    }
    has_version = true;
  }
  if (phase == nvinfer1::TensorRTPhase::kRUNTIME && !has_version) {
    log_error("createPlugin(%s): missing field '%s' when deserializing", who, kFormatVersionField);
    return nullptr;
  }
  try {
    return new MishPlugin();
  } catch (std::exception const& e) {
    log_error("createPlugin(%s): %s", who, e.what());
  }
  return nullptr;
}

}  // namespace mish::trt

// Entry points TensorRT looks up with dlsym when loading a plugin library. No public header
// declares them, and the library is built with hidden visibility, so export them explicitly.
extern "C" {

__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept {
  mish::trt::gLoggerFinder.store(finder);
}

__attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators) noexcept {
  // The creators' constructors only fill in field descriptions.
  static mish::trt::MishPluginCreator creator;
  static mish::trt::DarknetNmsPluginCreator nms_creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator, &nms_creator};
  nbCreators = 2;
  return creators;
}

}  // extern "C"
