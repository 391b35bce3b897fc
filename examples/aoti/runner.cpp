// Runs AOTInductor packages (.pt2) from C++, without Python: registers torch_mish's operators by
// loading its library, loads each package, checks or saves its outputs, and times it with CUDA events.
//
//   aoti_runner --lib torch_mish/_C.so --package model.pt2 [--package other.pt2 ...]
//               --shape 16,3,640,640 --dtype fp16 [--channels-last] [--input in.bin] [--output out.bin]
//               [--warmup 10] [--iters 50]
//   (--package also takes a bare model library, data/aotinductor/<name>/*.so of an extracted package)
//
// Operator registration: a package that calls torch.ops.mish.mish through AOTInductor's proxy
// executor finds the operator in the dispatcher by name, so the library that registers it
// (TORCH_LIBRARY in torch_mish/_C.so) must be loaded before the package runs. _C.so is also a Python
// extension module: it references Python's C API only inside PyInit__C, which a C++ program never
// calls, so it is opened with lazy binding.
//
// Prints one JSON object per package on stdout. --input: raw bytes of the input tensor in the given
// dtype, contiguous NCHW (made channels-last after loading with --channels-last); --output: every
// output's raw bytes, contiguous, one after the other (one file per package: ".<i>" is appended
// when there are several). Build: examples/aoti/build.sh.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/inductor/aoti_runner/model_container_runner_cuda.h>

namespace {

struct Options {
  std::vector<std::string> libs;
  std::vector<std::string> packages;
  std::vector<int64_t> shape;
  at::ScalarType dtype = at::kHalf;
  bool channels_last = false;
  std::string input;
  std::string output;
  int warmup = 10;
  int iters = 50;
};

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
  }
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    shape.push_back(std::stoll(item));
  }
  return shape;
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp16") return at::kHalf;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp32") return at::kFloat;
  throw std::invalid_argument("--dtype must be fp16, bf16 or fp32, got " + name);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--lib") o.libs.push_back(value());
    else if (arg == "--package") o.packages.push_back(value());
    else if (arg == "--shape") o.shape = parse_shape(value());
    else if (arg == "--dtype") o.dtype = parse_dtype(value());
    else if (arg == "--channels-last") o.channels_last = true;
    else if (arg == "--input") o.input = value();
    else if (arg == "--output") o.output = value();
    else if (arg == "--warmup") o.warmup = std::stoi(value());
    else if (arg == "--iters") o.iters = std::stoi(value());
    else throw std::invalid_argument("unknown argument " + arg);
  }
  if (o.packages.empty() || o.shape.empty()) throw std::invalid_argument("--package and --shape are required");
  return o;
}

