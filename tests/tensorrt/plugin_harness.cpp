// Test harness for the TorchMish plugin library without a TensorRT runtime: it loads the library
// the way IPluginRegistry::loadLibrary does (dlopen + getCreators + setLoggerFinder), and exposes
// the plugin's lifecycle to Python (ctypes) one call at a time. Built by tests/tensorrt/conftest.py
// with g++ on every machine: it is host code that needs only the CUDA headers (for cudaStream_t). On a
// GPU, enqueue gets its device pointers and stream from torch; the kernels are in the plugin library.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstring>
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
nvinfer1::IPluginCreatorV3One* gCreator = nullptr;
std::string gLastError;

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
      gCreator = static_cast<nvinfer1::IPluginCreatorV3One*>(creators[i]);
    }
  }
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

// createPlugin with fields given as parallel arrays; returns the plugin or null.
void* h_create(int phase, int nfields, char const* const* names, int const* types, void const* const* data,
               int const* lengths) {
  std::vector<nvinfer1::PluginField> fields;
  for (int i = 0; i < nfields; ++i) {
    fields.emplace_back(names[i], data[i], static_cast<nvinfer1::PluginFieldType>(types[i]), lengths[i]);
  }
  nvinfer1::PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  return gCreator->createPlugin("harness", &fc, static_cast<nvinfer1::TensorRTPhase>(phase));
}

void h_destroy(void* plugin) { delete static_cast<nvinfer1::IPluginV3*>(plugin); }

char const* h_plugin_name(void* plugin) {
  auto* core = static_cast<nvinfer1::IPluginV3OneCore*>(
      static_cast<nvinfer1::IPluginV3*>(plugin)->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
  return core->getPluginName();
}

// Serializes the plugin's fields and rebuilds it from them in the RUNTIME phase (deserialization).
void* h_roundtrip(void* plugin) {
  nvinfer1::PluginFieldCollection const* fc =
      runtime_api(static_cast<nvinfer1::IPluginV3*>(plugin))->getFieldsToSerialize();
  if (fc == nullptr) return nullptr;
  return gCreator->createPlugin("harness_runtime", fc, nvinfer1::TensorRTPhase::kRUNTIME);
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

}  // extern "C"
