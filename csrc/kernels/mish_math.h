// Mish math, written once for the CPU op, the CUDA op and the TensorRT plugin.
//
// mish(x) = x * tanh(softplus(x)). With n = e^x and N = n(n + 2):
//   tanh(softplus(x)) = N / (N + 2)
//   mish(x)  = x * N / (N + 2)          accurate for x <= -0.6 (no cancellation)
//            = x - 2x / (N + 2)         accurate for x >  -0.6 (x * N/(N+2) overflows to inf/inf)
//   mish'(x) = n * B / (N + 2)^2, B = (4 + 4x) + n * ((6 + 4x) + n * (4 + n))
// The B form keeps the cancellation near mish's minimum (x = -1.19, where mish' = 0) down to the
// rounding of e^x: 4 + 4x and 6 + 4x are exact there (Sterbenz).
// Past kLinearFrom the result is x (forward) and 1 (backward) to within half an ulp of the compute
// type, and N^2 would overflow float, so the formulas are never evaluated there.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define MISH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MISH_HOST_DEVICE inline
#endif

namespace mish {

template <typename T>
struct MathTraits;

template <>
struct MathTraits<float> {
  // 2 e^{-2x} < 2^-24 from x = 8.7 on; 20 keeps N^2 = e^{80} finite in float.
  static constexpr float kLinearFrom = 20.0f;
};

template <>
struct MathTraits<double> {
  // 2 e^{-2x} < 2^-53 from x = 18.7 on, and x * (1 - t^2) < 2^-53 from x = 21; N^2 = e^{160}.
  static constexpr double kLinearFrom = 40.0;
};

MISH_HOST_DEVICE float exp_(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}
MISH_HOST_DEVICE double exp_(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// C is float or double: half and bfloat16 are computed in float and rounded once by the caller.
template <typename C>
MISH_HOST_DEVICE C forward(C x) {
  if (x >= MathTraits<C>::kLinearFrom) return x;  // also +inf
  const C n = exp_(x);
  const C N = n * (n + C(2));
  if (x <= C(-0.6)) {
    // N == 0: e^x underflowed; the limit is -0 (and x = -inf would give -inf * 0 = NaN).
    return N == C(0) ? C(-0.0) : x * N / (N + C(2));
  }
  return x - C(2) * x / (N + C(2));  // NaN propagates through this branch
}

template <typename C>
MISH_HOST_DEVICE C derivative(C x) {
  if (x >= MathTraits<C>::kLinearFrom) return C(1);  // also +inf
  const C n = exp_(x);
  if (n == C(0)) return C(0);  // e^x underflowed (x = -inf included): the limit is 0
  const C N = n * (n + C(2));
  const C B = (C(4) + C(4) * x) + n * ((C(6) + C(4) * x) + n * (C(4) + n));
  const C D = N + C(2);
  return n * B / (D * D);
}

template <typename C>
MISH_HOST_DEVICE C backward(C grad, C x) {
  return grad * derivative(x);
}

}  // namespace mish

namespace mish {

// Compute precision for a storage type T: half and bfloat16 in float, rounded once on store.
template <typename T>
struct Compute {
  using Forward = float;
  using Backward = float;
};

template <>
struct Compute<double> {
  using Forward = double;
  using Backward = double;
};

// float backward runs in double: near mish's minimum (x = -1.19) mish'(x) -> 0 while its terms do not,
// and float arithmetic leaves ~1e-5 relative error there (the rounding of e^x alone is ~5e-9
// absolute). In double the fp32 result is correctly rounded or one ulp off. Memory-bound either way:
// see benchmarks/ for the cost.
template <>
struct Compute<float> {
  using Forward = float;
  using Backward = double;
};

}  // namespace mish
