// CUDA implementation of the mish ops: argument handling here, the kernels in csrc/kernels.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../kernels/mish_launch.h"
#include "mish_common.h"

namespace mish::ops {
namespace {

DType to_kernel_dtype(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK_TYPE(false, "mish: unsupported dtype ", s);
  }
}

void forward_kernel(const at::Tensor& x, const at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  C10_CUDA_CHECK(launch_forward(to_kernel_dtype(x.scalar_type()), x.const_data_ptr(), y.mutable_data_ptr(), x.numel(),
                                c10::cuda::getCurrentCUDAStream()));
}

void backward_kernel(const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(x.device());
  C10_CUDA_CHECK(launch_backward(to_kernel_dtype(x.scalar_type()), grad_output.const_data_ptr(), x.const_data_ptr(),
                                 grad_input.mutable_data_ptr(), x.numel(), c10::cuda::getCurrentCUDAStream()));
}

at::Tensor mish_cuda(const at::Tensor& self) { return forward(self, forward_kernel); }
void mish_cuda_(const at::Tensor& self) { forward_(self, forward_kernel); }
at::Tensor mish_backward_cuda(const at::Tensor& grad_output, const at::Tensor& self) {
  return backward(grad_output, self, backward_kernel);
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CUDA, m) {
  m.impl("mish", &mish_cuda);
  m.impl("mish_", &mish_cuda_);
  m.impl("_mish_backward", &mish_backward_cuda);
}

}  // namespace mish::ops