at::Tensor make_input(const Options& o) {
  auto options = at::TensorOptions().dtype(o.dtype);
  at::Tensor x;
  if (!o.input.empty()) {
    std::ifstream f(o.input, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + o.input);
    x = at::empty(o.shape, options);
    f.read(static_cast<char*>(x.data_ptr()), static_cast<std::streamsize>(x.nbytes()));
    if (f.gcount() != static_cast<std::streamsize>(x.nbytes())) throw std::runtime_error(o.input + " is too short");
  } else {
    at::manual_seed(0);
    x = at::randn(o.shape, options.dtype(at::kFloat)).to(o.dtype);
  }
  x = x.to(at::kCUDA);
  if (o.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  return x;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

void write_outputs(const std::vector<at::Tensor>& outs, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  for (const auto& t : outs) {
    at::Tensor c = t.contiguous().cpu();
    f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  }
}

std::string run_package(const Options& o, const std::string& package, const at::Tensor& x, size_t index) {
  using clock = std::chrono::steady_clock;
  const c10::DeviceIndex dev = 0;
  auto t0 = clock::now();
  // A package (.pt2) goes through the package loader; a bare model library (.so, from an extracted
  // package, its kernels' .cubin files beside it) straight to the CUDA container runner.
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> pkg;
  std::unique_ptr<torch::inductor::AOTIModelContainerRunnerCuda> so_runner;
  const bool is_so = package.size() > 3 && package.compare(package.size() - 3, 3, ".so") == 0;
  if (is_so) {
    const std::string dir = package.substr(0, package.find_last_of('/') + 1);
    so_runner = std::make_unique<torch::inductor::AOTIModelContainerRunnerCuda>(package, 1, "cuda", dir);
  } else {
    pkg = std::make_unique<torch::inductor::AOTIModelPackageLoader>(package);
  }
  struct Run {
    torch::inductor::AOTIModelPackageLoader* pkg;
    torch::inductor::AOTIModelContainerRunnerCuda* so;
    std::vector<at::Tensor> run(const std::vector<at::Tensor>& in, void* stream) {
      return pkg ? pkg->run(in, stream) : so->run(in, stream);
    }
  } loader{pkg.get(), so_runner.get()};
  double load_s = std::chrono::duration<double>(clock::now() - t0).count();

  auto stream = c10::cuda::getCurrentCUDAStream(dev);
  void* stream_handle = static_cast<void*>(stream.stream());
  std::vector<at::Tensor> inputs{x};
  std::vector<at::Tensor> outs = loader.run(inputs, stream_handle);  // first call: output check
  check_cuda(cudaStreamSynchronize(stream.stream()), "first run");
  if (!o.output.empty()) {
    write_outputs(outs, o.packages.size() == 1 ? o.output : o.output + "." + std::to_string(index));
  }
  outs.clear();
  for (int i = 0; i < o.warmup; ++i) loader.run(inputs, stream_handle);
  check_cuda(cudaStreamSynchronize(stream.stream()), "warm-up");

  c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
  const int64_t before = c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].current;
  std::vector<cudaEvent_t> starts(o.iters), ends(o.iters);
  for (int i = 0; i < o.iters; ++i) {
    check_cuda(cudaEventCreate(&starts[i]), "cudaEventCreate");
    check_cuda(cudaEventCreate(&ends[i]), "cudaEventCreate");
  }
  for (int i = 0; i < o.iters; ++i) {
    check_cuda(cudaEventRecord(starts[i], stream.stream()), "cudaEventRecord");
    loader.run(inputs, stream_handle);
    check_cuda(cudaEventRecord(ends[i], stream.stream()), "cudaEventRecord");
  }
  check_cuda(cudaStreamSynchronize(stream.stream()), "timed runs");
  std::vector<double> ms(o.iters);
  for (int i = 0; i < o.iters; ++i) {
    float t = 0;
    check_cuda(cudaEventElapsedTime(&t, starts[i], ends[i]), "cudaEventElapsedTime");
    ms[i] = t;
    cudaEventDestroy(starts[i]);
    cudaEventDestroy(ends[i]);
  }
  const int64_t peak = c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].peak;

  std::ostringstream json;
  json << "{\"package\": \"" << package << "\", \"load_s\": " << load_s << ", \"ms_median\": " << percentile(ms, 0.5)
       << ", \"ms_p10\": " << percentile(ms, 0.1) << ", \"ms_p90\": " << percentile(ms, 0.9)
       << ", \"transient_peak_bytes\": " << (peak - before) << ", \"iters\": " << o.iters << "}";
  return json.str();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    for (const auto& lib : o.libs) {
      // Lazy: _C.so's only Python references are inside PyInit__C. Global: its symbols stay visible.
      if (dlopen(lib.c_str(), RTLD_LAZY | RTLD_GLOBAL) == nullptr) {
        std::cerr << "dlopen(" << lib << ") failed: " << dlerror() << "\n";
        return 2;
      }
    }
    at::Tensor x = make_input(o);
    for (size_t i = 0; i < o.packages.size(); ++i) {
      std::cout << run_package(o, o.packages[i], x, i) << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "aoti_runner: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
