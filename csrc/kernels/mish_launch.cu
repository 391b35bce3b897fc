// Mish CUDA kernels: one elementwise kernel template for forward and backward.
//
// Memory-bound: 16-byte vector loads when every pointer is 16-byte aligned (a scalar path
// otherwise), kUnroll vectors per thread, one tile per block (a grid-stride loop beyond
// 2^31 - 1 tiles), 64-bit indices throughout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "mish_launch.h"
#include "mish_math.h"

namespace mish {
namespace {

constexpr int kThreads = 256;
// 16-byte vectors per thread (of each input), each count the fastest measured for its kernel. The
// one-input (forward) kernel takes one, as ATen's vectorized kernels do: more made a copy and ReLU
// slower as much as Mish. The two-input (backward) kernels take two, faster than one or four.
// BatchNormMish's backward kernel keeps the four it was measured with; the scalar path, for unaligned
// pointers, 4 elements.
constexpr int kBinaryUnroll = 2;
constexpr int kAffineUnroll = 4;
template <int kWidth, bool kBinary>
constexpr int kUnroll = kWidth == 1 ? 4 : (kBinary ? kBinaryUnroll : 1);

// Storage <-> compute conversions. half/bfloat16 go through float.
template <typename C, typename T>
__device__ __forceinline__ C to_compute(T v) {
  return static_cast<C>(v);
}
template <typename C>
__device__ __forceinline__ C to_compute(__half v) {
  return static_cast<C>(__half2float(v));
}
// bfloat16 is the top half of a float: widen with a shift. (The conversion instruction made the
// backward kernel slower: it competes with exp and rcp for the same pipe.)
template <typename C>
__device__ __forceinline__ C to_compute(__nv_bfloat16 v) {
  return static_cast<C>(__uint_as_float(static_cast<unsigned>(__bfloat16_as_ushort(v)) << 16));
}

template <typename T, typename C>
__device__ __forceinline__ T from_compute(C v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_compute<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_compute<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

struct ForwardFn {
  template <typename T>
  __device__ __forceinline__ T operator()(T x, T /*unused*/) const {
    using C = typename Math<T>::Compute;
    return from_compute<T>(Math<T>::forward(to_compute<C>(x)));
  }
};

struct BackwardFn {
  template <typename T>
  __device__ __forceinline__ T operator()(T grad, T x) const {
    using C = typename Math<T>::Compute;
    return from_compute<T>(to_compute<C>(grad) * Math<T>::derivative(to_compute<C>(x)));
  }
};

template <typename T, int kWidth>
struct alignas(sizeof(T) * kWidth) Vec {
  T v[kWidth];
};

// Where `a`'s vector i is: the dense case.
struct DenseIndex {
  __device__ __forceinline__ int64_t operator()(int64_t i) const { return i; }
};

// n / d for n, d < 2^31 by a multiply-high and a shift (Granlund and Montgomery, "Division by
// invariant integers using multiplication", 1994): a 64-bit division per vector would cost more
// than the Mish arithmetic on it.
struct FastDivider {
  uint32_t d, m, s;
  explicit FastDivider(uint32_t divisor) : d(divisor), m(0), s(0) {
    while ((uint64_t{1} << s) < d) ++s;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// Rows of `row` vectors, `stride` vectors apart: vector i is at (i / row) * stride + i % row. The
// gradient of one input of a concatenation has this layout (a slice of the concatenation's).
struct RowIndex {
  FastDivider row;
  int64_t stride;
  __device__ __forceinline__ int64_t operator()(int64_t i) const {
    const uint32_t q = row.div(static_cast<uint32_t>(i));
    return static_cast<int64_t>(q) * stride + (static_cast<uint32_t>(i) - q * row.d);
  }
};

// out[i] = fn(a[index(i)], b[i]) for i < n; b is only read when kBinary. kWidth elements per access.
// With a RowIndex, n is a multiple of kWidth (no scalar tail) and the vector count is below 2^31.
template <typename T, int kWidth, bool kBinary, typename Fn, typename AIndex = DenseIndex>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(Fn fn, const T* a, const T* b, T* out, int64_t n, AIndex a_index = {}) {
  using V = Vec<T, kWidth>;
  const int64_t nvec = n / kWidth;
  const V* va = reinterpret_cast<const V*>(a);
  const V* vb = reinterpret_cast<const V*>(b);
  V* vo = reinterpret_cast<V*>(out);

  const int64_t tile = static_cast<int64_t>(kThreads) * kUnroll<kWidth, kBinary>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * tile;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * tile + threadIdx.x; base < nvec; base += stride) {
    V ra[kUnroll<kWidth, kBinary>], rb[kUnroll<kWidth, kBinary>];
#pragma unroll
    for (int u = 0; u < kUnroll<kWidth, kBinary>; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * kThreads;
      if (i < nvec) {
        ra[u] = va[a_index(i)];
        if constexpr (kBinary) rb[u] = vb[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll<kWidth, kBinary>; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * kThreads;
      if (i < nvec) {
        V r;
#pragma unroll
        for (int k = 0; k < kWidth; ++k) r.v[k] = fn(ra[u].v[k], kBinary ? rb[u].v[k] : ra[u].v[k]);
        vo[i] = r;
      }
    }
  }

  // The n % kWidth trailing elements, one per thread of the first block.
  if (std::is_same_v<AIndex, DenseIndex> && blockIdx.x == 0) {
    const int64_t i = nvec * kWidth + threadIdx.x;
    if (threadIdx.x < n - nvec * kWidth) out[i] = fn(a[i], kBinary ? b[i] : a[i]);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Blocks for `vectors` accesses, `per_thread` per thread: one tile per block. A grid capped at a few
// blocks per SM (grid-stride loop) measured slower; the kernels' loop only serves more than
// 2^31 - 1 tiles.
unsigned grid_blocks(int64_t vectors, int per_thread) {
  const int64_t tile = int64_t{kThreads} * per_thread;
  const int64_t tiles = (vectors + tile - 1) / tile;
  constexpr int64_t kMaxBlocks = 2147483647;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(tiles, kMaxBlocks)));
}

template <typename T, bool kBinary, typename Fn>
cudaError_t launch(Fn fn, const void* a_raw, const void* b_raw, void* out_raw, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const T* a = static_cast<const T*>(a_raw);
  const T* b = static_cast<const T*>(b_raw);
  T* out = static_cast<T*>(out_raw);

  constexpr int kWidth = 16 / sizeof(T);
  const bool vectorize = aligned16(a) && aligned16(out) && (!kBinary || aligned16(b));
  const unsigned blocks =
      vectorize ? grid_blocks(n / kWidth, kUnroll<kWidth, kBinary>) : grid_blocks(n, kUnroll<1, kBinary>);
  if (vectorize) {
    elementwise_kernel<T, kWidth, kBinary><<<blocks, kThreads, 0, stream>>>(fn, a, b, out, n);
  } else {
    elementwise_kernel<T, 1, kBinary><<<blocks, kThreads, 0, stream>>>(fn, a, b, out, n);
  }
  return cudaGetLastError();
}

// The backward kernel with grad_y (a) in rows: see RowIndex.
template <typename T>
cudaError_t launch_backward_rows(const void* a_raw, int64_t row, int64_t row_stride, const void* b_raw, void* out_raw,
                                 int64_t n, cudaStream_t stream) {
  if (n < 0 || row <= 0 || row_stride < 0 || n % row != 0 || n >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const T* a = static_cast<const T*>(a_raw);
  const T* b = static_cast<const T*>(b_raw);
  T* out = static_cast<T*>(out_raw);
  constexpr int kWidth = 16 / sizeof(T);
  const bool vectorize =
      aligned16(a) && aligned16(b) && aligned16(out) && row % kWidth == 0 && row_stride % kWidth == 0;
  const int width = vectorize ? kWidth : 1;
  const RowIndex index{FastDivider(static_cast<uint32_t>(row / width)), row_stride / width};
  const unsigned blocks = vectorize ? grid_blocks(n / kWidth, kUnroll<kWidth, true>) : grid_blocks(n, kUnroll<1, true>);
  if (vectorize) {
    elementwise_kernel<T, kWidth, true><<<blocks, kThreads, 0, stream>>>(BackwardFn{}, a, b, out, n, index);
  } else {
    elementwise_kernel<T, 1, true><<<blocks, kThreads, 0, stream>>>(BackwardFn{}, a, b, out, n, index);
  }
  return cudaGetLastError();
}

// One vector of kWidth elements per access as in elementwise_kernel. The channel of a vector's first
// element takes one division; the rest step from it (an add and a compare per element). When the
// channel is the innermost dimension and `channels` is a multiple of kWidth (kChannelVectors), a
// vector's elements are kWidth consecutive channels, and the per-channel values load as vectors too:
// in bfloat16 at 512 channels, scalar loads of the four arrays made this kernel compute-bound.
template <typename T, int kWidth, bool kChannelVectors>
__global__ void __launch_bounds__(kThreads)
    backward_affine_kernel(const T* grad, const T* x, ChannelAffine affine, T* out, int64_t n) {
  using C = typename Math<T>::Compute;
  using V = Vec<T, kWidth>;
  using CV = Vec<C, kWidth>;
  const C* mean = static_cast<const C*>(affine.mean);
  const C* invstd = static_cast<const C*>(affine.invstd);
  const C* weight = static_cast<const C*>(affine.weight);
  const C* bias = static_cast<const C*>(affine.bias);
  const int64_t channels = affine.channels;
  const int64_t inner = affine.inner;
  const auto grad_of = [](T g, T v, C m, C s, C w, C b) {
    return from_compute<T>(to_compute<C>(g) * Math<T>::derivative((to_compute<C>(v) - m) * s * w + b));
  };
  const int64_t nvec = n / kWidth;
  const V* vg = reinterpret_cast<const V*>(grad);
  const V* vx = reinterpret_cast<const V*>(x);
  V* vo = reinterpret_cast<V*>(out);
  const int64_t tile = static_cast<int64_t>(kThreads) * kAffineUnroll;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * tile;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * tile + threadIdx.x; base < nvec; base += stride) {
    V rg[kAffineUnroll], rx[kAffineUnroll];
#pragma unroll
    for (int u = 0; u < kAffineUnroll; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * kThreads;
      if (i < nvec) {
        rg[u] = vg[i];
        rx[u] = vx[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kAffineUnroll; ++u) {
      const int64_t i = base + static_cast<int64_t>(u) * kThreads;
      if (i >= nvec) continue;
      V o;
      if constexpr (kChannelVectors) {
        const int64_t c = (i * kWidth) % channels;
        const CV m = *reinterpret_cast<const CV*>(mean + c), s = *reinterpret_cast<const CV*>(invstd + c);
        const CV w = *reinterpret_cast<const CV*>(weight + c), b = *reinterpret_cast<const CV*>(bias + c);
#pragma unroll
        for (int k = 0; k < kWidth; ++k) o.v[k] = grad_of(rg[u].v[k], rx[u].v[k], m.v[k], s.v[k], w.v[k], b.v[k]);
      } else {
        const int64_t first = i * kWidth;
        const int64_t q = first / inner;
        int64_t r = first - q * inner;
        int64_t c = q % channels;
#pragma unroll
        for (int k = 0; k < kWidth; ++k) {
          o.v[k] =
              grad_of(rg[u].v[k], rx[u].v[k], __ldg(mean + c), __ldg(invstd + c), __ldg(weight + c), __ldg(bias + c));
          if (++r == inner) {
            r = 0;
            c = c + 1 == channels ? 0 : c + 1;
          }
        }
      }
      vo[i] = o;
    }
  }
  if (blockIdx.x == 0) {
    const int64_t i = nvec * kWidth + threadIdx.x;
    if (threadIdx.x < n - nvec * kWidth) {
      const int64_t c = (i / inner) % channels;
      out[i] = grad_of(grad[i], x[i], mean[c], invstd[c], weight[c], bias[c]);
    }
  }
}

template <typename T>
cudaError_t launch_affine(const void* grad_raw, const void* x_raw, ChannelAffine affine, void* out_raw, int64_t n,
                          cudaStream_t stream) {
  if (n < 0 || affine.channels <= 0 || affine.inner <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  using C = typename Math<T>::Compute;
  const T* grad = static_cast<const T*>(grad_raw);
  const T* x = static_cast<const T*>(x_raw);
  T* out = static_cast<T*>(out_raw);
  constexpr int kWidth = 16 / sizeof(T);
  const bool vectorize = aligned16(grad) && aligned16(x) && aligned16(out);
  const auto aligned_channels = [&](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % (sizeof(C) * kWidth) == 0;
  };
  const bool channel_vectors = vectorize && affine.inner == 1 && affine.channels % kWidth == 0 &&
                               aligned_channels(affine.mean) && aligned_channels(affine.invstd) &&
                               aligned_channels(affine.weight) && aligned_channels(affine.bias);
  const unsigned blocks = vectorize ? grid_blocks(n / kWidth, kAffineUnroll) : grid_blocks(n, kAffineUnroll);
  if (channel_vectors) {
    backward_affine_kernel<T, kWidth, true><<<blocks, kThreads, 0, stream>>>(grad, x, affine, out, n);
  } else if (vectorize) {
    backward_affine_kernel<T, kWidth, false><<<blocks, kThreads, 0, stream>>>(grad, x, affine, out, n);
  } else {
    backward_affine_kernel<T, 1, false><<<blocks, kThreads, 0, stream>>>(grad, x, affine, out, n);
  }
  return cudaGetLastError();
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "unknown";
}

cudaError_t launch_forward(DType dtype, const void* x, void* y, int64_t n, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return launch<float, false>(ForwardFn{}, x, nullptr, y, n, stream);
    case DType::kFloat64: return launch<double, false>(ForwardFn{}, x, nullptr, y, n, stream);
    case DType::kFloat16: return launch<__half, false>(ForwardFn{}, x, nullptr, y, n, stream);
    case DType::kBFloat16: return launch<__nv_bfloat16, false>(ForwardFn{}, x, nullptr, y, n, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_backward(DType dtype, const void* grad_y, const void* x, void* grad_x, int64_t n,
                            cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return launch<float, true>(BackwardFn{}, grad_y, x, grad_x, n, stream);
    case DType::kFloat64: return launch<double, true>(BackwardFn{}, grad_y, x, grad_x, n, stream);
    case DType::kFloat16: return launch<__half, true>(BackwardFn{}, grad_y, x, grad_x, n, stream);
    case DType::kBFloat16: return launch<__nv_bfloat16, true>(BackwardFn{}, grad_y, x, grad_x, n, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_backward_rows(DType dtype, const void* grad_y, int64_t row, int64_t row_stride, const void* x,
                                 void* grad_x, int64_t n, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return launch_backward_rows<float>(grad_y, row, row_stride, x, grad_x, n, stream);
    case DType::kFloat64: return launch_backward_rows<double>(grad_y, row, row_stride, x, grad_x, n, stream);
    case DType::kFloat16: return launch_backward_rows<__half>(grad_y, row, row_stride, x, grad_x, n, stream);
    case DType::kBFloat16: return launch_backward_rows<__nv_bfloat16>(grad_y, row, row_stride, x, grad_x, n, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace mish

namespace mish {

cudaError_t launch_backward_affine(DType dtype, const void* grad_y, const void* x, ChannelAffine affine, void* grad_x,
                                   int64_t n, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32: return launch_affine<float>(grad_y, x, affine, grad_x, n, stream);
    case DType::kFloat64: return launch_affine<double>(grad_y, x, affine, grad_x, n, stream);
    case DType::kFloat16: return launch_affine<__half>(grad_y, x, affine, grad_x, n, stream);
    case DType::kBFloat16: return launch_affine<__nv_bfloat16>(grad_y, x, affine, grad_x, n, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace mish
