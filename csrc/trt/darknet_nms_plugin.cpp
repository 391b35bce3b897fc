#include "darknet_nms_plugin.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <type_traits>

#include "mish_plugin.h"  // gLoggerFinder

namespace mish::trt {
namespace {

using nms::NmsKind;
using nms::NmsParams;
using nvinfer1::DataType;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

// Field order of getFieldNames() and getFieldsToSerialize(): the op's arguments after `rows`, and the
// schema version. The names are the ONNX node's attribute names too (TensorRT's parser passes each
// attribute whose name the creator lists, typed by the attribute: FLOAT -> kFLOAT32, INT -> kINT32,
// STRING -> kCHAR with a terminating NUL).
enum Field : int32_t { kVersion, kConf, kIou, kMaxDet, kKind, kBeta, kNetWidth, kNetHeight };
struct FieldSpec {
  char const* name;
  PluginFieldType type;
};
constexpr FieldSpec kFieldSpecs[kNmsNbFields] = {
    {kFormatVersionField, PluginFieldType::kINT32},
    {"conf_thresh", PluginFieldType::kFLOAT32},
    {"iou_thresh", PluginFieldType::kFLOAT32},
    {"max_det", PluginFieldType::kINT32},
    {"kind", PluginFieldType::kCHAR},
    {"beta", PluginFieldType::kFLOAT32},
    {"net_width", PluginFieldType::kFLOAT32},
    {"net_height", PluginFieldType::kFLOAT32},
};
constexpr char const* kFieldList =
    "format_version, conf_thresh, iou_thresh, max_det, kind, beta, net_width, net_height";

// darknet's [yolo] nms_kind names (the op's `kind` argument).
struct KindName {
  char const* name;
  NmsKind kind;
};
constexpr KindName kKindNames[] = {
    {"default", NmsKind::kDefault}, {"greedynms", NmsKind::kGreedy}, {"diounms", NmsKind::kDiou}};

char const* kind_name(NmsKind kind) {
  for (KindName const& k : kKindNames) {
    if (k.kind == kind) return k.name;
  }
  return "?";
}

// The op's defaults for the fields a build may leave out.
constexpr NmsParams kDefaults{0.f, 0.f, 0, NmsKind::kDefault, 0.6f, 1.f, 1.f};

// vlog_error (mish_plugin.cpp) for DarknetNMS.
__attribute__((format(printf, 1, 2))) void log_nms_error(char const* format, ...) noexcept {
  std::va_list args;
  va_start(args, format);
  vlog_error(kNmsPluginName, format, args);
  va_end(args);
}

bool supported_input(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16; }

bool to_kernel_dtype(DataType t, DType& out) {
  switch (t) {
    case DataType::kFLOAT: out = DType::kFloat32; return true;
    case DataType::kHALF: out = DType::kFloat16; return true;
    case DataType::kBF16: out = DType::kBFloat16; return true;
    default: return false;
  }
}

// Output i's type: num_dets, det_boxes, det_scores, det_classes.
constexpr DataType kOutputTypes[4] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32};

char const* type_name(DataType t) {
  switch (t) {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kINT64: return "kINT64";
    case DataType::kBOOL: return "kBOOL";
    default: return "another type";
  }
}

bool check_io(int32_t nbInputs, int32_t nbOutputs, char const* where) {
  if (nbInputs == 1 && nbOutputs == 4) return true;
  log_nms_error("%s: expected 1 input and 4 outputs, got %d and %d", where, nbInputs, nbOutputs);
  return false;
}

// The input's problem size from its dimensions; false (and a log line) unless they are (N, R, 5 + C)
// with C >= 1 within the launcher's limits.
struct Problem {
  int64_t batch, rows, classes;
};
bool problem_of(nvinfer1::Dims const& d, char const* where, Problem& out) {
  if (d.nbDims != 3) {
    log_nms_error("%s: rows must have rank 3 (N, R, 5 + classes), got rank %d", where, d.nbDims);
    return false;
  }
  if (d.d[0] < 0 || d.d[1] < 0 || d.d[2] < 6) {
    log_nms_error("%s: rows must be (N, R, 5 + classes) with at least one class, got (%lld, %lld, %lld)", where,
                  static_cast<long long>(d.d[0]), static_cast<long long>(d.d[1]), static_cast<long long>(d.d[2]));
    return false;
  }
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max();
  if (d.d[1] >= kLimit || d.d[0] * (d.d[2] - 5) >= kLimit) {
    log_nms_error("%s: rows (%lld, %lld, %lld) is too large: R and N * classes must be below 2^31", where,
                  static_cast<long long>(d.d[0]), static_cast<long long>(d.d[1]), static_cast<long long>(d.d[2]));
    return false;
  }
  out = {d.d[0], d.d[1], d.d[2] - 5};
  return true;
}

// The parameters' ranges, as the op checks them; false and a log line naming the field otherwise.
bool valid_params(NmsParams const& p, char const* who) {
  if (!(p.conf_thresh >= 0.f && p.conf_thresh <= 1.f)) {
    log_nms_error("%s: conf_thresh must be in [0, 1], got %g", who, static_cast<double>(p.conf_thresh));
  } else if (!(p.iou_thresh >= 0.f && p.iou_thresh <= 1.f)) {
    log_nms_error("%s: iou_thresh must be in [0, 1], got %g", who, static_cast<double>(p.iou_thresh));
  } else if (p.max_det < 1) {
    log_nms_error("%s: max_det must be at least 1, got %d", who, p.max_det);
  } else if (!(std::isfinite(p.beta) && p.beta >= 0.f)) {
    log_nms_error("%s: beta must be finite and >= 0, got %g", who, static_cast<double>(p.beta));
  } else if (!(std::isfinite(p.net_width) && p.net_width > 0.f && std::isfinite(p.net_height) && p.net_height > 0.f)) {
    log_nms_error("%s: net_width and net_height must be finite and > 0, got %g and %g", who,
                  static_cast<double>(p.net_width), static_cast<double>(p.net_height));
  } else {
    return true;
  }
  return false;
}

// Reads field `f` (already matched to `index`) into `p` / `version`; false and a log line if its type,
// length or value is not what the field takes.
bool read_field(nvinfer1::PluginField const& f, int32_t index, NmsParams& p, int32_t& version, char const* who) {
  FieldSpec const& spec = kFieldSpecs[index];
  bool const is_text = spec.type == PluginFieldType::kCHAR;
  if (f.type != spec.type || f.data == nullptr || (is_text ? f.length < 1 : f.length != 1)) {
    log_nms_error("%s: field '%s' must be %s (got type %d, length %d%s)", who, spec.name,
                  is_text                                ? "a kCHAR string"
                  : spec.type == PluginFieldType::kINT32 ? "one kINT32 value"
                                                         : "one kFLOAT32 value",
                  static_cast<int32_t>(f.type), f.length, f.data == nullptr ? ", no data" : "");
    return false;
  }
  auto const as_float = [&f] { return *static_cast<float const*>(f.data); };
  auto const as_int = [&f] { return *static_cast<int32_t const*>(f.data); };
  switch (static_cast<Field>(index)) {
    case kVersion: version = as_int(); break;
    case kConf: p.conf_thresh = as_float(); break;
    case kIou: p.iou_thresh = as_float(); break;
    case kMaxDet: p.max_det = as_int(); break;
    case kBeta: p.beta = as_float(); break;
    case kNetWidth: p.net_width = as_float(); break;
    case kNetHeight: p.net_height = as_float(); break;
    case kKind: {
      // With or without a terminating NUL (TensorRT's ONNX parser counts it, Python callers may not).
      char const* text = static_cast<char const*>(f.data);
      size_t const n = strnlen(text, static_cast<size_t>(f.length));
      for (KindName const& k : kKindNames) {
        if (std::strlen(k.name) == n && std::strncmp(k.name, text, n) == 0) {
          p.kind = k.kind;
          return true;
        }
      }
      log_nms_error("%s: unknown kind '%.*s'; expected 'default', 'greedynms' or 'diounms' (darknet's [yolo] nms_kind)",
                    who, static_cast<int>(n < 64 ? n : 64), text);
      return false;
    }
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DarknetNmsPlugin

static_assert(!std::is_copy_constructible_v<DarknetNmsPlugin> && !std::is_copy_assignable_v<DarknetNmsPlugin>,
              "a member-wise copy would share the PluginField pointers: clone() builds from parameters");

DarknetNmsPlugin::DarknetNmsPlugin(NmsParams const& params) noexcept : mParams(params) {}

nvinfer1::IPluginCapability* DarknetNmsPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  log_nms_error("getCapabilityInterface: unknown capability %d", static_cast<int32_t>(type));
  return nullptr;
}

nvinfer1::IPluginV3* DarknetNmsPlugin::clone() noexcept {
  try {
    return new DarknetNmsPlugin(mParams);  // from the parameters: the serialization fields point into `this`
  } catch (std::exception const& e) {
    log_nms_error("clone: %s", e.what());
  }
  return nullptr;
}

int32_t DarknetNmsPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                             int32_t nbInputs) const noexcept {
  if (!check_io(nbInputs, nbOutputs, "getOutputDataTypes") || outputTypes == nullptr || inputTypes == nullptr) {
    return -1;
  }
  if (!supported_input(inputTypes[0])) {
    log_nms_error("getOutputDataTypes: rows of type %s are not supported (kFLOAT, kHALF, kBF16)",
                  type_name(inputTypes[0]));
    return -1;
  }
  for (int32_t i = 0; i < 4; ++i) outputTypes[i] = kOutputTypes[i];
  return 0;
}

int32_t DarknetNmsPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                          nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs,
                                          nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                          nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (!check_io(nbInputs, nbOutputs, "getOutputShapes") || inputs == nullptr || outputs == nullptr) return -1;
  if (nbShapeInputs != 0 || inputs[0].nbDims != 3) {
    log_nms_error(
        "getOutputShapes: expected rows of rank 3 (N, R, 5 + classes) and no shape inputs, got rank %d and "
        "%d shape inputs",
        inputs[0].nbDims, nbShapeInputs);
    return -1;
  }
  nvinfer1::IDimensionExpr const* batch = inputs[0].d[0];
  nvinfer1::IDimensionExpr const* k = exprBuilder.constant(mParams.max_det);
  nvinfer1::IDimensionExpr const* one = exprBuilder.constant(1);
  nvinfer1::IDimensionExpr const* four = exprBuilder.constant(4);
  if (k == nullptr || one == nullptr || four == nullptr) return -1;
  outputs[0].nbDims = 2;  // num_dets (N, 1)
  outputs[0].d[0] = batch;
  outputs[0].d[1] = one;
  outputs[1].nbDims = 3;  // det_boxes (N, K, 4)
  outputs[1].d[0] = batch;
  outputs[1].d[1] = k;
  outputs[1].d[2] = four;
  for (int32_t i = 2; i < 4; ++i) {  // det_scores, det_classes (N, K)
    outputs[i].nbDims = 2;
    outputs[i].d[0] = batch;
    outputs[i].d[1] = k;
  }
  return 0;
}

