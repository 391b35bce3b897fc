// Compiled autograd support for the hand-written graph nodes (MishBackward, BatchNormMishBackward).
//
// Under torch._dynamo.config.compiled_autograd the autograd engine does not call a node's apply().
// It asks the node for compiled_args (the saved tensors to lift into graph inputs and the values to
// specialize the cache on) and then calls apply_with_saved, with the saved tensors swapped for the
// tracer's proxies. PyTorch's generated nodes answer by recording one call to a pure function of
// (grads, packed saved values) into the captured graph; Dynamo then traces that function with fake
// tensors (our ops have fake kernels) and the backend compiles it. CompiledFunctional does the same
// for our nodes.
#pragma once

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/dynamo/compiled_autograd.h>

#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mish::ops {

using torch::dynamo::autograd::CompiledNodeArgs;
using torch::dynamo::autograd::SwapSavedVariables;

class CompiledFunctional {
 public:
  // fn(grads, packed) computes the node's gradients; schema gives the type of each packed value.
  CompiledFunctional(std::string name, torch::autograd::functional_apply_t fn, std::vector<at::TypePtr> schema)
      : name_(std::move(name)), fn_(std::move(fn)), schema_(std::move(schema)) {}

  // Records fn(grads, packed) into the graph being captured and returns the proxies of its outputs.
  torch::autograd::variable_list call(const torch::autograd::Node& node, SwapSavedVariables& saved,
                                      const torch::autograd::variable_list& grads,
                                      const std::vector<c10::IValue>& packed) const {
    const auto& py = torch::dynamo::autograd::getPyCompilerInterface();
    // Bound once per process: compiled autograd keeps bound functions in one global namespace.
    std::call_once(bound_, [&] { bound_name_ = py->bind_function(saved.get_py_compiler(), name_, fn_, schema_); });
    const c10::IValue output_metadata =
        torch::dynamo::autograd::IValuePacker<std::vector<std::optional<torch::autograd::InputMetadata>>>::pack(
            torch::dynamo::autograd::get_input_metadata(node.next_edges()));
    return py->call_function(saved.get_py_compiler(), "apply_functional", bound_name_, grads, packed, output_metadata);
  }

 private:
  std::string name_;
  torch::autograd::functional_apply_t fn_;
  std::vector<at::TypePtr> schema_;
  mutable std::once_flag bound_;
  mutable std::string bound_name_;
};

}  // namespace mish::ops
