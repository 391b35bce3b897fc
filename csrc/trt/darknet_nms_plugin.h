// TensorRT IPluginV3 for darknet's detection NMS (torch.ops.mish.darknet_nms): it runs
// mish::nms::launch_darknet_nms, the launcher the torch CUDA op uses, so an engine's detections are the
// op's, bit for bit.
//
// One input: rows (N, R, 5 + C), kFLOAT / kHALF / kBF16, kLINEAR (cx, cy, w, h, objectness, C class
// probabilities per row). Four outputs, K = max_det: num_dets (N, 1) kINT32, det_boxes (N, K, 4) kFLOAT,
// det_scores (N, K) kFLOAT, det_classes (N, K) kINT32. Fields: conf_thresh, iou_thresh, max_det, kind,
// beta, net_width, net_height (the op's arguments) and format_version; see csrc/trt/README.md.
//
// Methods that can throw (allocation, a plugin object built) catch; the others cannot, and report
// failures through log_nms_error, which formats into a fixed buffer (no allocation) and writes to
// TensorRT's logger, else stderr. Failures come back as -1, false or nullptr.
#pragma once

#include <NvInferRuntime.h>

#include <array>

#include "kernels/darknet_nms_launch.h"
#include "plugin_identity.h"

namespace mish::trt {

// The serialized fields, in getFieldNames() / getFieldsToSerialize() order.
inline constexpr int32_t kNmsNbFields = 8;

class DarknetNmsPlugin final : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime {
 public:
  explicit DarknetNmsPlugin(nms::NmsParams const& params) noexcept;
  // No copies: the serialization fields point into the object that owns them; clone() builds a new
  // plugin from the parameters.
  DarknetNmsPlugin(DarknetNmsPlugin const&) = delete;
  DarknetNmsPlugin& operator=(DarknetNmsPlugin const&) = delete;
  ~DarknetNmsPlugin() override = default;

  nms::NmsParams const& params() const noexcept { return mParams; }

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return kNmsPluginName; }
  char const* getPluginVersion() const noexcept override { return kNmsPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

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
  int32_t getNbOutputs() const noexcept override { return 4; }
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  nms::NmsParams mParams;
  int32_t mFormatVersion{kNmsFormatVersion};
  std::array<nvinfer1::PluginField, kNmsNbFields> mSerialFields{};
  nvinfer1::PluginFieldCollection mSerialCollection{};
};

class DarknetNmsPluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  DarknetNmsPluginCreator() noexcept;
  DarknetNmsPluginCreator(DarknetNmsPluginCreator const&) = delete;  // mFieldNames points at mFields
  DarknetNmsPluginCreator& operator=(DarknetNmsPluginCreator const&) = delete;

  // Fields as getFieldNames() lists them; conf_thresh, iou_thresh and max_det are required, the others
  // default to the op's defaults (kind "default", beta 0.6, net size 1 x 1) when building; every field
  // is required when deserializing (TensorRTPhase::kRUNTIME). Bad fields: null, and the log says why.
  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldNames; }
  char const* getPluginName() const noexcept override { return kNmsPluginName; }
  char const* getPluginVersion() const noexcept override { return kNmsPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

 private:
  std::array<nvinfer1::PluginField, kNmsNbFields> mFields{};
  nvinfer1::PluginFieldCollection mFieldNames{};
};

}  // namespace mish::trt