bool DarknetNmsPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                                 int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (inOut == nullptr || nbInputs != 1 || nbOutputs != 4 || pos < 0 || pos > 4) return false;
  nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
  if (desc.format != TensorFormat::kLINEAR) return false;
  return pos == 0 ? supported_input(desc.type) : desc.type == kOutputTypes[pos - 1];
}

int32_t DarknetNmsPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (!check_io(nbInputs, nbOutputs, "configurePlugin") || in == nullptr || out == nullptr) return -1;
  if (!supported_input(in[0].desc.type)) {
    log_nms_error("configurePlugin: rows of type %s are not supported (kFLOAT, kHALF, kBF16)",
                  type_name(in[0].desc.type));
    return -1;
  }
  for (int32_t i = 0; i < 4; ++i) {
    if (out[i].desc.type != kOutputTypes[i]) {
      log_nms_error("configurePlugin: output %d has type %s, expected %s", i, type_name(out[i].desc.type),
                    type_name(kOutputTypes[i]));
      return -1;
    }
  }
  // The profile's largest input bounds every shape the engine will see.
  Problem largest{};
  return problem_of(in[0].max, "configurePlugin", largest) ? 0 : -1;
}

size_t DarknetNmsPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                          nvinfer1::DynamicPluginTensorDesc const* /*outputs*/,
                                          int32_t nbOutputs) const noexcept {
  Problem largest{};
  if (!check_io(nbInputs, nbOutputs, "getWorkspaceSize") || inputs == nullptr ||
      !problem_of(inputs[0].max, "getWorkspaceSize", largest)) {
    return 0;
  }
  // Enough for the largest input, hence for every smaller one (the size grows with batch and rows).
  return nms::darknet_nms_workspace_size(largest.batch, largest.rows, largest.classes, mParams.max_det);
}

