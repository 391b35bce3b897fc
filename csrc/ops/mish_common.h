// Argument checks and memory-layout handling shared by the CPU and CUDA implementations.
//
// The kernels see flat arrays, so every tensor they touch must be non-overlapping and dense with
// the output's strides. The output follows the input's memory format (empty_like preserves
// channels_last and permuted layouts), as F.mish does; other layouts are densified by one copy.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>

#include <string>
#include <utility>

namespace mish::ops {

// "[4, 5]". Formatted here rather than by streaming IntArrayRef into TORCH_CHECK, which crashed
// (SIGSEGV) in this error path against torch 2.11.
inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// The Python spelling ("torch.int32"), which is what users wrote.
inline std::string dtype_name(at::ScalarType s) { return "torch." + std::string(c10::getDtypeNames(s).first); }

inline void check_floating(const at::Tensor& t, const char* op, const char* arg) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, op, ": expected '", arg,
                   "' to be float32, float64, float16 or bfloat16, got ", dtype_name(s));
}

// A tensor with `like`'s strides holding t's values: t itself when it already has them.
inline at::Tensor dense_like(const at::Tensor& t, const at::Tensor& like) {
  if (t.is_non_overlapping_and_dense() && t.strides() == like.strides()) return t;
  return at::empty_like(like).copy_(t);
}

// An uninitialized tensor laid out like t. For a dense t that is empty_like's answer, reached with one
// dispatcher call instead of empty_like's two: small calls are bound by host time.
inline at::Tensor empty_like_dense(const at::Tensor& t) {
  if (t.is_non_overlapping_and_dense()) return at::empty_strided(t.sizes(), t.strides(), t.options());
  return at::empty_like(t);
}

// kernel(in, out) computes over in.numel() elements of two dense tensors with equal strides.
template <typename Kernel>
at::Tensor forward(const at::Tensor& self, Kernel kernel) {
  check_floating(self, "mish", "self");
  at::Tensor out = empty_like_dense(self);
  if (self.is_non_overlapping_and_dense() && self.strides() == out.strides()) {
    kernel(self, out);
  } else {
    out.copy_(self);
    kernel(out, out);
  }
  return out;
}

template <typename Kernel>
void forward_(const at::Tensor& self, Kernel kernel) {
  check_floating(self, "mish_", "self");
  at::assert_no_internal_overlap(self);
  if (self.is_non_overlapping_and_dense()) {
    kernel(self, self);
  } else {
    self.copy_(forward(self, kernel));
  }
}

// kernel(grad_output, self, grad_input) over three dense tensors with equal strides. A grad_output
// laid out otherwise is first offered to strided(grad_output, self, grad_input), which returns
// whether it computed grad_input reading grad_output in place; if not, grad_output is copied dense.
template <typename Kernel, typename StridedKernel>
at::Tensor backward(const at::Tensor& grad_output, const at::Tensor& self, Kernel kernel, StridedKernel strided) {
  check_floating(self, "_mish_backward", "self");
  TORCH_CHECK_TYPE(grad_output.scalar_type() == self.scalar_type(),
                   "_mish_backward: expected 'grad_output' to have the dtype of 'self' (",
                   dtype_name(self.scalar_type()), "), got ", dtype_name(grad_output.scalar_type()));
  TORCH_CHECK(grad_output.device() == self.device(), "_mish_backward: expected 'grad_output' on ", self.device(),
              " like 'self', got ", grad_output.device());
  TORCH_CHECK(grad_output.sizes() == self.sizes(), "_mish_backward: expected 'grad_output' of shape ", shape_str(self),
              " like 'self', got ", shape_str(grad_output));
  at::Tensor grad_input = empty_like_dense(self);
  const at::Tensor x = dense_like(self, grad_input);
  const bool dense = grad_output.is_non_overlapping_and_dense() && grad_output.strides() == grad_input.strides();
  if (dense || !strided(grad_output, x, grad_input)) kernel(dense_like(grad_output, grad_input), x, grad_input);
  return grad_input;
}

template <typename Kernel>
at::Tensor backward(const at::Tensor& grad_output, const at::Tensor& self, Kernel kernel) {
  return backward(grad_output, self, kernel,
                  [](const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; });
}

// _mish_backward_affine: the compute type of its per-channel arguments, and the argument checks. Messages are
// built as std::string (see shape_str).
inline at::ScalarType compute_type(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

inline void check_affine(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& mean,
                         const at::Tensor& invstd, const at::Tensor& weight, const at::Tensor& bias) {
  const std::string op = "_mish_backward_affine: ";
  check_floating(self, "_mish_backward_affine", "self");
  TORCH_CHECK(self.dim() >= 2, op + "expected 'self' with a channel dimension (dim 1), got shape " + shape_str(self));
  TORCH_CHECK_TYPE(grad_output.scalar_type() == self.scalar_type(),
                   op + "expected 'grad_output' to have the dtype of 'self' (" + dtype_name(self.scalar_type()) +
                       "), got " + dtype_name(grad_output.scalar_type()));
  TORCH_CHECK(grad_output.sizes() == self.sizes(), op + "expected 'grad_output' of shape " + shape_str(self) +
                                                       " like 'self', got " + shape_str(grad_output));
  TORCH_CHECK(grad_output.device() == self.device(), op + "expected 'grad_output' on " + self.device().str() +
                                                         " like 'self', got " + grad_output.device().str());
  const at::ScalarType c = compute_type(self.scalar_type());
  for (const auto& [t, name] : {std::pair<const at::Tensor&, std::string>{mean, "mean"},
                                {invstd, "invstd"},
                                {weight, "weight"},
                                {bias, "bias"}}) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == self.size(1), op + "expected '" + name + "' of shape [" +
                                                               std::to_string(self.size(1)) +
                                                               "] (the channels of 'self'), got " + shape_str(t));
    TORCH_CHECK_TYPE(t.scalar_type() == c, op + "expected '" + name + "' to be " + dtype_name(c) + " for 'self' of " +
                                               dtype_name(self.scalar_type()) + ", got " + dtype_name(t.scalar_type()));
    TORCH_CHECK(t.device() == self.device(),
                op + "expected '" + name + "' on " + self.device().str() + " like 'self', got " + t.device().str());
  }
}

}  // namespace mish::ops
