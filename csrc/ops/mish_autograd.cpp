// Autograd for mish and _mish_backward, in C++ so that a call costs what a native op costs (a
// Python autograd kernel's host time per call doubled the time of small launches).
//
// mish, on every training step, has a hand-written graph node (MishBackward) that saves only its
// input: backward recomputes mish'(x) in one kernel; forward-mode AD is handled inline.
// _mish_backward is itself differentiable (double backward, e.g. gradient penalties) through a
// torch::autograd::Function, which is simpler and off the hot path; its second derivative is
// composed from ATen ops.
//
// Compiled autograd (torch._dynamo.config.compiled_autograd, used with DDP/FSDP under compile) asks
// each graph node for compiled_args (what to specialize on and which tensors to lift) and
// apply_with_saved; MishBackward answers the way PyTorch's generated nodes do (compiled_node.h).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <mutex>
#include <string>

#include "autograd_node.h"
#include "compiled_node.h"

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

// MishBackward's computation as a pure function of (grads, needs_input_grad, x): what both eager
// apply() and compiled autograd run.
variable_list mish_backward_apply(const variable_list& grads, bool needs_grad_x, const at::Tensor& x) {
  variable_list grad_inputs(1);
  if (needs_grad_x && grads[0].defined()) {
    grad_inputs[0] = mish_backward_op(grads[0], x);  // differentiable: double backward
  }
  return grad_inputs;
}

// Compiled autograd's entry: packed = {needs_input_grad[0], x} (MishBackward::apply_with_saved).
variable_list mish_backward_functional(const variable_list& grads, const std::vector<c10::IValue>& packed) {
  return mish_backward_apply(grads, packed.at(0).toBool(), packed.at(1).toTensor());
}

// mish's graph node, written the way PyTorch's generated autograd code writes its own: a Node that
// saves x. torch::autograd::Function::apply does the same job generically with more host time per
// call (about twice F.mish's), which eager training pays on every layer.
struct MishBackward : public torch::autograd::Node {
  torch::autograd::SavedVariable self_;

  std::string name() const override { return "MishBackward"; }

  variable_list apply(variable_list&& grads) override {
    const std::lock_guard<std::mutex> lock(mutex_);
    return mish_backward_apply(grads, task_should_compute_output(0), self_.unpack());
  }

  void release_variables() override {
    const std::lock_guard<std::mutex> lock(mutex_);
    self_.reset_data();
  }

  void compiled_args(CompiledNodeArgs& args) const override { args.collect(self_, /*is_output=*/false); }

  variable_list apply_with_saved(const variable_list& grads, SwapSavedVariables& saved) override {
    saved.before(self_);
    static const CompiledFunctional functional("torch_mish_MishBackward", &mish_backward_functional,
                                               {c10::BoolType::get(), c10::TensorType::get()});
    variable_list result = functional.call(*this, saved, grads, {task_should_compute_output(0), self_.unpack()});
    saved.after(self_);
    return result;
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

at::Tensor mish_autograd(const at::Tensor& x) {
  at::Tensor y;
  {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    y = mish_op(x);
  }
  // Forward-mode AD (torch.func.jvp, torch.autograd.forward_ad): tangent_y = mish'(x) * tangent_x.
  if (torch::autograd::isFwGradDefined(x)) {
    const at::Tensor tangent = x._fw_grad(/*level=*/0);
    y._set_fw_grad(mish_backward_op(tangent, x._fw_primal(/*level=*/0)), /*level=*/0, /*is_inplace_op=*/false);
  }
  // Without a graph to record (inference, backward passes without create_graph): no autograd work.
  if (torch::autograd::compute_requires_grad(x)) {
    auto node = make_node<MishBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    node->self_ = torch::autograd::SavedVariable(x, /*is_output=*/false);
    torch::autograd::set_history(y, node);
  }
  return y;
}

at::Tensor mish_backward_autograd(const at::Tensor& grad, const at::Tensor& x) {
  if (!torch::autograd::compute_requires_grad(grad, x)) {
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