int32_t DarknetNmsPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (!check_io(nbInputs, nbOutputs, "onShapeChange") || in == nullptr || out == nullptr) return -1;
  if (!supported_input(in[0].type) || in[0].format != TensorFormat::kLINEAR) {
    log_nms_error("onShapeChange: rows must be kFLOAT, kHALF or kBF16 in kLINEAR format, got %s",
                  type_name(in[0].type));
    return -1;
  }
  Problem problem{};
  if (!problem_of(in[0].dims, "onShapeChange", problem)) return -1;
  if (out[1].dims.nbDims != 3 || out[1].dims.d[0] != problem.batch || out[1].dims.d[1] != mParams.max_det) {
    log_nms_error("onShapeChange: det_boxes must be (%lld, %d, 4)", static_cast<long long>(problem.batch),
                  mParams.max_det);
    return -1;
  }
  return 0;
}

int32_t DarknetNmsPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                  nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs,
                                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
  if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) return -1;
  DType dtype{};
  if (!to_kernel_dtype(inputDesc[0].type, dtype)) {
    log_nms_error("enqueue: rows of type %s are not supported (kFLOAT, kHALF, kBF16)", type_name(inputDesc[0].type));
    return -1;
  }
  Problem p{};
  if (!problem_of(inputDesc[0].dims, "enqueue", p)) return -1;
  // TensorRT allocated getWorkspaceSize() for the profile's largest input: at least this much.
  size_t const bytes = nms::darknet_nms_workspace_size(p.batch, p.rows, p.classes, mParams.max_det);
  cudaError_t const err =
      nms::launch_darknet_nms(dtype, inputs[0], p.batch, p.rows, p.classes, mParams, static_cast<int32_t*>(outputs[0]),
                              static_cast<float*>(outputs[1]), static_cast<float*>(outputs[2]),
                              static_cast<int32_t*>(outputs[3]), workspace, bytes, stream);
  if (err != cudaSuccess) {
    log_nms_error("enqueue: launch_darknet_nms failed: %s", cudaGetErrorString(err));
    return -1;
  }
  return 0;
}

