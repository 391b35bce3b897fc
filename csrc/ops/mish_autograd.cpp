// Autograd for mish and _mish_backward, in C++ so that a call costs what a native op costs (a
// Python autograd kernel added ~6 us per call, doubling the time of small launches).
//
// mish saves only its input: backward recomputes mish'(x) in one kernel. _mish_backward is itself
// differentiable (double backward, e.g. gradient penalties); its second derivative is composed
// from ATen ops since it is rarely on a hot path.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace mish::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor mish_op(const at::Tensor& x) {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mish::mish", "").typed<at::Tensor(const at::Tensor&)>();
  return op.call(x);
}

at::Tensor mish_backward_op(const at::Tensor& grad, const at::Tensor& x) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mish::_mish_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, x);
}

// mish''(x) = (1 - t^2) s (2 + x (1 - s) - 2 x t s), t = tanh(softplus(x)), s = sigmoid(x).
at::Tensor mish_second_derivative(const at::Tensor& x) {
  const at::Tensor t = at::tanh(at::softplus(x));
  const at::Tensor s = at::sigmoid(x);
  return (1 - t * t) * s * (2 + x * (1 - s) - 2 * x * t * s);
}

class MishFunction : public torch::autograd::Function<MishFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x});
    return mish_op(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    return {mish_backward_op(grads[0], x)};  // differentiable: goes through MishBackwardFunction
  }
};

class MishBackwardFunction : public torch::autograd::Function<MishBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& x) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({grad, x});
    return mish_backward_op(grad, x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = saved[0];
    const at::Tensor& x = saved[1];
    const at::Tensor& gg = grads[0];
    at::Tensor d_grad = ctx->needs_input_grad(0) ? mish_backward_op(gg, x) : at::Tensor();
    at::Tensor d_x = ctx->needs_input_grad(1) ? gg * grad * mish_second_derivative(x) : at::Tensor();
    return {d_grad, d_x};
  }
};

// Without a graph to record, skip Function::apply's bookkeeping: it is most of a small call's cost
// on the host (inference, and the forward passes timed in benchmarks/bench_kernels.py).
bool records_graph(const at::Tensor& t) { return at::GradMode::is_enabled() && t.requires_grad(); }

at::Tensor mish_autograd(const at::Tensor& x) {
  if (!records_graph(x)) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return mish_op(x);
  }
  return MishFunction::apply(x);
}

at::Tensor mish_backward_autograd(const at::Tensor& grad, const at::Tensor& x) {
  if (!records_graph(grad) && !records_graph(x)) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return mish_backward_op(grad, x);
  }
  return MishBackwardFunction::apply(grad, x);
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, Autograd, m) {
  m.impl("mish", &mish_autograd);
  m.impl("_mish_backward", &mish_backward_autograd);
}

}  // namespace mish::ops
