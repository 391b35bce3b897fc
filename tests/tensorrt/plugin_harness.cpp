// Test harness for the torch_mish plugin library without a TensorRT runtime: it loads the library
// the way IPluginRegistry::loadLibrary does (dlopen + getCreators + setLoggerFinder), and exposes
// the plugins' lifecycle to Python (ctypes) one call at a time. The h_* functions without a creator
// argument use the library's first creator (TorchMish) with one input and one output; the *_io
// functions take a creator found by name and any number of inputs and outputs (DarknetNMS). Built by
// tests/tensorrt/conftest.py with g++ on every machine: it is host code that needs only the CUDA headers (for
// cudaStream_t). On a GPU, enqueue gets its device pointers and stream from torch; the kernels are in the plugin
// library.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using nvinfer1::DataType;
using nvinfer1::TensorFormat;

class RecordingLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    std::lock_guard<std::mutex> lock(mutex);
    if (severity <= Severity::kWARNING) messages += std::string(msg) + "\n";
  }
  std::mutex mutex;
  std::string messages;
};

class Finder final : public nvinfer1::ILoggerFinder {
 public:
  nvinfer1::ILogger* findLogger() override { return &logger; }
  RecordingLogger logger;
};

Finder gFinder;
nvinfer1::IPluginCreatorV3One* gCreator = nullptr;      // the first V3One creator: TorchMish
std::vector<nvinfer1::IPluginCreatorV3One*> gCreators;  // all of them, in getCreators order
std::string gLastError;

// Dimension expressions for getOutputShapes: a value (-1: not a build-time constant), with the
// operations TensorRT's expression builder offers evaluated on constants.
class DimValue final : public nvinfer1::apiv::VDimensionExpr {
 public:
  explicit DimValue(int64_t v) : value(v) {}
  bool isConstant() const override { return value >= 0; }
  int64_t getConstantValue() const override { return value; }
  bool isSizeTensor() const override { return false; }
  int64_t value;
};

class Dim final : public nvinfer1::IDimensionExpr {
 public:
  explicit Dim(int64_t v) : impl(v) { mImpl = &impl; }
  DimValue impl;
};

class ExprBuilderImpl final : public nvinfer1::apiv::VExprBuilder {
 public:
  nvinfer1::IDimensionExpr const* constant(int64_t value) override { return make(value); }
  nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op, nvinfer1::IDimensionExpr const& a,
                                            nvinfer1::IDimensionExpr const& b) override {
    if (!a.isConstant() || !b.isConstant()) return make(-1);
    int64_t const x = a.getConstantValue(), y = b.getConstantValue();
    switch (op) {
      case nvinfer1::DimensionOperation::kSUM: return make(x + y);
      case nvinfer1::DimensionOperation::kPROD: return make(x * y);
      case nvinfer1::DimensionOperation::kMAX: return make(x > y ? x : y);
      case nvinfer1::DimensionOperation::kMIN: return make(x < y ? x : y);
      case nvinfer1::DimensionOperation::kSUB: return make(x - y);
      case nvinfer1::DimensionOperation::kEQUAL: return make(x == y);
      case nvinfer1::DimensionOperation::kLESS: return make(x < y);
      case nvinfer1::DimensionOperation::kFLOOR_DIV: return make(y != 0 ? x / y : -1);
      case nvinfer1::DimensionOperation::kCEIL_DIV: return make(y != 0 ? (x + y - 1) / y : -1);
    }
    return make(-1);
  }
  nvinfer1::IDimensionExpr const* declareSizeTensor(int32_t, nvinfer1::IDimensionExpr const&,
                                                    nvinfer1::IDimensionExpr const&) override {
    return make(-1);
  }
  nvinfer1::IDimensionExpr const* make(int64_t value) {
    dims.push_back(std::make_unique<Dim>(value));
    return dims.back().get();
  }
  std::deque<std::unique_ptr<Dim>> dims;
};

class ExprBuilder final : public nvinfer1::IExprBuilder {
 public:
  ExprBuilder() { mImpl = &impl; }
  ExprBuilderImpl impl;
};

constexpr int32_t kMaxRank = 8;  // dims are passed as nb * kMaxRank int64 values, row i for tensor i

// Tensor descriptions from parallel arrays: types[i], ranks[i], dims[i * kMaxRank ...]; format linear.
std::vector<nvinfer1::DynamicPluginTensorDesc> dyn_descs(int nb, int const* types, int const* ranks,
                                                         int64_t const* dims) {
  std::vector<nvinfer1::DynamicPluginTensorDesc> out(nb > 0 ? nb : 0);
  for (int i = 0; i < nb; ++i) {
    nvinfer1::Dims d{};
    d.nbDims = ranks != nullptr ? ranks[i] : 0;
    for (int32_t j = 0; j < d.nbDims; ++j) d.d[j] = dims[i * kMaxRank + j];
    out[i].desc.type = static_cast<DataType>(types[i]);
    out[i].desc.format = TensorFormat::kLINEAR;
    out[i].desc.dims = d;
    out[i].min = out[i].opt = out[i].max = d;
  }
  return out;
}

