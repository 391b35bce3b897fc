// Framework-free entry points of the Mish CUDA kernels: raw pointers, an element count, a stream.
// The torch op (csrc/ops) and the TensorRT plugin (csrc/trt) both call these, so both run the same
// kernel. Nothing here depends on libtorch or TensorRT.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mish {

enum class DType : int32_t { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

const char* dtype_name(DType dtype);

// y[i] = mish(x[i]) for i < n. y may equal x (in place); otherwise the ranges must not overlap.
// Returns the launch error (cudaSuccess for n == 0). Asynchronous on `stream`.
cudaError_t launch_forward(DType dtype, const void* x, void* y, int64_t n, cudaStream_t stream);

// grad_x[i] = grad_y[i] * mish'(x[i]). grad_x may equal grad_y or x.
cudaError_t launch_backward(DType dtype, const void* grad_y, const void* x, void* grad_x, int64_t n,
                            cudaStream_t stream);

// launch_backward with grad_y in rows (the gradient of one input of a concatenation, a slice of
// the concatenation's): the element grad_x[i] pairs with is grad_y[(i / row) * row_stride + i % row].
// n must be a multiple of row and below 2^31; row_stride may be anything >= 0 (0: a broadcast row).
cudaError_t launch_backward_rows(DType dtype, const void* grad_y, int64_t row, int64_t row_stride, const void* x,
                                 void* grad_x, int64_t n, cudaStream_t stream);

// The backward pass of mish(batch_norm(x)) with the BatchNorm output recomputed on the fly:
// grad_x[i] = grad_y[i] * mish'(y), y = (x[i] - mean[c]) * invstd[c] * weight[c] + bias[c], where
// c = (i / inner) % channels is the channel of element i of a dense (N, C, inner...) tensor
// (contiguous: inner = the spatial size) or of a channels-last one (inner = 1). The per-channel
// arrays hold `channels` values of the compute type: float, or double for kFloat64. grad_x may
// equal grad_y.
struct ChannelAffine {
  const void* mean;
  const void* invstd;
  const void* weight;
  const void* bias;
  int64_t channels;
  int64_t inner;
};
cudaError_t launch_backward_affine(DType dtype, const void* grad_y, const void* x, ChannelAffine affine, void* grad_x,
                                   int64_t n, cudaStream_t stream);

}  // namespace mish
