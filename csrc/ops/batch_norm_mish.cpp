// batch_norm_mish: training-mode BatchNorm followed by Mish, keeping one activation for backward.
//
// BatchNorm then Mish, as two ops, saves BatchNorm's input x (for BatchNorm's gradient) and its
// output y (for Mish's). This op saves x and the per-channel batch statistics only: the backward
// pass computes grad * mish'(y) with y recomputed per element inside the kernel
// (_mish_backward_affine), and hands the result to ATen's BatchNorm backward. The BatchNorm work
// itself is ATen's (_batch_norm_with_update and
// batch_norm_backward, which pick cuDNN or the native kernels as nn.BatchNorm2d does), and Mish is
// torch.ops.mish, so no arithmetic here is new.
//
// The graph node is written like MishBackward (mish_autograd.cpp) rather than as a Python
// autograd.Function: with a hundred such layers per step, a Python node's host time made a training
// step slower than the unfused layers'.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <array>
#include <mutex>
#include <string>
#include <tuple>

#include "autograd_node.h"
#include "compiled_node.h"
#include "mish_common.h"

namespace mish::ops {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

void mish_inplace_op(const at::Tensor& x) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mish::mish_", "").typed<void(const at::Tensor&)>();
  op.call(x);
}

at::Tensor mish_backward_affine_op(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mean,
                                   const at::Tensor& invstd, const at::Tensor& weight, const at::Tensor& bias) {
  using T = const at::Tensor&;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mish::_mish_backward_affine", "")
                       .typed<at::Tensor(T, T, T, T, T, T)>();
  return op.call(grad, x, mean, invstd, weight, bias);
}

// Messages are built as std::string: streaming integers or IntArrayRef into TORCH_CHECK crashed
// (SIGSEGV) in the error path against torch 2.11 (see shape_str in mish_common.h).
void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& running_mean,
                  const at::Tensor& running_var) {
  TORCH_CHECK(x.dim() >= 2,
              "batch_norm_mish: expected 'input' with a channel dimension (dim 1), got shape " + shape_str(x));
  const int64_t channels = x.size(1);
  const std::array<std::pair<const at::Tensor*, std::string>, 4> per_channel = {
      {{&weight, "weight"}, {&bias, "bias"}, {&running_mean, "running_mean"}, {&running_var, "running_var"}}};
  for (const auto& [t, name] : per_channel) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == channels,
                "batch_norm_mish: expected '" + name + "' of shape [" + std::to_string(channels) +
                    "] (the channels of 'input', dim 1), got " + shape_str(*t));
    TORCH_CHECK(t->device() == x.device(), "batch_norm_mish: expected '" + name + "' on " + x.device().str() +
                                               " like 'input', got " + t->device().str());
  }
  TORCH_CHECK(
      x.numel() > channels,
      "batch_norm_mish: expected more than 1 value per channel when training, got input of shape " + shape_str(x));
}

struct Forward {
  at::Tensor output, mean, invstd, reserve;
};

Forward forward_impl(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
                     at::Tensor& running_var, double momentum, double eps) {
  check_inputs(x, weight, bias, running_mean, running_var);
  Forward out;
  std::tie(out.output, out.mean, out.invstd, out.reserve) =
      at::_batch_norm_with_update(x, weight, bias, running_mean, running_var, momentum, eps);
  mish_inplace_op(out.output);  // the BatchNorm output is ours alone: overwrite it, nothing keeps it
  return out;
}

// BatchNormMishBackward's computation as a function of its inputs: what eager apply() and compiled
// autograd both run. reserve is cuDNN's reserve space, which its backward may overwrite: copy_reserve
// hands it a copy, for graphs kept for another backward (retain_graph=True), as PyTorch's own
// BatchNorm node does.
variable_list batch_norm_mish_backward_apply(const variable_list& grads, const std::array<bool, 3>& mask,
                                             const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                             const at::Tensor& mean, const at::Tensor& invstd,
                                             const at::Tensor& reserve, bool copy_reserve, double eps) {
  TORCH_CHECK(!at::GradMode::is_enabled(),
              "batch_norm_mish does not support double backward (create_graph=True); use nn.BatchNorm2d "
              "followed by torch_mish.Mish for that");
  variable_list grad_inputs(3);
  if (!grads[0].defined()) {
    return grad_inputs;
  }
  // The kernel recomputes the BatchNorm output per element; the per-channel values go in the compute
  // type (no-ops for the usual float32 parameters and statistics).
  const at::ScalarType c = compute_type(x.scalar_type());
  const at::Tensor grad_y = mish_backward_affine_op(grads[0], x, mean.to(c), invstd.to(c), weight.to(c), bias.to(c));
  std::tie(grad_inputs[0], grad_inputs[1], grad_inputs[2]) = at::batch_norm_backward(
      grad_y, x, weight, {}, {}, mean, invstd, /*update=*/true, eps, mask, copy_reserve ? reserve.clone() : reserve);
  for (size_t i = 0; i < mask.size(); ++i) {
    if (!mask[i]) grad_inputs[i] = at::Tensor();  // cuDNN computes all three whatever the mask
  }
  return grad_inputs;
}

