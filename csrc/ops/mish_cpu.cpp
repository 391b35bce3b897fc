// CPU implementation of the mish ops: the shared scalar math in a parallel loop.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../kernels/mish_math.h"
#include "mish_common.h"

namespace mish::ops {
namespace {

// Elementwise work is cheap per element: only split across threads for large tensors.
constexpr int64_t kGrain = 32768;

void forward_kernel(const at::Tensor& x, const at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mish_cpu", [&] {
    using M = Math<scalar_t>;
    using C = typename M::Compute;
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = static_cast<scalar_t>(M::forward(static_cast<C>(in[i])));
    });
  });
}

void backward_kernel(const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "mish_backward_cpu", [&] {
    using M = Math<scalar_t>;
    using C = typename M::Compute;
    const scalar_t* g = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = grad_input.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        out[i] = static_cast<scalar_t>(static_cast<C>(g[i]) * M::derivative(static_cast<C>(in[i])));
      }
    });
  });
}

at::Tensor mish_cpu(const at::Tensor& self) { return forward(self, forward_kernel); }
void mish_cpu_(const at::Tensor& self) { forward_(self, forward_kernel); }
at::Tensor mish_backward_cpu(const at::Tensor& grad_output, const at::Tensor& self) {
  return backward(grad_output, self, backward_kernel);
}

// Composed from ATen ops in the compute type (the CUDA kernel fuses the same steps).
at::Tensor mish_backward_affine_cpu(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& mean,
                                    const at::Tensor& invstd, const at::Tensor& weight, const at::Tensor& bias) {
  check_affine(grad_output, self, mean, invstd, weight, bias);
  std::vector<int64_t> shape(self.dim(), 1);
  shape[1] = -1;
  const at::ScalarType c = compute_type(self.scalar_type());
  // The CUDA kernel's layouts: contiguous or 4-d channels-last kept, any other made contiguous.
  const bool keep = self.is_contiguous() || (self.dim() == 4 && self.is_contiguous(at::MemoryFormat::ChannelsLast));
  const at::Tensor x = keep ? self : self.contiguous();
  const at::Tensor y = (x.to(c) - mean.view(shape)) * invstd.view(shape) * weight.view(shape) + bias.view(shape);
  return mish_backward_cpu(grad_output.to(c), y).to(self.scalar_type());  // in y's layout, which is x's
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CPU, m) {
  m.impl("mish", &mish_cpu);
  m.impl("mish_", &mish_cpu_);
  m.impl("_mish_backward", &mish_backward_cpu);
  m.impl("_mish_backward_affine", &mish_backward_affine_cpu);
}

}  // namespace mish::ops
