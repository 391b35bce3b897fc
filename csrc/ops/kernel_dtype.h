// The kernels' dtype tag (csrc/kernels/mish_launch.h) for a tensor's scalar type.
#pragma once

#include <c10/util/Exception.h>

#include <string>

#include "../kernels/mish_launch.h"
#include "mish_common.h"

namespace mish::ops {

inline DType to_kernel_dtype(at::ScalarType s, const char* op) {
  switch (s) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK_TYPE(false, std::string(op) + ": unsupported dtype " + dtype_name(s));
  }
}

}  // namespace mish::ops
