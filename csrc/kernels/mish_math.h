// Mish math, written once for the CPU op, the CUDA op and the TensorRT plugin.
//
// mish(x) = x * tanh(softplus(x)). With n = e^x and N = n(n + 2):
//   tanh(softplus(x)) = N / (N + 2)            (no cancellation anywhere)
//   mish(x)  = x * N / (N + 2)
//   mish'(x) = n * B / (N + 2)^2,  B = (4 + 4x) + n * ((6 + 4x) + n * (4 + n))
// Past kLinearFrom = 20, mish(x) = x and mish'(x) = 1 to within half an ulp of float (and N^2 would
// overflow float), so the formulas are only evaluated below it; this also sends +inf and NaN
// through unchanged. mish(-inf) = -0 (the limit), where x * N/(N+2) would be -inf * 0 = NaN.
//
// Precision per storage type (Math<T> below):
//  - half, bfloat16: float arithmetic with fast exp and division (error ~1e-6, far under half an
//    ulp of the storage type), rounded once on store.
//  - float: fast exp and division (forward relative error < 2e-6). The derivative vanishes at
//    mish's minimum (x = -1.19) while its terms do not: B cancels there, and float leaves ~1e-5
//    relative error. e^x and B are therefore computed in double, the rest in float.
//  - double: double throughout.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define MISH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MISH_HOST_DEVICE inline
#endif

namespace mish {

constexpr float kLinearFromF = 20.0f;
constexpr double kLinearFromD = 20.0;  // 2 e^{-2x} and 4x e^{-2x} < 2^-53 from x = 20.1: see tests

// e^x to a few ulp; kFast: the hardware approximation on the GPU (error grows with |x|: ~1e-6
// relative at |x| = 20, harmless for half types).
template <bool kFast>
MISH_HOST_DEVICE float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return kFast ? __expf(x) : ::expf(x);
#else
  return std::exp(x);
#endif
}

MISH_HOST_DEVICE double exp_d(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// a / b with b in [2, 2^126): a reciprocal and a multiply on the GPU (2 ulp), IEEE on the CPU.
MISH_HOST_DEVICE float div_f(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdividef(a, b);
#else
  return a / b;
#endif
}

template <bool kFastExp>
MISH_HOST_DEVICE float forward_f(float x) {
  if (!(x < kLinearFromF)) return x;  // x >= 20, +inf, NaN
  const float n = exp_f<kFastExp>(x);
  const float N = n * (n + 2.0f);
  const float t = div_f(N, N + 2.0f);
  return t == 0.0f ? -0.0f : x * t;  // t == 0: e^x underflowed (x = -inf included)
}

MISH_HOST_DEVICE double forward_d(double x) {
  if (!(x < kLinearFromD)) return x;
  const double n = exp_d(x);
  const double N = n * (n + 2.0);
  const double t = N / (N + 2.0);
  return t == 0.0 ? -0.0 : x * t;
}

// mish'(x) in float; used for half types.
template <bool kFastExp>
MISH_HOST_DEVICE float derivative_f(float x) {
  if (!(x < kLinearFromF)) return x != x ? x : 1.0f;
  const float n = exp_f<kFastExp>(x);
  if (n == 0.0f) return 0.0f;  // x = -inf included: the limit
  const float N = n * (n + 2.0f);
  const float B = (4.0f + 4.0f * x) + n * ((6.0f + 4.0f * x) + n * (4.0f + n));
  const float D = N + 2.0f;
  return div_f(n * B, D * D);
}

// mish'(x) for float32 to float32's accuracy: e^x and B in double (see the header comment).
MISH_HOST_DEVICE float derivative_f_precise(float x) {
  if (!(x < kLinearFromF)) return x != x ? x : 1.0f;
  const double xd = x;
  const double nd = exp_d(xd);
  // Below float's range mish' -> n (1 + x) (and 0 for x = -inf, where that product would be NaN).
  if (nd < 1e-38) return nd == 0.0 ? 0.0f : static_cast<float>(nd * (1.0 + xd));
  const double Bd = (4.0 + 4.0 * xd) + nd * ((6.0 + 4.0 * xd) + nd * (4.0 + nd));
  const float n = static_cast<float>(nd);
  const float D = n * (n + 2.0f) + 2.0f;
  return div_f(n * static_cast<float>(Bd), D * D);
}

MISH_HOST_DEVICE double derivative_d(double x) {
  if (!(x < kLinearFromD)) return x != x ? x : 1.0;
  const double n = exp_d(x);
  if (n == 0.0) return 0.0;
  const double N = n * (n + 2.0);
  const double B = (4.0 + 4.0 * x) + n * ((6.0 + 4.0 * x) + n * (4.0 + n));
  const double D = N + 2.0;
  return n * B / (D * D);
}

// Math<T>: compute type and functions for a storage type T (half and bfloat16: the primary template).
template <typename T>
struct Math {
  using Compute = float;
  MISH_HOST_DEVICE static float forward(float x) { return forward_f<true>(x); }
  MISH_HOST_DEVICE static float derivative(float x) { return derivative_f<true>(x); }
};

template <>
struct Math<float> {
  using Compute = float;
  // Fast exp: e^x's relative error (<= 8e-7 where |mish(x)| >= 1e-3, i.e. x > -9) stays inside the
  // 2e-6 contract; below, mish(x) < 1e-3 and the absolute bound 1e-7 holds with room.
  MISH_HOST_DEVICE static float forward(float x) { return forward_f<true>(x); }
  MISH_HOST_DEVICE static float derivative(float x) { return derivative_f_precise(x); }
};

template <>
struct Math<double> {
  using Compute = double;
  MISH_HOST_DEVICE static double forward(double x) { return forward_d(x); }
  MISH_HOST_DEVICE static double derivative(double x) { return derivative_d(x); }
};

}  // namespace mish