// Compiled autograd's entry: packed = {mask[0..2], x, weight, bias, mean, invstd, reserve, eps}. It
// always copies the reserve space: whether the graph will be kept is not known when it is captured
// (on the CPU the reserve space is empty).
variable_list batch_norm_mish_backward_functional(const variable_list& grads, const std::vector<c10::IValue>& p) {
  const std::array<bool, 3> mask = {p.at(0).toBool(), p.at(1).toBool(), p.at(2).toBool()};
  return batch_norm_mish_backward_apply(grads, mask, p.at(3).toTensor(), p.at(4).toTensor(), p.at(5).toTensor(),
                                        p.at(6).toTensor(), p.at(7).toTensor(), p.at(8).toTensor(),
                                        /*copy_reserve=*/true, p.at(9).toDouble());
}

struct BatchNormMishBackward : public torch::autograd::Node {
  SavedVariable input_, weight_, bias_, mean_, invstd_, reserve_;
  double eps_ = 0.0;
  // False once the engine says this is the graph's last backward: no copy of the reserve space then.
  bool retain_variables_ = true;

  void will_release_variables() override { retain_variables_ = false; }

  std::string name() const override { return "BatchNormMishBackward"; }

  variable_list apply(variable_list&& grads) override {
    const std::lock_guard<std::mutex> lock(mutex_);
    const std::array<bool, 3> mask = {task_should_compute_output(0), task_should_compute_output(1),
                                      task_should_compute_output(2)};
    return batch_norm_mish_backward_apply(grads, mask, input_.unpack(), weight_.unpack(), bias_.unpack(),
                                          mean_.unpack(), invstd_.unpack(), reserve_.unpack(), retain_variables_, eps_);
  }

  void release_variables() override {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable* v : {&input_, &weight_, &bias_, &mean_, &invstd_, &reserve_}) {
      v->reset_data();
    }
  }

  void compiled_args(CompiledNodeArgs& args) const override {
    for (const SavedVariable* v : {&input_, &weight_, &bias_, &mean_, &invstd_, &reserve_}) {
      args.collect(*v, /*is_output=*/false);
    }
    args.collect(eps_);
  }

  variable_list apply_with_saved(const variable_list& grads, SwapSavedVariables& saved) override {
    for (SavedVariable* v : {&input_, &weight_, &bias_, &mean_, &invstd_, &reserve_}) {
      saved.before(*v);
    }
    saved.before(eps_);
    static const CompiledFunctional functional(
        "torch_mish_BatchNormMishBackward", &batch_norm_mish_backward_functional,
        {c10::BoolType::get(), c10::BoolType::get(), c10::BoolType::get(), c10::TensorType::get(),
         c10::TensorType::get(), c10::TensorType::get(), c10::TensorType::get(), c10::TensorType::get(),
         c10::TensorType::get(), c10::FloatType::get()});
    variable_list result = functional.call(
        *this, saved, grads,
        {task_should_compute_output(0), task_should_compute_output(1), task_should_compute_output(2), input_.unpack(),
         weight_.unpack(), bias_.unpack(), mean_.unpack(), invstd_.unpack(), reserve_.unpack(), eps_});
    for (SavedVariable* v : {&input_, &weight_, &bias_, &mean_, &invstd_, &reserve_}) {
      saved.after(*v);
    }
    saved.after(eps_);
    return result;
  }
};

// Below autograd (inference tensors, no-grad dispatch): BatchNorm with running-stat update, then Mish.
at::Tensor batch_norm_mish(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           at::Tensor& running_mean, at::Tensor& running_var, double momentum, double eps) {
  return forward_impl(x, weight, bias, running_mean, running_var, momentum, eps).output;
}

at::Tensor batch_norm_mish_autograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                    at::Tensor& running_mean, at::Tensor& running_var, double momentum, double eps) {
  TORCH_CHECK(!torch::autograd::isFwGradDefined(x) && !torch::autograd::isFwGradDefined(weight) &&
                  !torch::autograd::isFwGradDefined(bias),
              "batch_norm_mish does not support forward-mode AD; use nn.BatchNorm2d followed by torch_mish.Mish");
  Forward out;
  {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    out = forward_impl(x, weight, bias, running_mean, running_var, momentum, eps);
  }
  torch::autograd::impl::bump_version(running_mean);  // what the skipped ADInplaceOrView key would do
  torch::autograd::impl::bump_version(running_var);
  if (torch::autograd::compute_requires_grad(x, weight, bias)) {
    auto node = make_node<BatchNormMishBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(x, weight, bias));
    node->input_ = SavedVariable(x, /*is_output=*/false);
    node->weight_ = SavedVariable(weight, false);
    node->bias_ = SavedVariable(bias, false);
    node->mean_ = SavedVariable(out.mean, false);
    node->invstd_ = SavedVariable(out.invstd, false);
    node->reserve_ = SavedVariable(out.reserve, false);
    node->eps_ = eps;
    torch::autograd::set_history(out.output, node);
  }
  return out.output;
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CompositeExplicitAutograd, m) { m.impl("batch_norm_mish", &batch_norm_mish); }

TORCH_LIBRARY_IMPL(mish, Autograd, m) { m.impl("batch_norm_mish", &batch_norm_mish_autograd); }

}  // namespace mish::ops
