// mish::darknet_nms: darknet's detection NMS (detector test) on decoded YOLO rows, as one op.
// Schema here; kernels in darknet_nms_cpu.cpp and darknet_nms_cuda.cpp (csrc/kernels for the GPU).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(mish, m) {
  // rows (N, R, 5 + classes): cx, cy, w, h, objectness, class probabilities (Darknet's eval output).
  // Returns num_dets (N, 1) int32, det_boxes (N, max_det, 4) float32 x1 y1 x2 y2, det_scores
  // (N, max_det) float32, det_classes (N, max_det) int32. See csrc/kernels/darknet_nms_launch.h.
  m.def(
      "darknet_nms(Tensor rows, float conf_thresh, float iou_thresh, int max_det, str kind=\"default\", "
      "float beta=0.6, float net_width=1., float net_height=1.) -> (Tensor num_dets, Tensor det_boxes, "
      "Tensor det_scores, Tensor det_classes)");
}

// An inference op: its outputs are selections, with no gradient. The fallthrough skips autograd, so
// the outputs never require grad, whatever the rows do (as torchvision's nms).
TORCH_LIBRARY_IMPL(mish, Autograd, m) { m.impl("darknet_nms", torch::CppFunction::makeFallthrough()); }
