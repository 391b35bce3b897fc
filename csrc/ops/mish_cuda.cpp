// CUDA implementation of the mish ops: argument handling here, the kernels in csrc/kernels.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "../kernels/mish_launch.h"
#include "kernel_dtype.h"
#include "mish_common.h"

namespace mish::ops {
namespace {

void forward_kernel(const at::Tensor& x, const at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  C10_CUDA_CHECK(launch_forward(to_kernel_dtype(x.scalar_type(), "mish"), x.const_data_ptr(), y.mutable_data_ptr(),
                                x.numel(), c10::cuda::getCurrentCUDAStream()));
}

void backward_kernel(const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(x.device());
  C10_CUDA_CHECK(launch_backward(to_kernel_dtype(x.scalar_type(), "mish"), grad_output.const_data_ptr(),
                                 x.const_data_ptr(), grad_input.mutable_data_ptr(), x.numel(),
                                 c10::cuda::getCurrentCUDAStream()));
}

// g as rows of like's memory order (launch_backward_rows): {row, row_stride} in elements, or nothing
// when g is laid out otherwise. The gradient of one input of a concatenation is such a slice of the
// concatenation's: along C of an NCHW cat, N rows of C_i*H*W; along C of a channels-last cat, N*H*W
// rows of C_i.
std::optional<std::pair<int64_t, int64_t>> rows_of(const at::Tensor& g, const at::Tensor& like) {
  std::vector<int64_t> dims;  // like's dims from the innermost in memory; size-1 dims have no say
  for (int64_t d = 0; d < like.dim(); ++d)
    if (like.size(d) != 1) dims.push_back(d);
  std::sort(dims.begin(), dims.end(), [&](int64_t a, int64_t b) { return like.stride(a) < like.stride(b); });
  int64_t row = 1;
  size_t k = 0;
  for (; k < dims.size() && g.stride(dims[k]) == row; ++k) row *= g.size(dims[k]);
  if (k == dims.size()) return std::make_pair(row, row);  // dense, strides differing in size-1 dims only
  const int64_t row_stride = g.stride(dims[k]);
  for (int64_t expected = row_stride; k < dims.size(); expected *= g.size(dims[k]), ++k)
    if (g.stride(dims[k]) != expected) return std::nullopt;
  return std::make_pair(row, row_stride);
}

bool backward_rows_kernel(const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& grad_input) {
  if (x.numel() >= (int64_t{1} << 31)) return false;
  const auto rows = rows_of(grad_output, grad_input);
  if (!rows) return false;
  const c10::cuda::CUDAGuard guard(x.device());
  C10_CUDA_CHECK(launch_backward_rows(to_kernel_dtype(x.scalar_type(), "mish"), grad_output.const_data_ptr(),
                                      rows->first, rows->second, x.const_data_ptr(), grad_input.mutable_data_ptr(),
                                      x.numel(), c10::cuda::getCurrentCUDAStream()));
  return true;
}

at::Tensor mish_cuda(const at::Tensor& self) { return forward(self, forward_kernel); }
void mish_cuda_(const at::Tensor& self) { forward_(self, forward_kernel); }
at::Tensor mish_backward_cuda(const at::Tensor& grad_output, const at::Tensor& self) {
  return backward(grad_output, self, backward_kernel, backward_rows_kernel);
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
  C10_CUDA_CHECK(launch_backward_affine(to_kernel_dtype(x.scalar_type(), "mish"), g.const_data_ptr(),
                                        x.const_data_ptr(), affine, grad_input.mutable_data_ptr(), x.numel(),
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
