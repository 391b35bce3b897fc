// Mish math, written once for the CPU op, the CUDA op and the TensorRT plugin.
//
// mish(x) = x * tanh(softplus(x)). With n = e^x and N = n(n + 2):
//   tanh(softplus(x)) = N / (N + 2)            (no cancellation anywhere)
//   mish(x)  = x * N / (N + 2)
//   mish'(x) = n * B / (N + 2)^2,  B = (4 + 4x) + n * ((6 + 4x) + n * (4 + n))
// Past kLinearFrom = 20, mish(x) = x and mish'(x) = 1 to within half an ulp of float (and N^2 would
// overflow float), so the formulas' results are only used below it; this also sends +inf and NaN
// through unchanged. Below kZeroBelow = -1000, e^x is 0 in every compute type: x is clamped there,
// so x = -inf yields the limits (mish -0, mish' -0) instead of -inf * 0 = NaN. Both special cases are
// selects after the arithmetic, not branches: in the GPU kernels a branch per element cost more
// instructions than the arithmetic it would skip.
//
// Precision per storage type (Math<T> below):
//  - half, bfloat16: float arithmetic with fast exp and division (error ~1e-6, far under half an
//    ulp of the storage type), rounded once on store.
//  - float: fast exp and division in the forward (relative error < 2e-6). The derivative vanishes
//    at mish's minimum x0 = -1.19 while the terms of B do not, so B is evaluated as
//    B(x) - B(x0) (see derivative_float32): float arithmetic, relative error < 1e-6 wherever
//    |mish'(x)| >= 1e-3 (below, where e^x may be subnormal, the 1e-7 absolute bound holds).
//  - double: double throughout.
#pragma once

#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define MISH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MISH_HOST_DEVICE inline
#endif

namespace mish {

// From kLinearFrom on, mish(x) = x and mish'(x) = 1. The terms dropped are 2e^{-2x} (relative, forward)
// and (4x - 2)e^{-2x} (derivative): under float's half ulp (2^-24) from x = 10.2; under double's (2^-53)
// from x = 18.7 (forward) and x = 20.56 (derivative). So at 20 the forward is correctly rounded in every
// type, and the float64 derivative is off by at most 3.3e-16 (1.5 ulp) in [20, 20.56), within the
// float64 contract (1e-14). tests/test_mish_math.py checks both against mpmath.
template <typename C>
constexpr C kLinearFrom = C(20);
template <typename C>
constexpr C kZeroBelow = C(-1000);

// e^x. kFast: the GPU's hardware approximation for float (relative error grows with |x|, ~1e-6 at
// |x| = 20: fine wherever the result is rounded to half types or only scales a forward value).
template <typename C, bool kFast>
MISH_HOST_DEVICE C exp_(C x) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<C, float>)
    return kFast ? __expf(x) : ::expf(x);
  else
    return ::exp(x);
#else
  return std::exp(x);
#endif
}

// a / b with b >= 2: for float on the GPU an approximate reciprocal (1 ulp) and a multiply. The
// reciprocal flushes subnormal results to zero, which needs b > 2^126: only where x >= 20, whose
// results the callers discard. (__fdividef rescales for that case: three more instructions.)
template <typename C>
MISH_HOST_DEVICE C divide(C a, C b) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<C, float>) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(b));
    return a * r;
  }
#endif
  return a / b;
}

template <typename C>
MISH_HOST_DEVICE C max_(C a, C b) {
#if defined(__CUDA_ARCH__)
  return ::fmax(a, b);
#else
  return std::fmax(a, b);
#endif
}

template <typename C, bool kFastExp>
MISH_HOST_DEVICE C forward(C x) {
  const C xc = max_(x, kZeroBelow<C>);
  const C n = exp_<C, kFastExp>(xc);
  const C N = n * (n + C(2));
  const C y = xc * divide(N, N + C(2));  // -0 where e^x underflows
  return x < kLinearFrom<C> ? y : x;     // x >= 20, +inf, NaN: x
}

