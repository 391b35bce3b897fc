// TensorRT IPluginV3 for Mish: one input, one output of the same type and shape, linear format,
// float32/float16/bfloat16. It runs mish::launch_forward, the launcher the torch op uses.
//
// Every method TensorRT calls is noexcept: an exception reaching TensorRT would end the process. Those
// that allocate (clone, createPlugin) catch std::exception; the others cannot throw (messages are
// formatted into a fixed buffer, constants are returned directly). Failures are logged and reported
// through the return value (-1, false or nullptr).
//
// Links neither libtorch nor libnvinfer: TensorRT finds it through getCreators() (exported by
// mish_plugin.cpp) when the library is loaded with IPluginRegistry::loadLibrary, trtexec
// --dynamicPlugins or trt.get_plugin_registry().load_library().
#pragma once

#include <NvInferRuntime.h>

#include <atomic>
#include <cstdarg>

#include "plugin_identity.h"

namespace mish::trt {

class MishPlugin final : public nvinfer1::IPluginV3,
                         public nvinfer1::IPluginV3OneCore,
                         public nvinfer1::IPluginV3OneBuild,
                         public nvinfer1::IPluginV3OneRuntime {
 public:
  MishPlugin();
  // No copies: the serialization fields point into the object that owns them. clone() builds a new
  // plugin from the parameters (there are none besides the format version, which is a constant).
  MishPlugin(MishPlugin const&) = delete;
  MishPlugin& operator=(MishPlugin const&) = delete;
  ~MishPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  int32_t mFormatVersion{kFormatVersion};
  nvinfer1::PluginField mSerialField;
  nvinfer1::PluginFieldCollection mSerialFields{};
};

class MishPluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  MishPluginCreator();
  MishPluginCreator(MishPluginCreator const&) = delete;  // mFieldNames points at mField
  MishPluginCreator& operator=(MishPluginCreator const&) = delete;

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

 private:
  nvinfer1::PluginField mField;
  nvinfer1::PluginFieldCollection mFieldNames{};
};

// The logger finder TensorRT hands the library (setLoggerFinder); every plugin in the library logs
// through it.
extern std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder;

// Reports a printf-style message, prefixed "torch_mish::<plugin>: ", through TensorRT's logger when
// the runtime gave us one (setLoggerFinder), else on stderr. Cannot throw.
void vlog_error(char const* plugin, char const* format, std::va_list args) noexcept;
// vlog_error for TorchMish.
void log_error(char const* format, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace mish::trt
