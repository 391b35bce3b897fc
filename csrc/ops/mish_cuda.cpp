// CUDA implementation of the mish ops: argument handling here, the kernels in csrc/kernels.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>

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
    default: TORCH_CHECK_TYPE(false, "mish: unsupported dtype " + dtype_name(s));
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

at::Tensor mish_backward_affine_cuda(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& mean,
                                     const at::Tensor& invstd, const at::Tensor& weight, const at::Tensor& bias) {
  check_affine(grad_output, self, mean, invstd, weight, bias);
  const c10::cuda::CUDAGuard guard(self.device());
  // The kernel finds an element's channel from its index: (N, C, inner...) contiguous, or 4-d
  // channels-last (channel innermost). Any other layout is made contiguous first.
  const bool channels_last =
      self.dim() == 4 && !self.is_contiguous() && self.is_contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor x = channels_last || self.is_contiguous() ? self : self.contiguous();
  at::Tensor grad_input = empty_like_dense(x);
  if (x.numel() == 0) return grad_input;
  const int64_t channels = x.size(1);
  const at::Tensor g = dense_like(grad_output, grad_input);
  const std::array<at::Tensor, 4> per_channel = {mean.contiguous(), invstd.contiguous(), weight.contiguous(),
                                                 bias.contiguous()};
  const ChannelAffine affine{per_channel[0].const_data_ptr(),
                             per_channel[1].const_data_ptr(),
                             per_channel[2].const_data_ptr(),
                             per_channel[3].const_data_ptr(),
                             channels,
                             channels_last ? 1 : x.numel() / (x.size(0) * channels)};
  C10_CUDA_CHECK(launch_backward_affine(to_kernel_dtype(x.scalar_type()), g.const_data_ptr(), x.const_data_ptr(),
                                        affine, grad_input.mutable_data_ptr(), x.numel(),
                                        c10::cuda::getCurrentCUDAStream()));
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CUDA, m) {
  m.impl("mish", &mish_cuda);
  m.impl("mish_", &mish_cuda_);
  m.impl("_mish_backward", &mish_backward_cuda);
  m.impl("_mish_backward_affine", &mish_backward_affine_cuda);
}

}  // namespace mish::ops