nvinfer1::IPluginV3* DarknetNmsPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  return clone();  // no per-context resources
}

nvinfer1::PluginFieldCollection const* DarknetNmsPlugin::getFieldsToSerialize() noexcept {
  char const* kind = kind_name(mParams.kind);
  void const* data[kNmsNbFields] = {&mFormatVersion, &mParams.conf_thresh, &mParams.iou_thresh, &mParams.max_det, kind,
                                    &mParams.beta,   &mParams.net_width,   &mParams.net_height};
  for (int32_t i = 0; i < kNmsNbFields; ++i) {
    bool const is_text = kFieldSpecs[i].type == PluginFieldType::kCHAR;
    int32_t const length = is_text ? static_cast<int32_t>(std::strlen(kind) + 1) : 1;  // with its NUL
    mSerialFields[i] = nvinfer1::PluginField(kFieldSpecs[i].name, data[i], kFieldSpecs[i].type, length);
  }
  mSerialCollection.nbFields = kNmsNbFields;
  mSerialCollection.fields = mSerialFields.data();
  return &mSerialCollection;
}

// ---------------------------------------------------------------------------------------------
// DarknetNmsPluginCreator

DarknetNmsPluginCreator::DarknetNmsPluginCreator() noexcept {
  for (int32_t i = 0; i < kNmsNbFields; ++i) {
    mFields[i] = nvinfer1::PluginField(kFieldSpecs[i].name, nullptr, kFieldSpecs[i].type, 1);
  }
  mFieldNames.nbFields = kNmsNbFields;
  mFieldNames.fields = mFields.data();
}

nvinfer1::IPluginV3* DarknetNmsPluginCreator::createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                                           nvinfer1::TensorRTPhase phase) noexcept {
  char who[160];
  std::snprintf(who, sizeof(who), "createPlugin(%s)", name != nullptr ? name : "<unnamed>");
  if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr) {
    log_nms_error("%s: field collection has %d fields but no field array", who, fc->nbFields);
    return nullptr;
  }
  NmsParams params = kDefaults;
  int32_t version = kNmsFormatVersion;
  bool seen[kNmsNbFields] = {};
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    char const* field = f.name != nullptr ? f.name : "<null>";
    int32_t index = -1;
    for (int32_t j = 0; j < kNmsNbFields; ++j) {
      if (std::strcmp(field, kFieldSpecs[j].name) == 0) index = j;
    }
    if (index < 0) {
      log_nms_error("%s: unknown field '%s' (accepted: %s)", who, field, kFieldList);
      return nullptr;
    }
    if (seen[index]) {
      log_nms_error("%s: field '%s' given twice", who, field);
      return nullptr;
    }
    if (!read_field(f, index, params, version, who)) return nullptr;
    seen[index] = true;
  }
  // Building needs the arguments without a default; deserializing, everything getFieldsToSerialize wrote.
  for (int32_t j = 0; j < kNmsNbFields; ++j) {
    bool const required = phase == nvinfer1::TensorRTPhase::kRUNTIME || j == kConf || j == kIou || j == kMaxDet;
    if (required && !seen[j]) {
      log_nms_error("%s: missing field '%s'%s", who, kFieldSpecs[j].name,
                    phase == nvinfer1::TensorRTPhase::kRUNTIME ? " when deserializing" : "");
      return nullptr;
    }
  }
  if (version != kNmsFormatVersion) {
    log_nms_error(
        "%s: serialized by format version %d, this library reads version %d: rebuild the engine with this "
        "torch_mish",
        who, version, kNmsFormatVersion);
    return nullptr;
  }
  if (!valid_params(params, who)) return nullptr;
  try {
    return new DarknetNmsPlugin(params);
  } catch (std::exception const& e) {
    log_nms_error("%s: %s", who, e.what());
  }
  return nullptr;
}

}  // namespace mish::trt