std::vector<nvinfer1::PluginTensorDesc> descs(int nb, int const* types, int const* ranks, int64_t const* dims) {
  std::vector<nvinfer1::PluginTensorDesc> out;
  for (nvinfer1::DynamicPluginTensorDesc const& d : dyn_descs(nb, types, ranks, dims)) out.push_back(d.desc);
  for (nvinfer1::PluginTensorDesc& d : out) d.scale = 1.0f;
  return out;
}

nvinfer1::IPluginCreatorV3One* creator_of(nvinfer1::IPluginV3* plugin) {
  auto* core =
      static_cast<nvinfer1::IPluginV3OneCore*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
  for (nvinfer1::IPluginCreatorV3One* c : gCreators) {
    if (std::strcmp(c->getPluginName(), core->getPluginName()) == 0) return c;
  }
  return nullptr;
}

nvinfer1::IPluginV3OneBuild* build_api(nvinfer1::IPluginV3* p) {
  return static_cast<nvinfer1::IPluginV3OneBuild*>(p->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
}
nvinfer1::IPluginV3OneRuntime* runtime_api(nvinfer1::IPluginV3* p) {
  return static_cast<nvinfer1::IPluginV3OneRuntime*>(
      p->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
}

nvinfer1::Dims make_dims(int64_t const* dims, int32_t nb) {
  nvinfer1::Dims d{};
  d.nbDims = nb;
  for (int32_t i = 0; i < nb; ++i) d.d[i] = dims[i];
  return d;
}

nvinfer1::DynamicPluginTensorDesc dyn_desc(int32_t type, int32_t format, nvinfer1::Dims dims) {
  nvinfer1::DynamicPluginTensorDesc d{};
  d.desc.type = static_cast<DataType>(type);
  d.desc.format = static_cast<TensorFormat>(format);
  d.desc.dims = dims;
  d.min = d.max = d.opt = dims;
  return d;
}

}  // namespace

extern "C" {

// Loads the library; 0 on success, else -1 with h_last_error() saying why.
int h_load(char const* path) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    gLastError = std::string("dlopen: ") + dlerror();
    return -1;
  }
  using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(nvinfer1::ILoggerFinder*);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
  auto set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
  if (get_creators == nullptr || set_logger_finder == nullptr) {
    gLastError = "getCreators/setLoggerFinder not exported";
    return -1;
  }
  set_logger_finder(&gFinder);
  int32_t n = 0;
  nvinfer1::IPluginCreatorInterface* const* creators = get_creators(n);
  for (int32_t i = 0; i < n; ++i) {
    nvinfer1::InterfaceInfo info = creators[i]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0) {
      gCreators.push_back(static_cast<nvinfer1::IPluginCreatorV3One*>(creators[i]));
    }
  }
  gCreator = gCreators.empty() ? nullptr : gCreators.front();
  if (gCreator == nullptr) {
    gLastError = "no IPluginCreatorV3One among " + std::to_string(n) + " creators";
    return -1;
  }
  return 0;
}

char const* h_last_error() { return gLastError.c_str(); }

// Messages the plugin logged at warning or error severity since the last call (then cleared).
char const* h_take_log() {
  static std::string taken;
  std::lock_guard<std::mutex> lock(gFinder.logger.mutex);
  taken = gFinder.logger.messages;
  gFinder.logger.messages.clear();
  return taken.c_str();
}

char const* h_creator_name() { return gCreator->getPluginName(); }
char const* h_creator_version() { return gCreator->getPluginVersion(); }
char const* h_creator_namespace() { return gCreator->getPluginNamespace(); }
int h_creator_field_count() { return gCreator->getFieldNames()->nbFields; }

// The creator named `name`, or null.
void* h_find_creator(char const* name) {
  for (nvinfer1::IPluginCreatorV3One* c : gCreators) {
    if (std::strcmp(c->getPluginName(), name) == 0) return c;
  }
  return nullptr;
}

// A creator's getFieldNames(): up to `max` names and types; returns how many it lists.
int h_creator_fields(void* creator, char const** names, int* types, int max) {
  nvinfer1::PluginFieldCollection const* fc = static_cast<nvinfer1::IPluginCreatorV3One*>(creator)->getFieldNames();
  for (int i = 0; i < fc->nbFields && i < max; ++i) {
    names[i] = fc->fields[i].name;
    types[i] = static_cast<int>(fc->fields[i].type);
  }
  return fc->nbFields;
}