// mish'(x) by the direct formula: for half types (float arithmetic) and double.
template <typename C, bool kFastExp>
MISH_HOST_DEVICE C derivative(C x) {
  const C xc = max_(x, kZeroBelow<C>);
  const C n = exp_<C, kFastExp>(xc);
  const C N = n * (n + C(2));
  const C B = (C(4) + C(4) * xc) + n * ((C(6) + C(4) * xc) + n * (C(4) + n));
  const C D = N + C(2);
  const C d = divide(n * B, D * D);
  return x < kLinearFrom<C> ? d : (x != x ? x : C(1));
}

// mish'(x) to float32's accuracy in float arithmetic. B has a single root, x0 (mish's minimum), and
// its terms are O(1) there, so the direct formula loses ~1e-5 relative accuracy near x0. With
// h = x - x0 and d = e^x - e^x0 (both carried exactly enough), B(x) - B(x0) factors as
//   B(x) = h (4 + 4 n0) + d ((6 + 4x) + 4 (n + n0) + n^2 + n n0 + n0^2),   n0 = e^x0,
// whose two terms have the same sign near x0: nothing cancels. d comes from expm1(h) = h + h^2/2 +
// ... for |h| < 1 (Taylor to h^11: truncation < 3e-9) and from n - n0 elsewhere, where it is large.
namespace root {
constexpr float kX0Hi = -0x1.31432cp+0f;   // x0 = -1.19243121451549521213758834... (mpmath),
constexpr float kX0Lo = -0x1.a25b08p-29f;  // split into two floats
constexpr float kN0 = 0x1.36c42p-2f;       // e^x0 = 0.303482535281528928821436...
}  // namespace root

MISH_HOST_DEVICE float expm1_taylor(float h) {
  float p = 1.0f / 39916800;  // 1/11!
  p = p * h + 1.0f / 3628800;
  p = p * h + 1.0f / 362880;
  p = p * h + 1.0f / 40320;
  p = p * h + 1.0f / 5040;
  p = p * h + 1.0f / 720;
  p = p * h + 1.0f / 120;
  p = p * h + 1.0f / 24;
  p = p * h + 1.0f / 6;
  p = p * h + 0.5f;
  p = p * h + 1.0f;
  return p * h;
}

MISH_HOST_DEVICE float derivative_float32(float x_in) {
  using namespace root;
  const float x = max_(x_in, kZeroBelow<float>);
  const float n = exp_<float, false>(x);
  const float h = (x - kX0Hi) - kX0Lo;  // x - kX0Hi is exact near x0 (Sterbenz)
  // Both candidates are computed (the Taylor series on a clamped h) and one is selected: no branch,
  // so warps whose lanes straddle |h| = 1 do not run both paths one after the other.
  const float taylor = kN0 * expm1_taylor(fminf(fmaxf(h, -1.0f), 1.0f));
  const float d = (h > -1.0f && h < 1.0f) ? taylor : n - kN0;
  const float B = h * (4.0f + 4.0f * kN0) + d * ((6.0f + 4.0f * x) + 4.0f * (n + kN0) + n * (n + kN0) + kN0 * kN0);
  const float D = n * (n + 2.0f) + 2.0f;
  const float d_mish = divide(n * B, D * D);
  return x_in < kLinearFrom<float> ? d_mish : (x_in != x_in ? x_in : 1.0f);
}

// Math<T>: compute type and functions for a storage type T (half and bfloat16: the primary template).
template <typename T>
struct Math {
  using Compute = float;
  MISH_HOST_DEVICE static float forward(float x) { return mish::forward<float, true>(x); }
  MISH_HOST_DEVICE static float derivative(float x) { return mish::derivative<float, true>(x); }
};

template <>
struct Math<float> {
  using Compute = float;
  // Fast exp: e^x's relative error (<= 8e-7 where |mish(x)| >= 1e-3, i.e. x > -9) stays inside the
  // 2e-6 contract; below, mish(x) < 1e-3 and the absolute bound 1e-7 holds with room.
  MISH_HOST_DEVICE static float forward(float x) { return mish::forward<float, true>(x); }
  MISH_HOST_DEVICE static float derivative(float x) { return derivative_float32(x); }
};

template <>
struct Math<double> {
  using Compute = double;
  MISH_HOST_DEVICE static double forward(double x) { return mish::forward<double, false>(x); }
  MISH_HOST_DEVICE static double derivative(double x) { return mish::derivative<double, false>(x); }
};

}  // namespace mish
