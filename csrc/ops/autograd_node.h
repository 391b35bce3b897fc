// Helpers for the hand-written autograd graph nodes (MishBackward, BatchNormMishBackward).
#pragma once

#include <torch/csrc/autograd/function.h>

#include <memory>
#include <type_traits>

namespace mish::ops {

// Graph nodes are held by std::shared_ptr up to torch 2.11 and by c10::intrusive_ptr in later
// releases; Edge::function says which this torch uses.
template <typename N>
auto make_node() {
  using NodePtr = decltype(torch::autograd::Edge::function);
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    return std::make_shared<N>();
  } else {
    return c10::make_intrusive<N>();
  }
}

}  // namespace mish::ops