// createPlugin on `creator` with fields given as parallel arrays; returns the plugin or null.
void* h_create_with(void* creator, int phase, int nfields, char const* const* names, int const* types,
                    void const* const* data, int const* lengths) {
  std::vector<nvinfer1::PluginField> fields;
  for (int i = 0; i < nfields; ++i) {
    fields.emplace_back(names[i], data[i], static_cast<nvinfer1::PluginFieldType>(types[i]), lengths[i]);
  }
  nvinfer1::PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  return static_cast<nvinfer1::IPluginCreatorV3One*>(creator)->createPlugin(
      "harness", &fc, static_cast<nvinfer1::TensorRTPhase>(phase));
}

void h_destroy(void* plugin) { delete static_cast<nvinfer1::IPluginV3*>(plugin); }

char const* h_plugin_name(void* plugin) {
  auto* core = static_cast<nvinfer1::IPluginV3OneCore*>(
      static_cast<nvinfer1::IPluginV3*>(plugin)->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
  return core->getPluginName();
}

// Serializes the plugin's fields and rebuilds it from them in the RUNTIME phase (deserialization),
// with the creator of the plugin's name.
void* h_roundtrip(void* plugin) {
  auto* p = static_cast<nvinfer1::IPluginV3*>(plugin);
  nvinfer1::PluginFieldCollection const* fc = runtime_api(p)->getFieldsToSerialize();
  nvinfer1::IPluginCreatorV3One* creator = creator_of(p);
  if (fc == nullptr || creator == nullptr) return nullptr;
  return creator->createPlugin("harness_runtime", fc, nvinfer1::TensorRTPhase::kRUNTIME);
}

// getFieldsToSerialize(): up to `max` fields as parallel arrays; returns how many there are (-1: null).
int h_serialized_fields(void* plugin, char const** names, int* types, int* lengths, void const** data, int max) {
  nvinfer1::PluginFieldCollection const* fc =
      runtime_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getFieldsToSerialize();
  if (fc == nullptr) return -1;
  for (int i = 0; i < fc->nbFields && i < max; ++i) {
    names[i] = fc->fields[i].name;
    types[i] = static_cast<int>(fc->fields[i].type);
    lengths[i] = fc->fields[i].length;
    data[i] = fc->fields[i].data;
  }
  return fc->nbFields;
}

void* h_clone(void* plugin) { return static_cast<nvinfer1::IPluginV3*>(plugin)->clone(); }

int h_num_outputs(void* plugin) { return build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getNbOutputs(); }

int h_supports(void* plugin, int pos, int in_type, int in_format, int out_type, int out_format) {
  nvinfer1::Dims dims = make_dims(nullptr, 0);
  nvinfer1::DynamicPluginTensorDesc io[2] = {dyn_desc(in_type, in_format, dims), dyn_desc(out_type, out_format, dims)};
  return build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->supportsFormatCombination(pos, io, 1, 1) ? 1 : 0;
}

// The output type for an input type, or -1 when refused.
int h_output_type(void* plugin, int in_type) {
  DataType in = static_cast<DataType>(in_type);
  DataType out{};
  int rc = build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getOutputDataTypes(&out, 1, &in, 1);
  return rc == 0 ? static_cast<int>(out) : -1;
}

int h_configure(void* plugin, int type, int64_t const* dims, int nb) {
  nvinfer1::DynamicPluginTensorDesc in = dyn_desc(type, 0, make_dims(dims, nb));
  nvinfer1::DynamicPluginTensorDesc out = in;
  return build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->configurePlugin(&in, 1, &out, 1);
}

int h_workspace(void* plugin) {
  nvinfer1::DynamicPluginTensorDesc d = dyn_desc(0, 0, make_dims(nullptr, 0));
  return static_cast<int>(build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getWorkspaceSize(&d, 1, &d, 1));
}

// The runtime path: attachToContext (a per-context clone), onShapeChange, enqueue on `stream`.
int h_enqueue(void* plugin, int type, int64_t const* dims, int nb, void const* input, void* output, void* stream) {
  auto* p = static_cast<nvinfer1::IPluginV3*>(plugin);
  nvinfer1::IPluginV3* attached = runtime_api(p)->attachToContext(nullptr);
  if (attached == nullptr) return -2;
  nvinfer1::PluginTensorDesc desc{};
  desc.type = static_cast<DataType>(type);
  desc.format = TensorFormat::kLINEAR;
  desc.dims = make_dims(dims, nb);
  desc.scale = 1.0f;
  nvinfer1::IPluginV3OneRuntime* rt = runtime_api(attached);
  int rc = rt->onShapeChange(&desc, 1, &desc, 1);
  if (rc == 0) rc = rt->enqueue(&desc, &desc, &input, &output, nullptr, static_cast<cudaStream_t>(stream));
  delete attached;
  return rc;
}

// --- any number of inputs and outputs ---------------------------------------------------------------

int h_supports_io(void* plugin, int pos, int nb_in, int nb_out, int const* types, int const* formats) {
  std::vector<nvinfer1::DynamicPluginTensorDesc> io = dyn_descs(nb_in + nb_out, types, nullptr, nullptr);
  for (int i = 0; i < nb_in + nb_out; ++i) io[i].desc.format = static_cast<TensorFormat>(formats[i]);
  return build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->supportsFormatCombination(pos, io.data(), nb_in, nb_out)
             ? 1
             : 0;
}

int h_output_types_io(void* plugin, int nb_in, int const* in_types, int nb_out, int* out_types) {
  std::vector<DataType> in(nb_in), out(nb_out, static_cast<DataType>(-1));
  for (int i = 0; i < nb_in; ++i) in[i] = static_cast<DataType>(in_types[i]);
  int rc =
      build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getOutputDataTypes(out.data(), nb_out, in.data(), nb_in);
  for (int i = 0; i < nb_out; ++i) out_types[i] = static_cast<int>(out[i]);
  return rc;
}

// getOutputShapes for inputs of the given dims (-1: not a build-time constant); the outputs' ranks
// and dims come back the same way.
int h_output_shapes_io(void* plugin, int nb_in, int const* ranks, int64_t const* dims, int nb_out, int* out_ranks,
                       int64_t* out_dims) {
  ExprBuilder builder;
  std::vector<nvinfer1::DimsExprs> in(nb_in), out(nb_out);
  for (int i = 0; i < nb_in; ++i) {
    in[i].nbDims = ranks[i];
    for (int j = 0; j < ranks[i]; ++j) in[i].d[j] = builder.impl.make(dims[i * kMaxRank + j]);
  }
  int rc = build_api(static_cast<nvinfer1::IPluginV3*>(plugin))
               ->getOutputShapes(in.data(), nb_in, nullptr, 0, out.data(), nb_out, builder);
  for (int i = 0; rc == 0 && i < nb_out; ++i) {
    out_ranks[i] = out[i].nbDims;
    for (int j = 0; j < out[i].nbDims; ++j) {
      out_dims[i * kMaxRank + j] =
          out[i].d[j] != nullptr && out[i].d[j]->isConstant() ? out[i].d[j]->getConstantValue() : -1;
    }
  }
  return rc;
}

int h_configure_io(void* plugin, int nb_in, int const* in_types, int const* in_ranks, int64_t const* in_dims,
                   int nb_out, int const* out_types, int const* out_ranks, int64_t const* out_dims) {
  std::vector<nvinfer1::DynamicPluginTensorDesc> in = dyn_descs(nb_in, in_types, in_ranks, in_dims);
  std::vector<nvinfer1::DynamicPluginTensorDesc> out = dyn_descs(nb_out, out_types, out_ranks, out_dims);
  return build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->configurePlugin(in.data(), nb_in, out.data(), nb_out);
}

int64_t h_workspace_io(void* plugin, int nb_in, int const* in_types, int const* in_ranks, int64_t const* in_dims,
                       int nb_out, int const* out_types, int const* out_ranks, int64_t const* out_dims) {
  std::vector<nvinfer1::DynamicPluginTensorDesc> in = dyn_descs(nb_in, in_types, in_ranks, in_dims);
  std::vector<nvinfer1::DynamicPluginTensorDesc> out = dyn_descs(nb_out, out_types, out_ranks, out_dims);
  return static_cast<int64_t>(
      build_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getWorkspaceSize(in.data(), nb_in, out.data(), nb_out));
}

// The runtime path (attachToContext, onShapeChange, enqueue on `stream`) for any inputs and outputs.
int h_enqueue_io(void* plugin, int nb_in, int const* in_types, int const* in_ranks, int64_t const* in_dims, int nb_out,
                 int const* out_types, int const* out_ranks, int64_t const* out_dims, void const* const* inputs,
                 void* const* outputs, void* workspace, void* stream) {
  auto* p = static_cast<nvinfer1::IPluginV3*>(plugin);
  nvinfer1::IPluginV3* attached = runtime_api(p)->attachToContext(nullptr);
  if (attached == nullptr) return -2;
  std::vector<nvinfer1::PluginTensorDesc> in = descs(nb_in, in_types, in_ranks, in_dims);
  std::vector<nvinfer1::PluginTensorDesc> out = descs(nb_out, out_types, out_ranks, out_dims);
  nvinfer1::IPluginV3OneRuntime* rt = runtime_api(attached);
  int rc = rt->onShapeChange(in.data(), nb_in, out.data(), nb_out);
  if (rc == 0) rc = rt->enqueue(in.data(), out.data(), inputs, outputs, workspace, static_cast<cudaStream_t>(stream));
  delete attached;
  return rc;
}

}  // extern "C"
